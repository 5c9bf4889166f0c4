"""A COCO-format instances JSON (via pycocotools) as a detection dataset for open-vocabulary training.

Labels are indices into ``class_names`` (matched to the JSON's categories by name). Annotations of
classes outside the vocabulary are dropped (OV-COCO evaluates 65 of COCO's 80 classes); ``drop``
removes classes from training (the novel ones) while their images stay; images without annotations
are kept; crowd boxes are left out of training targets and kept, flagged, for evaluation. Optional
extras per image (offline proposals, cached teacher region embeddings, pseudo boxes) join by image id.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from .images import read_image
from .loaders import augment_generator, split_key

log = logging.getLogger(__name__)


def read_json(path: str | Path, what: str = "annotation file"):
    """A JSON file's content; a missing, truncated or malformed file raises naming it (``what`` says which)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist (resolved in {path.parent.resolve()})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON (truncated?): {err}") from err


def load_coco(path: str | Path) -> COCO:
    """pycocotools ``COCO`` of a JSON file; a missing, truncated or malformed file raises naming it."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {path} holds a {type(data).__name__}, not a COCO object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"annotation file {path} has no '{key}' list; is it a COCO instances JSON?")
    ids = [im.get("id") for im in data["images"]]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"annotation file {path} lists image ids {dup} more than once; their annotations would be merged")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def check_annotations(coco: COCO, path: str | Path, degenerate: str = "drop") -> set[int]:
    """Every annotation must name a known category and image and carry a 4-number ``bbox``.

    Boxes with zero width or height occur in real datasets (COCO train2017 has two): returns their ids
    to drop (logged with a count), or raises with ``degenerate="error"``.
    """
    known = set(coco.cats)
    bad: list[dict] = []
    for ann in coco.dataset.get("annotations", []):
        if "id" not in ann:
            raise ValueError(f"{path}: an annotation on image {ann.get('image_id')} has no 'id'")
        if ann.get("category_id") not in known:
            raise ValueError(
                f"{path}: annotation {ann['id']} has unknown category_id {ann.get('category_id')}; known ids: {sorted(known)[:10]}..."
            )
        if ann.get("image_id") not in coco.imgs:
            raise ValueError(f"{path}: annotation {ann['id']} refers to image_id {ann.get('image_id')}, which is not in 'images'")
        box = ann.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise ValueError(f"{path}: annotation {ann['id']} has bbox {box!r}; expected [x, y, width, height]")
        if not (box[2] > 0 and box[3] > 0):
            bad.append(ann)
    if bad and degenerate == "error":
        a = bad[0]
        raise ValueError(
            f"{path}: {len(bad)} annotations have a box of zero width or height, first: annotation {a['id']} "
            f"(image {a['image_id']}) with width {a['bbox'][2]} and height {a['bbox'][3]}"
        )
    if bad:
        ids = ", ".join(str(a["id"]) for a in bad[:5])
        log.warning("%s: dropped %d annotations with zero-width or zero-height boxes (ids %s)", path, len(bad), ids)
    return {a["id"] for a in bad}


def resolve_classes(coco: COCO, class_names: list[str] | None, path: str | Path) -> list[str]:
    names_by_id = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    if class_names is None:
        return [names_by_id[i] for i in sorted(names_by_id)]
    if not class_names:
        raise ValueError("class_names is empty")
    missing = [c for c in class_names if c not in names_by_id.values()]
    if missing:
        raise ValueError(f"classes {missing} are not categories of {path}")
    return list(class_names)


def image_file(info: dict, key: str = "file_name") -> str:
    """The image's path under the image root: ``file_name``, or (``key="coco_url"``, LVIS, whose v0.5
    ``file_name`` is a COCO-2014 name) the URL's last two parts, e.g. ``val2017/000000397133.jpg``."""
    if key == "coco_url" and "coco_url" in info:
        return "/".join(info["coco_url"].split("/")[-2:])
    if "file_name" in info:
        return info["file_name"]
    if "coco_url" in info:
        return "/".join(info["coco_url"].split("/")[-2:])
    raise ValueError(f"image {info.get('id')} has neither 'file_name' nor 'coco_url'")


def default_image_key(coco: COCO) -> str:
    """LVIS JSONs (categories with an r/c/f ``frequency``) are found from ``coco_url``; COCO from ``file_name``."""
    cats = coco.dataset.get("categories", [])
    return "coco_url" if cats and all("frequency" in c for c in cats) else "file_name"


class CocoDetection(Dataset):
    """Items ``(image [3,H,W] in [0,1], target)``; target: ``boxes`` xyxy, ``labels``, ``iscrowd``, ``image_id``.

    ``extras`` maps a target key (``proposals``, ``objectness``, ``teacher_regions``, ...) to
    ``{image_id: Tensor}``; every image must be present in each. ``pseudo`` (``{image_id: (boxes, labels)}``)
    adds boxes to the targets (the self-training round).
    """

    def __init__(
        self,
        image_root: str | Path,
        ann_file: str | Path,
        class_names: list[str] | None = None,
        drop: list[str] | None = None,
        train: bool = False,
        extras: dict[str, dict[int, torch.Tensor]] | None = None,
        pseudo: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        flip: bool = False,
        degenerate: str = "drop",
        image_key: str = "auto",
        seed: int = 0,
    ):
        self.seed = seed
        self.image_root, self.ann_file = Path(image_root), Path(ann_file)
        self.coco = load_coco(ann_file)
        self.skip_ann_ids = check_annotations(self.coco, ann_file, degenerate)
        self.image_key = default_image_key(self.coco) if image_key == "auto" else image_key
        self.class_names = resolve_classes(self.coco, class_names, ann_file)
        unknown = [c for c in (drop or []) if c not in self.class_names]
        if unknown:
            raise ValueError(f"classes to drop {unknown} are not in the vocabulary")
        keep = {c["id"]: self.class_names.index(c["name"]) for c in self.coco.dataset["categories"] if c["name"] in self.class_names}
        dropped = {self.class_names.index(c) for c in (drop or [])}
        self.label_of = {cid: k for cid, k in keep.items() if k not in dropped}
        self.train, self.flip = train, flip
        self.ids = sorted(self.coco.imgs)
        self.extras = extras or {}
        for key, table in self.extras.items():
            missing = [i for i in self.ids if i not in table]
            if missing:
                raise ValueError(
                    f"{key} do not match {ann_file}: {len(missing)} of {len(self.ids)} image ids missing (e.g. {missing[:5]})"
                )
        self.pseudo = pseudo or {}

    def __len__(self) -> int:
        return len(self.ids)

    def target(self, image_id: int, pseudo: bool = True) -> dict:
        """Gold annotations of the vocabulary (held-out ones dropped in training), plus pseudo boxes unless
        ``pseudo=False`` (the dataset's own labels only: what a later self-training round treats as gold)."""
        anns = [
            a for a in self.coco.imgToAnns.get(image_id, [])
            if a["category_id"] in self.label_of and a["id"] not in self.skip_ann_ids
        ]
        if self.train:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.long)
        crowd = torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.long)
        if pseudo and image_id in self.pseudo:
            pb, pl = self.pseudo[image_id]
            boxes, labels = torch.cat([boxes, pb.float()]), torch.cat([labels, pl.long()])
            crowd = torch.cat([crowd, torch.zeros(len(pl), dtype=torch.long)])
        return {"boxes": boxes, "labels": labels, "iscrowd": crowd, "image_id": image_id}

    def __getitem__(self, key):
        """``key``: an index, or ``(index, epoch)`` from a ``ResumableSampler`` (the flip depends on both)."""
        i, epoch = split_key(key)
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        path = self.image_root / image_file(info, self.image_key)
        if not path.is_file():
            raise FileNotFoundError(
                f"image file {path} (image {image_id} of {self.ann_file}) does not exist; images are looked up under "
                f"{self.image_root.resolve()}: set the data module's *_images to the folder holding the JSON's file names"
            )
        image = read_image(path)
        if "height" in info and "width" in info and info["height"] and tuple(image.shape[-2:]) != (info["height"], info["width"]):
            raise ValueError(
                f"image {self.image_root / image_file(info, self.image_key)} is {tuple(image.shape[-2:])} but {self.ann_file} says "
                f"{(info['height'], info['width'])}"
            )
        target = self.target(image_id)
        for name, table in self.extras.items():
            target[name] = table[image_id]
        if self.flip and torch.rand((), generator=augment_generator(self.seed, epoch or 0, i)) < 0.5:
            w = image.shape[-1]
            image = image.flip(-1)
            for name in ("boxes", "proposals"):
                if name in target:
                    b = target[name].clone()
                    b[:, [0, 2]] = w - target[name][:, [2, 0]]
                    target[name] = b
        return image, target


def detection_collate(batch):
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
