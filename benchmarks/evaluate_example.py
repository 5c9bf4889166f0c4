"""Prediction files from the shipped teacher on the demo's world, scored by ``ovdistill evaluate`` (the README's pictures).

    python benchmarks/evaluate_example.py [--out docs/evaluate]

- seg: MaskCLIP (the teacher's dense path, training-free, at the demo's map) on the world's test images, written as class-index
  PNGs -> ``ovdistill evaluate seg --preset world``;
- det: every ground-truth box of the test images classified by the teacher (1x + 1.5x crops, top-3 classes,
  softmax scores) and written as a COCO results file -> ``ovdistill evaluate det --split world``: the teacher's
  recognition with oracle localisation, per class.

Each command's printed summary is printed here too; each command's metrics and plots land in ``--out``/seg and /det.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distill.seg_modules import MaskCLIP
from pipelines.bench.mission import default_cache_dir, demo_spec
from pipelines.bench.segmentation import WORLD_TEACHER_MAP
from pipelines.cli import main as ovdistill
from pipelines.data.coco_det import CocoDetection
from pipelines.data.images import read_image
from pipelines.world import write_world
from pipelines.world.teacher import load_shipped_teacher


@torch.no_grad()
def seg_predictions(teacher, world: Path, out: Path) -> None:
    split = json.loads((world / "split.json").read_text())
    names = ["background", *split["classes"]]
    module = MaskCLIP(teacher, class_names=names, unseen=list(split["novel"]), **WORLD_TEACHER_MAP)  # the demo's map
    module.setup("predict")  # text embeddings, as the Trainer would
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((world / "images" / "test").glob("*.png")):
        pred = module.labels_from_logits(module.predict_logits(read_image(path)[None]))[0]
        Image.fromarray(pred.numpy().astype(np.uint8)).save(out / path.name)


@torch.no_grad()
def det_results(teacher, world: Path, path: Path) -> None:
    ds = CocoDetection(world, world / "annotations" / "instances_test.json")
    text = teacher.encode_text(ds.class_names)
    cat_id = {c["name"]: c["id"] for c in ds.coco.dataset["categories"]}
    dets = []
    for i, image_id in enumerate(ds.ids):
        image, target = ds[i]
        if not len(target["boxes"]):
            continue
        probs = (100 * teacher.encode_regions(image[None], [target["boxes"]]) @ text.T).softmax(-1)
        for box, p in zip(target["boxes"].tolist(), probs, strict=True):
            for score, k in zip(*p.topk(3), strict=True):
                dets.append({"image_id": image_id, "category_id": cat_id[ds.class_names[int(k)]], "score": float(score),
                             "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    path.write_text(json.dumps(dets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/evaluate")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    spec = demo_spec(False, 0)
    world = write_world(spec, default_cache_dir() / f"world-{spec.fingerprint()}", progress=False)
    teacher, _ = load_shipped_teacher()
    with tempfile.TemporaryDirectory() as tmp:
        seg_predictions(teacher, world, Path(tmp) / "pred")
        ovdistill(["evaluate", "seg", "--gt", str(world / "labels" / "test"), "--pred", str(Path(tmp) / "pred"), "--preset", "world",
                   "--out", f"{args.out}/seg"])
        det_results(teacher, world, Path(tmp) / "dt.json")
        ovdistill(["evaluate", "det", "--gt", str(world / "annotations" / "instances_test.json"), "--dt", str(Path(tmp) / "dt.json"),
                   "--split", "world", "--out", f"{args.out}/det"])


if __name__ == "__main__":
    main()
