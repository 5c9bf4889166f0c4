"""``ovdistill proposals`` and ``ovdistill pseudo-label``: the offline steps between detection trainings.

Both take the same ``-c CONFIG.yaml`` (and overrides) as ``ovdistill fit`` — the model and data are built
by LightningCLI — plus the checkpoint of a base-trained detector (``--ckpt``):

    ovdistill proposals    -c configs/det/vild_text_ov_coco.yaml --ckpt RUN/last.ckpt --out proposals_train.pt
    ovdistill pseudo-label -c configs/det/vild_text_ov_coco.yaml --ckpt RUN/last.ckpt --out pseudo_train.json

``proposals`` stores the RPN's top-N boxes per training image with the teacher's region embeddings
(1x + 1.5x crops) for ViLD-image; ``pseudo-label`` writes novel-class pseudo boxes as a COCO JSON, from
the teacher over the detector's proposals (``--labeller teacher``, round one) or from the detector's
own detections (``--labeller detector``, later rounds). Outputs are written atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def _load(rest: list[str], ckpt: str):
    from pipelines.cli import lightning_cli

    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist")
    cli = lightning_cli(rest, run=False)
    module, dm = cli.model, cli.datamodule
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    module.on_load_checkpoint(state)
    module.load_state_dict(state["state_dict"], strict=False)
    if module.class_names is None:
        module._set_vocabulary(list(dm.class_names), list(dm.novel))
    return module, dm


def _progress(seq):
    from tqdm import tqdm

    return tqdm(seq, unit="batch")


def main_proposals(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill proposals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint of a base-trained detector (its RPN proposes)")
    parser.add_argument("--out", required=True, help="proposals file to write")
    parser.add_argument("--top-n", type=int, default=300, help="proposals kept per image")
    parser.add_argument("--split", default="train")
    parser.add_argument("--no-teacher-regions", action="store_true", help="store boxes only (teacher embeddings then come live)")
    parser.add_argument("--batch-size", type=int, default=8)
    args, rest = parser.parse_known_args(argv)
    from pipelines.proposals import compute_proposals, save_proposals

    module, dm = _load(rest, args.ckpt)
    ds = dm.dataset(args.split)
    ds.flip = False
    teacher = None if args.no_teacher_regions else module.teacher
    props = compute_proposals(module.student, ds, args.top_n, teacher, batch_size=args.batch_size, progress=_progress)
    print(f"wrote {save_proposals(props, args.out)}: {len(props['boxes'])} proposals on {len(props['image_ids'])} images")
    return 0


def main_pseudo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill pseudo-label", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint of a trained detector")
    parser.add_argument("--out", required=True, help="pseudo-label COCO JSON to write")
    parser.add_argument("--labeller", choices=("teacher", "detector"), default="teacher")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum pseudo-box score")
    parser.add_argument("--top-k", type=int, default=5, help="pseudo boxes kept per image")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=8)
    args, rest = parser.parse_known_args(argv)
    from pipelines.pseudo_label import detector_pseudo_labels, save_pseudo_labels, teacher_pseudo_labels

    module, dm = _load(rest, args.ckpt)
    module.setup("predict")
    ds = dm.dataset(args.split)
    ds.flip = False
    if args.labeller == "teacher":
        coco = teacher_pseudo_labels(
            module.teacher, module.student, ds, module.class_names, module.novel_names, module.hparams.templates,
            score_threshold=args.threshold, top_k=args.top_k, batch_size=args.batch_size, progress=_progress,
        )
    else:
        coco = detector_pseudo_labels(module, ds, args.threshold, args.top_k, batch_size=args.batch_size, progress=_progress)
    print(f"wrote {save_pseudo_labels(coco, args.out)}: {len(coco['annotations'])} pseudo boxes on {len(coco['images'])} images")
    return 0

