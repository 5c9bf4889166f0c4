"""Tiny datasets written in the real on-disk layouts users bring (VOC, PASCAL Context, COCO-Stuff 164k, COCO
instances, LVIS v1), with the quirks of the real files: palette PNG labels with 255 borders, grayscale and
EXIF-tagged JPEGs, polygons and RLE, crowd regions, a zero-height box, LVIS images found from ``coco_url``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from pipelines.data.seg_presets import COCO_STUFF_CLASSES, VOC_CLASSES

# COCO 2017's 80 category ids (with their gaps) in the order of its names
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36,
            37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70,
            72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]
COCO_NAMES = list(COCO_STUFF_CLASSES[:80])


def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (bit-interleaved), as in its palette PNGs."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _jpeg(path: Path, rng, size, gray=False, exif=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 255, (size[0], size[1], 3), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if gray else arr, "L" if gray else "RGB")
    if exif:
        ex = Image.Exif()
        ex[0x0112] = 6  # orientation: rotate 90 CW; the annotations (as COCO's) refer to the stored pixels
        im.save(path, quality=90, exif=ex)
    else:
        im.save(path, quality=90)


def _label_map(rng, size, ids, border=True) -> np.ndarray:
    """Rectangles of class ids on id 0, with a 255 border around each (the VOC look)."""
    h, w = size
    lab = np.zeros((h, w), np.uint8)
    for cid in ids:
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        y1, x1 = y0 + h // 3, x0 + w // 3
        if border:
            lab[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = 255
        lab[y0:y1, x0:x1] = cid
    return lab


def _split_lists(folder: Path, lists: dict[str, list[str]]) -> None:
    """VOC's ImageSets: one ``<split>.txt`` of image stems per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, stems in lists.items():
        (folder / f"{split}.txt").write_text("\n".join(stems) + "\n")


def write_voc(root: Path, n: int = 4, size=(72, 88), seed=0) -> Path:
    """VOCdevkit/VOC2012: JPEGImages, palette SegmentationClass, grayscale SegmentationClassAug, ImageSets lists.
    Label ids are VOC's 21 (0 = background); every image holds a seen and an unseen class."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    names = [f"2007_{i:06d}" for i in range(n)]
    seen, unseen = 1 + VOC_CLASSES.index("cat"), 1 + VOC_CLASSES.index("sheep")
    for i, stem in enumerate(names):
        _jpeg(voc / "JPEGImages" / f"{stem}.jpg", rng, size, gray=i == 1)
        lab = _label_map(rng, size, [seen, unseen])
        for folder in ("SegmentationClass", "SegmentationClassAug"):
            (voc / folder).mkdir(parents=True, exist_ok=True)
            im = Image.fromarray(lab, "P") if folder == "SegmentationClass" else Image.fromarray(lab, "L")
            if folder == "SegmentationClass":
                im.putpalette(voc_palette())
            im.save(voc / folder / f"{stem}.png")
    _split_lists(voc / "ImageSets" / "Segmentation", {"train_aug": names[:2], "train": names[:2], "val": names[2:]})
    return voc


def write_context(root: Path, n: int = 4, size=(64, 80), seed=1) -> Path:
    """VOCdevkit/VOC2010: JPEGImages, SegmentationClassContext (0 = background, 1..59), ImageSets/SegmentationContext."""
    rng = np.random.default_rng(seed)
    ctx = root / "VOCdevkit" / "VOC2010"
    names = [f"2008_{i:06d}" for i in range(n)]
    (ctx / "SegmentationClassContext").mkdir(parents=True, exist_ok=True)
    for stem in names:
        _jpeg(ctx / "JPEGImages" / f"{stem}.jpg", rng, size)
        Image.fromarray(_label_map(rng, size, [3, 15], border=False), "L").save(ctx / "SegmentationClassContext" / f"{stem}.png")
    _split_lists(ctx / "ImageSets" / "SegmentationContext", {"train": names[:2], "val": names[2:]})
    return ctx


def write_coco_stuff(root: Path, n: int = 2, size=(64, 64), seed=2) -> Path:
    """coco_stuff164k: images/{train,val}2017/*.jpg, annotations/{train,val}2017/*_labelTrainIds.png (0..170, 255)."""
    rng = np.random.default_rng(seed)
    cs = root / "coco_stuff164k"
    for split in ("train2017", "val2017"):
        for i in range(n):
            stem = f"{i + (100 if split == 'val2017' else 0):012d}"
            _jpeg(cs / "images" / split / f"{stem}.jpg", rng, size)
            (cs / "annotations" / split).mkdir(parents=True, exist_ok=True)
            lab = _label_map(rng, size, [0, COCO_STUFF_CLASSES.index("cow"), COCO_STUFF_CLASSES.index("grass")], border=False)
            Image.fromarray(lab, "L").save(cs / "annotations" / split / f"{stem}_labelTrainIds.png")
    return cs


def _instances(rng, image_ids, size, cats, *, quirks: bool, crowd: bool = True) -> list[dict]:
    h, w = size
    anns = []
    for image_id in image_ids:
        for cat in cats:
            x, y = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
            bw, bh = float(w // 3), float(h // 3)
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0, "segmentation": [poly]})
        if crowd:
            m = np.zeros((h, w), np.uint8, order="F")
            m[2:10, 2:12] = 1
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cats[0], "bbox": [2.0, 2.0, 10.0, 8.0],
                         "area": 80.0, "iscrowd": 1, "segmentation": rle})
    if quirks:  # COCO train2017 has boxes of zero height (e.g. ann 918 on image 200365)
        anns.append({"id": len(anns) + 1, "image_id": image_ids[0], "category_id": cats[0], "bbox": [5.0, 5.0, 12.0, 0.0],
                     "area": 0.0, "iscrowd": 0, "segmentation": [[5, 5, 17, 5, 17, 5]]})
    return anns


def write_coco(root: Path, n: int = 3, size=(72, 96), seed=3) -> Path:
    """coco/annotations/instances_{train,val}2017.json with COCO's 80 real ids/names, images in train2017/, val2017/."""
    rng = np.random.default_rng(seed)
    coco = root / "coco"
    cats = [{"id": i, "name": n_, "supercategory": "thing"} for i, n_ in zip(COCO_IDS, COCO_NAMES, strict=True)]
    base, novel = COCO_IDS[COCO_NAMES.index("person")], COCO_IDS[COCO_NAMES.index("cat")]
    for split, offset in (("train2017", 0), ("val2017", 500)):
        ids = [offset + i + 1 for i in range(n)]
        images = []
        for k, image_id in enumerate(ids):
            name = f"{image_id:012d}.jpg"
            _jpeg(coco / split / name, rng, size, gray=k == 1, exif=k == 2)
            images.append({"id": image_id, "file_name": name, "height": size[0], "width": size[1],
                           "coco_url": f"http://images.cocodataset.org/{split}/{name}"})
        data = {"images": images, "categories": cats, "annotations": _instances(rng, ids, size, [base, novel], quirks=split == "train2017")}
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return coco


def write_lvis(root: Path, size=(72, 96), seed=4) -> Path:
    """lvis/lvis_v1_{train,val}.json (no file_name; coco_url; r/c/f frequencies; neg / not-exhaustive ids), images
    taken from the COCO tree written by ``write_coco`` (LVIS v1 val draws from COCO train2017 and val2017)."""
    rng = np.random.default_rng(seed)
    coco = root / "coco"
    if not coco.is_dir():
        write_coco(root)
    names = [("person", "f"), ("cat", "r"), ("dog", "c"), ("aerosol_can", "r"), ("zebra", "f")]
    cats = [{"id": i + 1, "name": n_, "synset": f"{n_}.n.01", "frequency": f, "synonyms": [n_], "image_count": 1,
             "instance_count": 1, "def": n_} for i, (n_, f) in enumerate(names)]
    lvis = root / "lvis"
    lvis.mkdir(parents=True, exist_ok=True)
    for split, src in (("train", ["train2017"]), ("val", ["train2017", "val2017"])):
        images = []
        for folder in src:
            for p in sorted((coco / folder).glob("*.jpg"))[:2]:
                images.append({"id": int(p.stem), "height": size[0], "width": size[1], "coco_url":
                               f"http://images.cocodataset.org/{folder}/{p.name}", "neg_category_ids": [3], "not_exhaustive_category_ids": []})
        anns = _instances(rng, [im["id"] for im in images], size, [1, 2], quirks=False, crowd=False)
        for a in anns:
            a.pop("iscrowd", None)
        (lvis / f"lvis_v1_{split}.json").write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))
    return lvis
