"""``ovdistill predict`` writes what ``ovdistill evaluate`` reads: a Lightning ``BasePredictionWriter``.

The split is the data module's test split, or its val split (``--predictions.split val``).

- **Segmentation**: one class-index PNG per image (``OUT/NAME.png``, NAME the image's stem, classes in the
  data module's order ``0..K-1``), written as each batch finishes, so memory does not grow with the dataset.
- **Detection**: one COCO results JSON (``OUT/results.json``: ``image_id``, ``category_id`` of the annotation
  file, ``bbox`` as ``[x, y, w, h]`` in the image's pixels, ``score``). Under DDP each rank writes its part, and
  rank 0 merges them once every rank is done. (Lightning's predict sampler gives each image to one rank; the merge
  would still keep an image's detections once if a sampler repeated it.)

Every file is written atomically. ``ovdistill evaluate seg --preset P --gt LABELS --pred OUT`` and
``ovdistill evaluate det --gt ANN.json --dt OUT/results.json --split S`` then give ``ovdistill test``'s figures.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from ..data.atomic import save_json, save_with

RESULTS = "results.json"


def _dataset(trainer):
    """The predict loader's dataset under its evaluation views (``EvalRescale`` keeps the one it resizes in ``base``)."""
    loaders = trainer.predict_dataloaders
    dataset = (loaders[0] if isinstance(loaders, (list, tuple)) else loaders).dataset
    while hasattr(dataset, "base"):
        dataset = dataset.base
    return dataset


def coco_results(prediction: dict, image_id: int, category_of: dict[int, int]) -> list[dict]:
    """One image's detections (``boxes`` xyxy, ``labels`` indexing the vocabulary, ``scores``) as COCO results."""
    boxes = prediction["boxes"].detach().float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    labels, scores = prediction["labels"].tolist(), prediction["scores"].detach().float().cpu().tolist()
    return [{"image_id": int(image_id), "category_id": category_of[k], "bbox": [round(v, 3) for v in box], "score": round(s, 6)}
            for box, k, s in zip(xywh, labels, scores, strict=True)]


class PredictionWriter(BasePredictionWriter):
    """Writes a method's predictions on the data module's ``split`` (default test) under ``output_dir``."""

    def __init__(self, output_dir: str = "predictions", split: Literal["val", "test"] = "test"):
        """
        Args:
            output_dir: folder for the class-index PNGs (segmentation) or results.json (detection) that
                ``ovdistill evaluate`` reads; relative to the working directory
            split: the data module's split to predict (val: where settings are chosen; test: reported once)
        """
        super().__init__(write_interval="batch")
        self.output_dir, self.split = output_dir, split

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "predict" and self._active(pl_module) and trainer.datamodule is not None:
            trainer.datamodule.predict_split = self.split  # read by SplitLoaders.predict_dataloader, which runs after setup

    def _active(self, pl_module) -> bool:
        return hasattr(pl_module, "task")  # a method; the offline passes (proposals, pseudo labels, caches) are not

    def on_predict_start(self, trainer, pl_module) -> None:
        if not self._active(pl_module):
            return
        self.out = Path(self.output_dir).expanduser()
        self.out.mkdir(parents=True, exist_ok=True)
        self.task, self.dataset, self.results = pl_module.task, _dataset(trainer), []
        if self.task == "detection":
            # labels index the vocabulary; the results name the annotation file's own category ids
            self.category_of = {k: cid for cid, k in self.dataset.label_of.items()}
        elif len(pl_module.vocabulary.names) > 255:
            raise ValueError(f"{len(pl_module.vocabulary.names)} classes do not fit a class-index PNG (at most 255; 255 means no class)")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._active(pl_module):
            return
        if self.task == "segmentation":
            for index, labels in zip(batch["index"].tolist(), prediction, strict=True):
                png = Image.fromarray(labels.to(torch.uint8).cpu().numpy(), mode="L")
                save_with(lambda fh, png=png: png.save(fh, format="PNG"), self.out / f"{self.dataset.images[index].stem}.png")
        else:
            for target, det in zip(batch[1], prediction, strict=True):
                self.results.extend(coco_results(det, target["image_id"], self.category_of))

    def on_predict_end(self, trainer, pl_module) -> None:
        if not self._active(pl_module):
            return
        if self.task == "segmentation":
            trainer.strategy.barrier()
            if trainer.is_global_zero:
                print(f"wrote the prediction PNGs of {len(self.dataset)} images to {self.out}")  # every rank its share
            return
        rank, world = trainer.global_rank, trainer.world_size
        part = self.out / f".{RESULTS}.rank{rank}"
        if world > 1:
            save_json(self.results, part)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            merged = self.results if world == 1 else self._merge(world)
            save_with(lambda fh: fh.write(json.dumps(merged).encode()), self.out / RESULTS)
            print(f"wrote {len(merged)} detections on {len({r['image_id'] for r in merged})} images to {self.out / RESULTS}")
        trainer.strategy.barrier()
        part.unlink(missing_ok=True)

    def _merge(self, world: int) -> list[dict]:
        merged, seen = [], set()
        for r in range(world):
            part = json.loads((self.out / f".{RESULTS}.rank{r}").read_text())
            images = {d["image_id"] for d in part} - seen
            merged.extend(d for d in part if d["image_id"] in images)
            seen |= images
        return merged
