"""The box side of the region-embedding detector: embedding predictor, ViLD-ensemble image branch, and the RoI
heads whose post-processing takes the predictor's class scores as they are.

``EmbeddingBoxPredictor`` scores ``[cos(e, e_bg), cos(e, t_1), ...] / tau`` (ViLD-text) with class-agnostic box
deltas. With an image branch (ViLD-ensemble) inference scores are ViLD's blend, used directly:
base ``p_text^λ · p_image^(1-λ)``, novel ``p_text^(1-λ) · p_image^λ`` — torchvision would soft-max them again,
which divides each box by its own ``p_bg + Σ blend`` and reorders boxes within a class.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from .ensemble import vild_blend


class DualBranchHead(nn.Module):
    """ViLD-ensemble's separate branch: a text head and an image head of their own over the same RoI features;
    their outputs are concatenated (the predictor splits them)."""

    def __init__(self, text: nn.Module, image: nn.Module):
        super().__init__()
        self.text, self.image = text, image

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.text(x), self.image(x)], dim=1)


class EmbeddingBoxPredictor(nn.Module):
    """Cosine/τ class logits against text given per call, a learned background embedding, class-agnostic boxes.

    ``image_head``: ``None``; ``"separate"`` (ViLD: the image embedding comes from its own head layers, the box
    head being a ``DualBranchHead`` whose output is ``[text features, image features]``); ``"projection"``
    (lighter: shared head layers, only the last projection differs).
    """

    def __init__(
        self, in_channels: int, embed_dim: int, tau: float = 0.01, image_head: Literal["separate", "projection"] | None = None,
    ):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if image_head not in (None, "separate", "projection"):
            raise ValueError(f"image_head={image_head!r}; expected None, 'separate' or 'projection'")
        self.embed_dim, self.tau, self.in_channels, self.image_head = embed_dim, tau, in_channels, image_head
        self.proj = nn.Linear(in_channels, embed_dim)
        self.image_proj = nn.Linear(in_channels, embed_dim) if image_head else None
        self.bbox_pred = nn.Linear(in_channels, 4)
        self.background = nn.Parameter(torch.randn(embed_dim) * embed_dim**-0.5)
        self.text: Tensor | None = None
        self.novel_mask: Tensor | None = None
        self.ensemble_lambda: float | None = None

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        if self.image_head == "separate":
            return x[:, : self.in_channels], x[:, self.in_channels :]
        return x, x

    def embed(self, x: Tensor, head: Literal["text", "image"] = "text") -> Tensor:
        """Normalised region embeddings of box-head features from the text or the image branch."""
        text_x, image_x = self._split(x)
        if head == "text":
            return F.normalize(self.proj(text_x), dim=-1)
        if self.image_proj is None:
            raise ValueError("this detector has no image head (build it with image_head='separate')")
        return F.normalize(self.image_proj(image_x), dim=-1)

    @property
    def ensembling(self) -> bool:
        return self.image_proj is not None and self.ensemble_lambda is not None and not self.training

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(class output, box deltas)``: logits, or with ensembling at inference the final class scores."""
        if self.text is None:
            raise RuntimeError("no vocabulary: call the detector with text=... (L2-normalised [K, D] embeddings)")
        text_x, _ = self._split(x)
        classes = torch.cat([F.normalize(self.background, dim=0)[None], self.text.to(text_x.dtype)])
        out = self.embed(x) @ classes.T / self.tau
        if self.ensembling:
            out = self.blend(out, self.embed(x, "image") @ self.text.to(text_x.dtype).T / self.tau)
        return out, self.box_deltas(x).repeat(1, out.shape[1])  # the same box for every class (class-agnostic)

    def box_deltas(self, x: Tensor) -> Tensor:
        """``[N, 4]`` class-agnostic box regression of box-head features (it reads the text branch)."""
        return self.bbox_pred(self._split(x)[0])

    def blend(self, text_logits: Tensor, image_logits: Tensor) -> Tensor:
        """ViLD-ensemble scores ``[p_bg (text head), blended class scores]``, not renormalised."""
        p_text = text_logits.softmax(-1)
        p_image = image_logits.softmax(-1)
        novel = self.novel_mask if self.novel_mask is not None else torch.zeros(p_image.shape[1], dtype=torch.bool)
        return torch.cat([p_text[:, :1], vild_blend(p_text[:, 1:], p_image, novel, self.ensemble_lambda)], 1)

    def class_scores(self, class_output: Tensor) -> Tensor:
        """What torchvision's post-processing should rank: softmax of logits, or the ensemble's scores as they are."""
        return class_output if self.ensembling else F.softmax(class_output, -1)


class EmbeddingRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` with one change in post-processing: class scores come from
    ``box_predictor.class_scores`` (torchvision soft-maxes the predictor's output unconditionally)."""

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        if not self.box_predictor.ensembling:  # logits: exactly torchvision's own path
            return super().postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return self._postprocess_scores(self.box_predictor.class_scores(class_logits), box_regression, proposals, image_shapes)

    def _postprocess_scores(self, pred_scores, box_regression, proposals, image_shapes):
        """torchvision's ``postprocess_detections`` after its softmax: clip, drop background, threshold, NMS, top-k."""
        num_classes = pred_scores.shape[-1]
        per_image = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, shape in zip(pred_boxes.split(per_image, 0), pred_scores.split(per_image, 0), image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels
