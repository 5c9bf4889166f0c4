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
from typing import Literal

import lightning as L
import torch

from distill.vocabulary import NamesFromVocabulary, Vocabulary

from .coco_det import CocoDetection, detection_collate, load_coco
from .det_splits import split_classes
from .loaders import SplitLoaders, global_seed
from .proposals_file import file_fingerprint, load_proposals


def resolve_path(root: Path, path: str, what: str) -> Path:
    """``path`` as given when absolute, else under ``root``; a missing file names both."""
    p = Path(path).expanduser()
    full = p if p.is_absolute() else root / p
    if not full.exists():
        raise FileNotFoundError(
            f"{what} {full} does not exist ({path!r} was resolved against {root.resolve()}; give an absolute path "
            "or one relative to the data root)"
        )
    return full


def check_proposals(meta: dict, proposals: dict, ds: CocoDetection) -> None:
    """A proposals file must come from this annotation file and hold boxes inside their images."""
    source = meta.get("source")
    if source and source != file_fingerprint(ds.ann_file):
        raise ValueError(
            f"proposals file {meta.get('path')} was computed on another annotation file than {ds.ann_file} "
            f"(fingerprint {source} vs {file_fingerprint(ds.ann_file)}): same image ids, other images; recompute it"
        )
    for image_id, boxes in proposals.items():
        info = ds.coco.imgs[image_id]
        w, h = info.get("width"), info.get("height")
        if len(boxes) and w and h and (boxes[:, 2].max() > w + 1 or boxes[:, 3].max() > h + 1 or boxes[:, :2].min() < -1):
            raise ValueError(
                f"proposals file {meta.get('path')}: boxes of image {image_id} reach {boxes.max(0).values.tolist()} outside its "
                f"size {w}x{h}; it belongs to other images"
            )


def pseudo_label_info(coco_json: dict) -> dict:
    """The ``ovdistill`` record of a pseudo-label file (round, labeller), ``{}`` for other files."""
    return dict(coco_json.get("info", {}).get("ovdistill", {})) if isinstance(coco_json.get("info"), dict) else {}


def load_pseudo_labels(
    path: str | Path, vocabulary: Vocabulary, images: dict[int, dict], info: dict | None = None
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``{image_id: (boxes xyxy, labels)}`` from a pseudo-label COCO JSON, matched to the vocabulary by name;
    ``info`` (a dict) receives the file's ``info.ovdistill`` record (round, labeller).

    Pseudo boxes label held-out (novel) classes only and lie inside their image; anything else is refused.
    """
    coco = load_coco(path)
    if info is not None:
        info.update(pseudo_label_info(coco.dataset))
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    unknown = sorted({n for n in names.values() if n not in vocabulary.names})
    if unknown:
        raise ValueError(f"{path}: pseudo-label categories {unknown} are not in the vocabulary")
    out: dict[int, tuple[list, list]] = {}
    for a in coco.dataset["annotations"]:
        if a["image_id"] not in images:
            raise ValueError(f"{path}: pseudo box {a['id']} is on image_id {a['image_id']}, which the training set lacks")
        name = names[a["category_id"]]
        if name not in vocabulary.held_out:
            raise ValueError(
                f"{path}: pseudo box {a['id']} (image {a['image_id']}) is labelled {name!r}, a base class; pseudo labels "
                f"may only name held-out classes {list(vocabulary.held_out)}"
            )
        x, y, w, h = a["bbox"]
        if not (w > 0 and h > 0):
            raise ValueError(f"{path}: pseudo box {a['id']} has width {w} and height {h}")
        info = images[a["image_id"]]
        W, H = info.get("width"), info.get("height")
        tol = 1.0
        if x < -tol or y < -tol or (W and x + w > W + tol) or (H and y + h > H + tol):
            raise ValueError(
                f"{path}: pseudo box {a['id']} [{x}, {y}, {w}, {h}] (xywh) lies outside image {a['image_id']} of size {W}x{H}"
            )
        boxes, labels = out.setdefault(a["image_id"], ([], []))
        boxes.append([x, y, x + w, y + h])
        labels.append(vocabulary.index(name))
    return {i: (torch.tensor(b, dtype=torch.float32), torch.tensor(lab, dtype=torch.long)) for i, (b, lab) in out.items()}


class CocoDetDataModule(NamesFromVocabulary, SplitLoaders, L.LightningDataModule):
    """COCO-format detection data with a ``Vocabulary``: held-out (novel) boxes never reach training.

    Paths (annotation files, image folders, ``proposals``, ``pseudo_labels``) are relative to ``root``
    unless absolute. ``degenerate``: boxes of zero width/height are dropped with a logged count (``drop``)
    or refused (``error``). ``image_key``: where an image's path comes from (``auto``: ``coco_url`` for
    LVIS JSONs, else ``file_name``).
    """

    def __init__(
        self,
        root: str,
        train_ann: str,
        val_ann: str,
        test_ann: str | None = None,
        train_images: str = "",
        val_images: str = "",
        test_images: str | None = None,
        split: Literal["ov_coco", "lvis"] | None = None,
        class_names: list[str] | None = None,
        novel: list[str] | None = None,
        proposals: str | None = None,
        pseudo_labels: str | None = None,
        batch_size: int = 2,
        eval_batch_size: int = 2,
        num_workers: int = 2,
        flip: bool = True,
        degenerate: Literal["drop", "error"] = "drop",
        image_key: Literal["auto", "file_name", "coco_url"] = "auto",
    ):
        super().__init__()
        self.save_hyperparameters()
        # explicit copy: under a subclass (WorldDetDataModule) save_hyperparameters records the subclass's
        # arguments, not these
        self.cfg = SimpleNamespace(
            train_ann=train_ann, val_ann=val_ann, test_ann=test_ann, train_images=train_images, val_images=val_images,
            test_images=test_images, proposals=proposals, pseudo_labels=pseudo_labels, batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, flip=flip, degenerate=degenerate, image_key=image_key,
        )
        self.root = Path(root)
        if split is not None:
            names, default_novel = split_classes(split, resolve_path(self.root, train_ann, "annotation file"))
            class_names = list(class_names or names)
            novel = list(default_novel if novel is None else novel)
        if class_names is None:
            coco = load_coco(resolve_path(self.root, train_ann, "annotation file"))
            class_names = [c["name"] for c in sorted(coco.dataset["categories"], key=lambda c: c["id"])]
        self.vocabulary = Vocabulary(tuple(class_names), tuple(novel or ()))
        self.log_resolved_vocabulary("novel")
        self.proposals_meta: dict = {}
        self.pseudo_meta: dict = {}

    @property
    def novel(self) -> list[str]:
        return list(self.vocabulary.held_out)

    @property
    def base(self) -> list[str]:
        return self.vocabulary.seen

    def dataset(self, split: str) -> CocoDetection:
        hp = self.cfg
        common = {"degenerate": hp.degenerate, "image_key": hp.image_key}
        if split == "train":
            extras = None
            if hp.proposals:
                extras = load_proposals(resolve_path(self.root, hp.proposals, "proposals file"))
                self.proposals_meta = extras.pop("meta", {})
            ds = CocoDetection(
                self.root / hp.train_images, resolve_path(self.root, hp.train_ann, "annotation file"), self.class_names,
                self.novel, train=True, extras=extras, flip=hp.flip, seed=global_seed(), **common,
            )
            if extras is not None:
                check_proposals(self.proposals_meta, extras["proposals"], ds)
            if hp.pseudo_labels:
                path = resolve_path(self.root, hp.pseudo_labels, "pseudo-label file")
                self.pseudo_meta = {}
                ds.pseudo = load_pseudo_labels(path, self.vocabulary, ds.coco.imgs, self.pseudo_meta)
            return ds
        if split not in ("val", "test"):
            raise ValueError(f"no split {split!r}; expected train, val or test")
        if split == "val":
            ann, images = hp.val_ann, hp.val_images
        else:  # a test split falls back to the val files
            ann, images = hp.test_ann or hp.val_ann, hp.test_images if hp.test_images is not None else hp.val_images
        return CocoDetection(self.root / images, resolve_path(self.root, ann, "annotation file"), self.class_names, **common)

    def _train_dataset(self) -> CocoDetection:
        return self.dataset("train")

    def _batch_sizes(self) -> tuple[int, int, int]:
        return self.cfg.batch_size, self.cfg.eval_batch_size, self.cfg.num_workers

    collate = staticmethod(detection_collate)


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
