"""Write a synthetic world to disk: images, semantic label PNGs, COCO instances (RLE), captions, split.

Generation is deterministic per (seed, split, index), so the same spec always gives byte-identical
files. Everything is written into a sibling ``.partial`` directory that is renamed into place after
the manifest is written, so an interrupted run never leaves a world that looks complete; the next run
discards the partial directory and starts again.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from .scene import caption, sample_scene
from .spec import MANIFEST, SPLIT_FILE, WorldSpec, captions_path, image_path, instances_path, label_path

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class WorldExistsError(RuntimeError):
    """The output directory holds something that is not this world."""


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    split_id = _SPLIT_IDS.get(split, sum(map(ord, split)) + 100)
    return np.random.default_rng(np.random.SeedSequence([seed, split_id, index]))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def _split_records(spec: WorldSpec, split: str, n: int, root: Path, progress: bool):
    classes = spec.classes
    cat_ids = {c: i + 1 for i, c in enumerate(classes)}
    novel = set(spec.novel)
    hide_novel = split == "train"
    images, anns, caps = [], [], []
    size = spec.scene.image_size
    for index in tqdm(range(n), desc=f"world {split}", disable=not progress, leave=False):
        rng = scene_rng(spec.seed, split, index)
        scene = sample_scene(rng, spec.scene, classes)
        pixels, instances = scene.pixels, scene.instances
        label = np.zeros((size, size), dtype=np.uint8)
        image_id = index + 1
        for inst in instances:
            is_novel = inst.shape in novel
            # the training split never labels novel classes: ignore (255) in the semantic map, absent in COCO
            label[inst.mask] = 255 if (hide_novel and is_novel) else cat_ids[inst.shape]
            if hide_novel and is_novel:
                continue
            rle = mask_utils.encode(np.asfortranarray(inst.mask.astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            area = float(mask_utils.area(rle))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[inst.shape],
                    "bbox": [x, y, w, h],
                    "area": area,
                    "segmentation": rle,
                    "iscrowd": 0,
                    "colour": inst.colour,
                }
            )
        Image.fromarray(pixels).save(root / image_path(split, index))
        Image.fromarray(label).save(root / label_path(split, index))
        images.append({"id": image_id, "file_name": image_path(split, index), "height": size, "width": size})
        caps.append({"id": image_id, "image_id": image_id, "caption": caption(scene, rng)})
    categories = [
        {"id": cat_ids[c], "name": c, "supercategory": "shape", "split": "novel" if c in novel else "base"} for c in classes
    ]
    return {"images": images, "annotations": anns, "categories": categories}, {"images": images, "annotations": caps}


def write_world(spec: WorldSpec, out: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate ``spec`` into ``out``; reuse it if ``out`` already holds exactly this world."""
    out = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise WorldExistsError(f"--out {str(out)!r} is the working directory or one above it; give a new directory such as data/world")
    manifest = out / MANIFEST
    if out.exists() and any(out.iterdir()):
        if manifest.is_file():
            existing = json.loads(manifest.read_text())
            if existing.get("fingerprint") == spec.fingerprint():
                return out
            what = f"a different world (fingerprint {existing.get('fingerprint')}, wanted {spec.fingerprint()})"
        else:
            what = "files that are not a synthetic world"
        if not overwrite:
            raise WorldExistsError(f"--out {str(out)!r} is not empty: it holds {what}; pass --overwrite to replace it")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for split in spec.splits:
        (partial / "images" / split).mkdir(parents=True)
        (partial / "labels" / split).mkdir(parents=True)
    for split, n in spec.splits.items():
        instances, captions = _split_records(spec, split, n, partial, progress)
        _write_json(partial / instances_path(split), instances)
        _write_json(partial / captions_path(split), captions)
    split_info = {
        "classes": list(spec.classes),
        "base": list(spec.base),
        "novel": list(spec.novel),
        "ignore_index": 255,
        "background": 0,
        "label_ids": {c: i + 1 for i, c in enumerate(spec.classes)},
    }
    _write_json(partial / SPLIT_FILE, split_info)
    _write_json(partial / MANIFEST, {"fingerprint": spec.fingerprint(), "spec": spec.to_dict()})
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


def load_spec(root: str | os.PathLike) -> WorldSpec:
    """The spec of a complete world directory (raises if the directory is not a complete world)."""
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{str(root)!r} is not a complete synthetic world (no {MANIFEST}); run `ovdistill world`")
    return WorldSpec.from_dict(json.loads(manifest.read_text())["spec"])
