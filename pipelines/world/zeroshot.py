"""Zero-shot quality of a teacher on the synthetic world: crop classification and dense mIoU."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from distill.regions import teacher_region_embeddings

from .generate import scene_rng
from .scene import SceneConfig, sample_scene


def single_object_crops(
    classes: tuple[str, ...], per_class: int = 40, seed: int = 0, image_size: int = 96
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Held-out single-object scenes (their own seed stream) with the object's box.

    Returns images ``[N,3,S,S]`` in [0,1], one ``[1,4]`` xyxy box per image, and labels ``[N]``.
    """
    cfg = SceneConfig(image_size=image_size, min_objects=1, max_objects=1)
    images, boxes, labels = [], [], []
    for c, name in enumerate(classes):
        for i in range(per_class):
            rng = scene_rng(seed, f"zeroshot-{name}", i)
            scene = sample_scene(rng, cfg, (name,), n_objects=1)
            pixels = scene.pixels
            rle = mask_utils.encode(np.asfortranarray(scene.instances[0].mask.astype(np.uint8)))
            x, y, w, h = mask_utils.toBbox(rle)
            images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
            boxes.append(torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32))
            labels.append(c)
    return torch.stack(images), boxes, torch.tensor(labels)


#: crop protocols a teacher is scored with: (name, crop scales about the object's box)
CROP_PROTOCOLS = (
    ("tight crops (1.0x box)", (1.0,)),
    ("context crops (1.5x box)", (1.5,)),
    ("ViLD crops (1x + 1.5x embeddings averaged)", (1.0, 1.5)),
)


def crop_record(teacher, classes, per_class: int = 40, seed: int = 0) -> dict:
    """``{protocol name: {"mean", "per_class", "scales"}}`` for every crop protocol (what a teacher's JSON records)."""
    record = {}
    for name, scales in CROP_PROTOCOLS:
        mean, by_class = crop_accuracy(teacher, classes, per_class=per_class, seed=seed, scales=scales)
        record[name] = {"mean": round(mean, 2), "per_class": {c: round(v, 2) for c, v in by_class.items()}, "scales": list(scales)}
    return record


@torch.no_grad()
def crop_accuracy(
    teacher, classes, templates="simple", per_class: int = 40, seed: int = 0, batch: int = 64, scales=(1.5,),
    region_teacher: str = "crop", output_stride: int | None = None,
):
    """Zero-shot accuracy (%) on held-out single-object crops: mean of per-class accuracies, and per class.

    Each object's box, enlarged 1.5x about its centre (the object with a margin of context, as ViLD's
    context crop), is embedded with ``encode_regions`` and matched to "a photo of a {class}.". Pass
    ``scales=(1.0,)`` for tight crops or ``(1.0, 1.5)`` for ViLD's average; ``region_teacher="dense"`` pools the
    boxes from one dense forward per image instead.
    """
    images, boxes, labels = single_object_crops(tuple(classes), per_class, seed)
    text = teacher.encode_text(list(classes), templates)
    preds = []
    for s in range(0, len(images), batch):
        emb = teacher_region_embeddings(teacher, list(images[s : s + batch]), boxes[s : s + batch], scales, region_teacher, output_stride)
        preds.append((emb @ text.T).argmax(1).cpu())
    preds = torch.cat(preds)
    per_class = {c: float((preds[labels == i] == i).float().mean() * 100) for i, c in enumerate(classes)}
    return float(np.mean(list(per_class.values()))), per_class


@torch.no_grad()
def dense_quality(teacher, root, split: str = "val", size=None, near: int = 8, templates="simple", batch: int = 32,
                  **refine) -> dict:
    """One MaskCLIP zero-shot pass of ``teacher`` over a world split (``refine`` goes to dense_logits): the mIoU keys
    of ``OpenVocabMeanIoU`` (mIoU, mIoU_seen, mIoU_unseen, hIoU, ...) and where the background mistakes lie (the
    largest class, so they decide the mIoU): ``background_near_error`` / ``background_far_error``, the share (%) of
    background pixels named as an object within ``near`` px (Chebyshev) of an object and farther away, and
    ``background_near_share``, the share of background pixels that are near; ``pixel_recall``, per class name the share
    (%) of its pixels the map names right (how well it tells the shapes apart); ``seen_named_unseen`` /
    ``unseen_named_seen``, the share (%) of seen-object pixels named as an unseen class and of unseen-object pixels
    named as a seen object class (which way the map leans between the two groups)."""
    from pathlib import Path

    from distill.metrics import OpenVocabMeanIoU
    from pipelines.data.seg_folder import SegFolderDataset

    from .generate import load_spec

    root = Path(root)
    spec = load_spec(root)
    names = ["background", *spec.classes]
    ds = SegFolderDataset(root / "images" / split, root / "labels" / split, len(names))
    novel = [names.index(c) for c in spec.novel]
    metric = OpenVocabMeanIoU(len(names), novel)
    text = teacher.encode_text(names, templates)
    counts = torch.zeros(4, dtype=torch.long)  # near pixels, near errors, far pixels, far errors
    hits, totals = torch.zeros(len(names), dtype=torch.long), torch.zeros(len(names), dtype=torch.long)
    unseen = torch.zeros(len(names), dtype=torch.bool)
    unseen[novel] = True
    seen = ~unseen
    seen[0] = False  # background is neither group
    crossed = torch.zeros(2, dtype=torch.long)  # seen pixels named unseen, unseen pixels named seen
    for s in range(0, len(ds), batch):
        items = [ds[i] for i in range(s, min(len(ds), s + batch))]
        images = torch.stack([it["image"] for it in items])
        labels = torch.stack([it["label"] for it in items])
        pred = teacher.dense_logits(images, text, size=size, **refine).argmax(1).cpu()
        metric.update(pred, labels)
        counts += _background_error_counts(pred, labels, len(names), near)
        valid = labels < len(names)
        totals += torch.bincount(labels[valid], minlength=len(names))
        hits += torch.bincount(labels[valid & (pred == labels)], minlength=len(names))
        lab, named = labels[valid], pred[valid]
        crossed += torch.stack([(seen[lab] & unseen[named]).sum(), (unseen[lab] & seen[named]).sum()])
    near_px, near_err, far_px, far_err = counts.tolist()
    recall = {n: 100 * h / t for n, h, t in zip(names, hits.tolist(), totals.tolist(), strict=True) if t > 0}
    return {**metric.compute(), "background_near_error": 100 * near_err / max(1, near_px),
            "background_far_error": 100 * far_err / max(1, far_px), "background_near_share": 100 * near_px / max(1, near_px + far_px),
            "pixel_recall": recall,
            "seen_named_unseen": 100 * crossed[0].item() / max(1, int(totals[seen].sum())),
            "unseen_named_seen": 100 * crossed[1].item() / max(1, int(totals[unseen].sum()))}


def _background_error_counts(pred: torch.Tensor, labels: torch.Tensor, num_classes: int, near: int) -> torch.Tensor:
    """[near background pixels, of them named as an object, far background pixels, of them named as an object]."""
    background = labels == 0
    objects = ((labels > 0) & (labels < num_classes)).float()[:, None]
    close = F.max_pool2d(objects, 2 * near + 1, stride=1, padding=near)[:, 0] > 0
    wrong = background & (pred != 0)
    near_px, far_px = background & close, background & ~close
    return torch.tensor([int(near_px.sum()), int((wrong & near_px).sum()), int(far_px.sum()), int((wrong & far_px).sum())])
