"""LightningDataModules for open-vocabulary detection on COCO-format JSONs (COCO, LVIS, the synthetic world).

The vocabulary is a named split (``ov_coco``: OVR-CNN 48/17; ``lvis``: rare classes novel) or explicit
``class_names`` + ``novel``; training drops novel-class annotations, evaluation keeps every class.
``proposals`` (an ``ovdistill proposals`` file) attaches offline proposals / teacher region embeddings
to training targets; ``pseudo_labels`` (a COCO JSON from ``ovdistill pseudo-label``) adds pseudo boxes.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from torch.utils.data import DataLoader

from pipelines.proposals import load_proposals

from .coco_det import CocoDetection, detection_collate, load_coco
from .det_splits import split_classes


def load_pseudo_labels(path: str | Path, class_names: list[str], image_ids: set[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``{image_id: (boxes xyxy, labels)}`` from a pseudo-label COCO JSON, matched to ``class_names`` by name."""
    coco = load_coco(path)
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    unknown = sorted({n for n in names.values() if n not in class_names})
    if unknown:
        raise ValueError(f"{path}: pseudo-label categories {unknown} are not in the vocabulary")
    out: dict[int, tuple[list, list]] = {}
    for a in coco.dataset["annotations"]:
        if a["image_id"] not in image_ids:
            raise ValueError(f"{path}: pseudo box {a['id']} is on image_id {a['image_id']}, which the training set lacks")
        x, y, w, h = a["bbox"]
        if not (w > 0 and h > 0):
            raise ValueError(f"{path}: pseudo box {a['id']} has width {w} and height {h}")
        boxes, labels = out.setdefault(a["image_id"], ([], []))
        boxes.append([x, y, x + w, y + h])
        labels.append(class_names.index(names[a["category_id"]]))
    return {i: (torch.tensor(b, dtype=torch.float32), torch.tensor(lab, dtype=torch.long)) for i, (b, lab) in out.items()}


class CocoDetDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str,
        train_ann: str,
        val_ann: str,
        test_ann: str | None = None,
        train_images: str = "",
        val_images: str = "",
        test_images: str | None = None,
        split: str | None = None,
        class_names: list[str] | None = None,
        novel: list[str] | None = None,
        proposals: str | None = None,
        pseudo_labels: str | None = None,
        batch_size: int = 2,
        eval_batch_size: int = 2,
        num_workers: int = 2,
        flip: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        # explicit copy: under a subclass (WorldDetDataModule) save_hyperparameters records the subclass's
        # arguments, not these
        self.cfg = SimpleNamespace(
            train_ann=train_ann, val_ann=val_ann, test_ann=test_ann, train_images=train_images, val_images=val_images,
            test_images=test_images, proposals=proposals, pseudo_labels=pseudo_labels, batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, flip=flip,
        )
        self.root = Path(root)
        if split is not None:
            names, default_novel = split_classes(split, self.root / train_ann)
            class_names = list(class_names or names)
            novel = list(default_novel if novel is None else novel)
        if class_names is not None and not class_names:
            raise ValueError("class_names is empty")
        if class_names is None:
            class_names = [c["name"] for c in sorted(json.loads((self.root / train_ann).read_text())["categories"], key=lambda c: c["id"])]
        novel = list(novel or [])
        missing = [c for c in novel if c not in class_names]
        if missing:
            raise ValueError(f"novel classes {missing} are not in the class list")
        if len(set(novel)) == len(class_names):
            raise ValueError("every class is novel: at least one base class is needed")
        self.class_names, self.novel = list(class_names), novel
        self.base = [c for c in self.class_names if c not in novel]

    def dataset(self, split: str) -> CocoDetection:
        hp = self.cfg
        if split == "train":
            extras = load_proposals(self.root / hp.proposals) if hp.proposals else None
            ds = CocoDetection(self.root / hp.train_images, self.root / hp.train_ann, self.class_names, self.novel, train=True, extras=extras, flip=hp.flip)
            if hp.pseudo_labels:
                ds.pseudo = load_pseudo_labels(self.root / hp.pseudo_labels, self.class_names, set(ds.ids))
            return ds
        ann, images = (hp.val_ann, hp.val_images) if split == "val" else (hp.test_ann or hp.val_ann, hp.test_images if hp.test_images is not None else hp.val_images)
        return CocoDetection(self.root / images, self.root / ann, self.class_names)

    def _loader(self, ds, batch_size: int, shuffle: bool) -> DataLoader:
        hp = self.cfg
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, num_workers=hp.num_workers, collate_fn=detection_collate,
            drop_last=shuffle, persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.dataset("train"), self.cfg.batch_size, True)

    def val_dataloader(self):
        return self._loader(self.dataset("val"), self.cfg.eval_batch_size, False)

    def test_dataloader(self):
        return self._loader(self.dataset("test"), self.cfg.eval_batch_size, False)

    def predict_dataloader(self):
        return self.test_dataloader()


class WorldDetDataModule(CocoDetDataModule):
    """The synthetic world as an OV detection benchmark: its shapes, novel = the world's novel shapes."""

    def __init__(self, world: str, batch_size: int = 16, eval_batch_size: int = 32, num_workers: int = 0, **kwargs):
        split = json.loads((Path(world) / "split.json").read_text())
        # LightningCLI passes every parent argument, None included: fill those from the world's split
        if kwargs.get("class_names") is None:
            kwargs["class_names"] = list(split["classes"])
        if kwargs.get("novel") is None:
            kwargs["novel"] = list(split["novel"])
        super().__init__(
            world, "annotations/instances_train.json", "annotations/instances_val.json", "annotations/instances_test.json",
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, **kwargs,
        )
