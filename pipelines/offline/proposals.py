"""Offline proposals for ViLD-image: a base-trained RPN's top-N boxes per image and the teacher's region
embeddings of them (1x + 1.5x crops), batch by batch; ``pipelines.data.proposals_file`` stores them."""
from __future__ import annotations

import torch

from distill.regions import teacher_region_embeddings
from pipelines.data.proposals_file import file_fingerprint, pack_proposals

from .batches import batches


@torch.no_grad()
def propose_batch(detector, teacher, images, targets, top_n: int, scales=(1.0, 1.5), region_teacher: str = "crop",
                  region_stride: int | None = None, proposed: tuple | None = None) -> list[dict]:
    """Per image: ``image_id``, top-N ``boxes`` (xyxy pixels), ``objectness`` and, with a teacher, ``regions``
    (crop or dense-pooled embeddings, ``region_teacher``). ``proposed``: ``detector.propose(images)``'s output when
    another step has already run it on these images."""
    props, scores = (proposed or detector.propose(images))[:2]
    props = [p[:top_n] for p in props]
    scores = [s[:top_n] for s in scores]
    out = [{"image_id": int(t["image_id"]), "boxes": p, "objectness": s} for t, p, s in zip(targets, props, scores, strict=True)]
    if teacher is not None:
        regions = teacher_region_embeddings(teacher, images, props, scales, region_teacher, region_stride)
        for item, r in zip(out, regions.split([len(p) for p in props]), strict=True):
            item["regions"] = r
    return out


def compute_proposals(detector, dataset, top_n: int = 100, teacher=None, scales=(1.0, 1.5), batch_size: int = 8, progress=None,
                      region_teacher: str = "crop", region_stride: int | None = None) -> dict:
    """In-process pass (the demo); ``ovdistill proposals`` runs ``propose_batch`` through ``Trainer.predict``."""
    detector.eval()
    device = next(detector.parameters()).device
    items = []
    for images, targets in batches(dataset, batch_size, progress):
        items += propose_batch(detector, teacher, [i.to(device) for i in images], targets, top_n, scales, region_teacher, region_stride)
    return proposals_table(items, dataset, teacher, scales, region_teacher)


def proposals_table(items: list[dict], dataset, teacher, scales, region_teacher: str = "crop") -> dict:
    """The proposals file's dict from ``propose_batch`` items computed on ``dataset``'s images."""
    items = [{k: (v.cpu() if torch.is_tensor(v) else v) for k, v in i.items()} for i in items]
    return pack_proposals(items, teacher, scales, file_fingerprint(dataset.ann_file), region_teacher)
