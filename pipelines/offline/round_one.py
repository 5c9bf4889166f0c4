"""One proposer pass over the training images for both teacher steps of the detection recipe: ViLD-image's
stored proposals (top-N boxes and the teacher's region embeddings) and round-one pseudo labels.

The two steps read the same base-trained proposer on the same images; run apart, each pays for its own backbone
and RPN pass and its own image reads. Here each batch is proposed once and both steps take what they need from it,
so the results are those of ``compute_proposals`` and ``teacher_pseudo_labels`` run apart with the same batches.
"""
from __future__ import annotations

import torch

from .batches import batches
from .proposals import proposals_table, propose_batch
from .pseudo_labels import label_vocabulary, teacher_label_batch, teacher_settings, to_coco


@torch.no_grad()
def proposals_and_pseudo_labels(
    proposer, teacher, dataset, class_names: list[str], novel: list[str], top_n: int, batch_size: int = 8, scales=(1.0, 1.5),
    templates="simple", prompts: str | None = None, score_threshold: float = 0.5, top_k: int = 5, nms_iou: float = 0.5,
    gold_iou: float = 0.5, scale: float = 100.0, refine: bool = True, progress=None,
) -> tuple[dict, dict]:
    """``(proposals table, pseudo-label COCO JSON)``: what ``compute_proposals(proposer, dataset, top_n, teacher, scales,
    batch_size)`` and ``teacher_pseudo_labels(..., top_proposals=top_n, batch_size=batch_size)`` return, from one
    proposer pass (crop region teacher)."""
    proposer.eval()
    text, target = label_vocabulary(teacher, class_names, novel, templates, prompts)
    settings = teacher_settings(score_threshold, top_k, nms_iou, gold_iou, scale, top_n, refine)
    device = next(proposer.parameters()).device
    items, found = [], []
    for images, targets in batches(dataset, batch_size, progress):
        images = [i.to(device) for i in images]
        proposed = proposer.propose(images, keep_features=True)
        items += propose_batch(proposer, teacher, images, targets, top_n, scales, proposed=proposed)
        found += teacher_label_batch(teacher, proposer, text, target, dataset, images, targets, settings, proposed=proposed)
    labels = to_coco(dataset, class_names, novel, found, getattr(teacher, "name", "teacher"), settings, 1)
    return proposals_table(items, dataset, teacher, scales), labels
