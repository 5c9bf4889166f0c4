"""Semantic segmentation from folders of image / label PNG pairs (matched by file stem).

Labels hold class ids (``0..K-1``) and ``ignore_index`` (255). With ``reduce_zero_label`` (ADE20K's
convention) label 0 means "ignore" and every other id shifts down by one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .images import read_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_label(path: Path, num_classes: int, ignore_index: int = 255, reduce_zero_label: bool = False) -> torch.Tensor:
    """Label map ``[H,W]`` long; values outside ``[0, num_classes)`` other than ``ignore_index`` raise."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label {path} has mode {im.mode}; expected a single-channel class-id PNG")
            arr = np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(f"label file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read label {path}: {err}") from err
    if reduce_zero_label:
        arr = np.where(arr == 0, ignore_index, arr - 1)
        arr[arr == ignore_index - 1] = ignore_index
    bad = (arr != ignore_index) & ((arr < 0) | (arr >= num_classes))
    if bad.any():
        values = sorted(set(np.unique(arr[bad]).tolist()))[:5]
        raise ValueError(
            f"label {path} holds values {values} outside the {num_classes} classes [0, {num_classes}) "
            f"and not ignore_index={ignore_index}"
        )
    return torch.from_numpy(arr)


class SegFolderDataset(Dataset):
    """Pairs ``image_dir/NAME.*`` with ``label_dir/NAME.png``; missing labels fail at construction.

    ``hide``: a ``Vocabulary`` whose held-out classes are set to ``ignore_index`` in every label read
    (the training split of a zero-shot protocol).
    """

    def __init__(
        self,
        image_dir: str | Path,
        label_dir: str | Path,
        num_classes: int,
        ignore_index: int = 255,
        reduce_zero_label: bool = False,
        label_suffix: str = ".png",
        list_file: str | Path | None = None,
        hide=None,
    ):
        self.image_dir, self.label_dir = Path(image_dir), Path(label_dir)
        for what, folder in (("image", self.image_dir), ("label", self.label_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{what} directory not found: {folder} (resolved in {folder.parent.resolve()}); check the data module's root and splits"
                )
        self.images = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if list_file is not None:  # VOC-style: one folder for every split, a text file of stems per split
            list_file = Path(list_file)
            if not list_file.is_file():
                here = sorted(p.name for p in list_file.parent.glob("*.txt")) if list_file.parent.is_dir() else []
                raise FileNotFoundError(
                    f"split list file not found: {list_file} (resolved in {list_file.parent.resolve()}); "
                    f"list files there: {here or 'none'}"
                )
            wanted = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
            by_stem = {p.stem: p for p in self.images}
            absent = [w for w in wanted if w not in by_stem]
            if absent:
                raise FileNotFoundError(f"{list_file} names {len(absent)} images missing from {self.image_dir}, first: {absent[0]}")
            self.images = [by_stem[w] for w in wanted]
        if not self.images:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.image_dir}")
        self.labels = [self.label_dir / (p.stem + label_suffix) for p in self.images]
        missing = [str(p) for p in self.labels if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} label files missing, first: {missing[0]}")
        if list_file is None:  # folder pairs: a label whose image is gone must not shrink the split silently
            stems = {p.stem for p in self.images}
            orphans = sorted(p.name for p in self.label_dir.glob("*" + label_suffix) if p.name[: -len(label_suffix)] not in stems)
            if orphans:
                raise FileNotFoundError(
                    f"{len(orphans)} labels in {self.label_dir} have no image in {self.image_dir}, first: {orphans[0]}"
                )
        self.num_classes, self.ignore_index, self.reduce_zero_label = num_classes, ignore_index, reduce_zero_label
        self.hide = hide

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = read_image(self.images[index])
        label = read_label(self.labels[index], self.num_classes, self.ignore_index, self.reduce_zero_label)
        if image.shape[-2:] != label.shape:
            raise ValueError(
                f"image {self.images[index]} is {tuple(image.shape[-2:])} but label {self.labels[index]} is {tuple(label.shape)}"
            )
        if self.hide is not None:  # training split: held-out classes never reach a loss
            label = self.hide.hide(label)
        return {"image": image, "label": label, "index": index}
