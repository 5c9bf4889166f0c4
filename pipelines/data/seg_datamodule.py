"""LightningDataModules for semantic segmentation folders and for the synthetic world.

A split is ``[image dir, label dir]`` or ``[image dir, label dir, list file]`` under ``root`` (the list
file names the image stems of that split, as VOC's ``ImageSets/Segmentation/train.txt``). The vocabulary is a preset name (``voc``,
``context59``, ``coco_stuff``, ``ade20k``) or explicit ``class_names`` + ``unseen``; the methods read
``class_names`` / ``unseen`` from here when their config does not repeat them.
"""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from distill.vocabulary import NamesFromVocabulary, Vocabulary

from .loaders import SplitLoaders, augment_generator, global_seed, split_key
from .seg_folder import SegFolderDataset
from .seg_presets import get_preset
from .teacher_cache import DenseCache, WithTeacherDense, fit_dense


def keep_ratio_factor(h: int, w: int, img_scale: tuple[int, int]) -> float:
    """mmseg's ``Resize(img_scale, keep_ratio=True)``: the factor that fits ``(h, w)`` within ``img_scale`` (long side
    at most its larger value, short side at most its smaller)."""
    return min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))


def keep_ratio_size(h: int, w: int, img_scale: tuple[int, int]) -> tuple[int, int]:
    """The resized ``(h, w)``, rounded as mmcv's ``rescale_size`` rounds."""
    s = keep_ratio_factor(h, w, img_scale)
    return int(h * s + 0.5), int(w * s + 0.5)


class EvalRescale(Dataset):
    """The evaluation view of mmseg's test pipelines (``img_scale``, ``keep_ratio=True``): the image is resized, the
    label keeps its original size; the methods resize their logits to it before the arg-max, as mmseg does."""

    def __init__(self, base: Dataset, img_scale: tuple[int, int]):
        self.base, self.img_scale = base, tuple(img_scale)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        item = dict(self.base[i])
        image = item["image"]
        size = keep_ratio_size(*image.shape[-2:], self.img_scale)
        item["image"] = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
        return item


class SegTrainTransform(Dataset):
    """Random scale (``scale_range``, times the keep-ratio ``img_scale`` factor when given: mmseg's
    ``Resize(img_scale, ratio_range)``), random crop to ``crop_size`` (label padded with ignore), h-flip.

    The draws depend on ``(seed, epoch, index)`` only (keys from a ``ResumableSampler``), so a resumed run
    sees the crops the uninterrupted one saw.
    """

    def __init__(self, base: Dataset, crop_size: int | None, scale_range=(0.5, 2.0), flip: bool = True, ignore_index: int = 255,
                 seed: int = 0, img_scale: tuple[int, int] | None = None):
        self.base, self.crop_size, self.scale_range, self.flip, self.ignore = base, crop_size, scale_range, flip, ignore_index
        self.seed, self.img_scale = seed, img_scale

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        i, epoch = split_key(key)
        g = augment_generator(self.seed, epoch or 0, i)
        item = dict(self.base[i])
        image, label = item["image"], item["label"]
        h, w = image.shape[-2:]
        box = (0.0, 0.0, float(w), float(h))  # the training view in the original image's pixels (cached maps follow it)
        if self.crop_size:
            lo, hi = self.scale_range
            s = lo + (hi - lo) * float(torch.rand((), generator=g))
            if self.img_scale:
                s *= keep_ratio_factor(h, w, self.img_scale)
            size = (max(1, round(h * s)), max(1, round(w * s)))
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
            c = self.crop_size
            ph, pw = max(0, c - size[0]), max(0, c - size[1])
            image = F.pad(image, (0, pw, 0, ph))
            label = F.pad(label, (0, pw, 0, ph), value=self.ignore)
            y = int(torch.randint(0, image.shape[-2] - c + 1, (), generator=g))
            x = int(torch.randint(0, image.shape[-1] - c + 1, (), generator=g))
            image, label = image[:, y : y + c, x : x + c], label[y : y + c, x : x + c]
            sy, sx = size[0] / h, size[1] / w
            box = (x / sx, y / sy, (x + c) / sx, (y + c) / sy)
        flip = bool(self.flip and torch.rand((), generator=g) < 0.5)
        if flip:
            image, label = image.flip(-1), label.flip(-1)
        if "teacher_dense" in item:
            fit_dense(item, box, (h, w), flip)
        item.update(image=image, label=label)
        return item


def pad_collate(batch: list[dict], ignore_index: int = 255) -> dict:
    """Stack items, padding images (zeros) and labels (ignore) to the largest size in the batch."""
    h = max(b["image"].shape[-2] for b in batch)
    w = max(b["image"].shape[-1] for b in batch)
    images = torch.stack([F.pad(b["image"], (0, w - b["image"].shape[-1], 0, h - b["image"].shape[-2])) for b in batch])
    lh = max(b["label"].shape[-2] for b in batch)  # the label's own size: an evaluation view may resize the image only
    lw = max(b["label"].shape[-1] for b in batch)
    labels = torch.stack(
        [F.pad(b["label"], (0, lw - b["label"].shape[-1], 0, lh - b["label"].shape[-2]), value=ignore_index) for b in batch]
    )
    out = {"image": images, "label": labels, "index": torch.tensor([b["index"] for b in batch])}
    if "teacher_dense" in batch[0]:
        out["teacher_dense"] = torch.stack([b["teacher_dense"] for b in batch])
    return out


class SegFolderDataModule(NamesFromVocabulary, SplitLoaders, L.LightningDataModule):
    """Image / label folders with a ``Vocabulary``; the **training** split hides held-out (unseen) labels.

    Relative ``splits`` paths are resolved against ``root``; a relative ``root`` against the working
    directory. A label is ``label_dir/<image stem><label_suffix>`` (COCO-Stuff 164k: ``_labelTrainIds.png``).
    Whatever the files hold, no label of an unseen class leaves ``dataset("train")``: its pixels
    read as ``ignore_index``, as every zero-shot segmentation protocol requires.

    ``teacher_cache``: a directory written by ``ovdistill cache``; training batches then carry the cached
    teacher dense maps (``teacher_dense``) and the dense methods read them instead of running the teacher.

    ``img_scale`` (mmseg's, e.g. ``[2048, 512]``: short side 512): the keep-ratio base scale of the official
    pipelines. Training's random scale multiplies it; val / test images are resized to it alone and their labels keep
    the original size (``EvalRescale``; one image per evaluation batch). ``None``: the images' own size (the world).
    """

    def __init__(
        self,
        root: str,
        preset: str | None = None,
        class_names: list[str] | None = None,
        unseen: list[str] | None = None,
        splits: dict[str, list[str]] | None = None,
        reduce_zero_label: bool | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 1,
        num_workers: int = 2,
        crop_size: int | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        ignore_index: int = 255,
        label_suffix: str = ".png",
        teacher_cache: str | None = None,
        img_scale: tuple[int, int] | None = None,
    ):
        super().__init__()
        if img_scale is not None and eval_batch_size != 1:
            raise ValueError(f"data.img_scale={list(img_scale)} evaluates each image at its own size against its original "
                             f"label: set data.eval_batch_size to 1 (got {eval_batch_size})")
        if preset is not None:
            p = get_preset(preset)
            class_names = list(class_names or p.names)
            unseen = list(p.unseen if unseen is None else unseen)
            reduce_zero_label = p.reduce_zero_label if reduce_zero_label is None else reduce_zero_label
        if not class_names:
            raise ValueError("give a preset or a non-empty class_names list")
        self.vocabulary = Vocabulary(tuple(class_names), tuple(unseen or ()), ignore_index)
        self.root = Path(root)
        self.splits = splits or {s: [f"images/{s}", f"labels/{s}"] for s in ("train", "val", "test")}
        self.reduce_zero_label = bool(reduce_zero_label)
        self.save_hyperparameters()
        self.log_resolved_vocabulary("unseen")
        self._dense_cache: DenseCache | None = None

    @property
    def unseen(self) -> list[str]:
        return list(self.vocabulary.held_out)

    def dataset(self, split: str) -> SegFolderDataset:
        if split not in self.splits:
            raise ValueError(f"no split {split!r}; configured: {sorted(self.splits)}")
        img, lab, *rest = self.splits[split]
        return SegFolderDataset(
            self.root / img, self.root / lab, len(self.class_names), self.hparams.ignore_index, self.reduce_zero_label,
            list_file=self.root / rest[0] if rest else None, hide=self.vocabulary if split == "train" else None,
            label_suffix=self.hparams.label_suffix,
        )

    def dense_cache(self) -> DenseCache | None:
        """The teacher cache of the training split (``teacher_cache``, relative to the working directory), checked
        against the split's images; ``None`` when the teacher runs live."""
        if not self.hparams.teacher_cache:
            return None
        if self._dense_cache is None:  # the method's setup and the training loader both ask: open and check once
            cache = DenseCache(self.hparams.teacher_cache)
            cache.check_stems([p.stem for p in self.dataset("train").images], f"the training split under {self.root}")
            self._dense_cache = cache
        return self._dense_cache

    def _train_dataset(self) -> Dataset:
        hp = self.hparams
        base, cache = self.dataset("train"), self.dense_cache()
        if cache is not None:
            base = WithTeacherDense(base, cache)
        return SegTrainTransform(base, hp.crop_size, hp.scale_range, ignore_index=hp.ignore_index, seed=global_seed(),
                                 img_scale=hp.img_scale)

    def _eval_dataset(self, split: str) -> Dataset:
        ds = self.dataset(split)
        return EvalRescale(ds, self.hparams.img_scale) if self.hparams.img_scale else ds

    def _batch_sizes(self) -> tuple[int, int, int]:
        return self.hparams.batch_size, self.hparams.eval_batch_size, self.hparams.num_workers

    def collate(self, batch: list[dict]) -> dict:
        return pad_collate(batch, self.hparams.ignore_index)


class WorldSegDataModule(SegFolderDataModule):
    """The synthetic world as a segmentation dataset: ``background`` + shapes, unseen = novel shapes."""

    def __init__(self, world: str, batch_size: int = 16, eval_batch_size: int = 32, num_workers: int = 0, **kwargs):
        split = json.loads((Path(world) / "split.json").read_text())
        super().__init__(
            world, class_names=["background", *split["classes"]], unseen=list(split["novel"]), batch_size=batch_size,
            eval_batch_size=eval_batch_size, num_workers=num_workers, **kwargs,
        )
