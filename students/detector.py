"""Region-embedding detector: torchvision Faster R-CNN + FPN whose box head emits D-dim region embeddings.

Only the box side changes (``students.region_heads``): a projection to the embedding space, a learned
background embedding, class-agnostic box regression, class scores that are cosine similarities to text
embeddings supplied at call time divided by a temperature τ, and (ViLD-ensemble) a separate image branch
whose blended scores are used as they are. Everything else — transform, backbone, RPN, RoI pooling,
losses, NMS — is torchvision's ``FasterRCNN`` (RoI pooling with a faster CPU gradient: ``students.roi_pool``).
"""
from __future__ import annotations

import contextlib
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from .detection_backbones import build_backbone
from .region_heads import DualBranchHead, EmbeddingBoxPredictor, EmbeddingRoIHeads
from .roi_pool import SeparableGradMultiScaleRoIAlign


class BackbonePass(NamedTuple):
    """One pass of the detector's transform and backbone over a list of images."""

    original: list  # each image's (H, W) before the transform
    images: ImageList
    features: dict[str, Tensor]


class RegionEmbeddingDetector(FasterRCNN):
    """Faster R-CNN (FPN) emitting ``embed_dim``-d region embeddings; classes are text given at call time.

    ``detector(images, targets, text=T)``: torchvision's losses in training (labels 1..K index the rows
    of ``T``, 0 is background) and detections in eval (``labels`` 1..K). ``text`` must be
    L2-normalised ``[K, D]``; ``novel_mask`` / ``ensemble_lambda`` switch on ViLD-ensemble scoring.
    """

    def __init__(
        self,
        embed_dim: int,
        backbone: str = "resnet50",
        weights: str | None = None,
        trainable_layers: int = 3,
        norm: Literal["auto", "frozen", "bn"] = "auto",
        fpn_channels: int = 256,
        representation_size: int = 1024,
        anchor_sizes: list[int] | None = None,
        tau: float = 0.01,
        image_head: bool = False,
        image_branch: Literal["separate", "projection"] = "separate",
        min_size: int = 800,
        max_size: int = 1333,
        **rcnn_kwargs,
    ):
        bb = build_backbone(backbone, weights, trainable_layers, norm, fpn_channels)
        n_levels = getattr(bb, "num_levels", None) or len(bb.body.return_layers) + 1  # + LastLevelMaxPool
        sizes = anchor_sizes or [32, 64, 128, 256, 512][:n_levels]
        if len(sizes) != n_levels:
            raise ValueError(f"anchor_sizes needs one size per FPN level ({n_levels}), got {sizes}")
        anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * n_levels)
        head = TwoMLPHead(bb.out_channels * 7 * 7, representation_size)
        if image_head and image_branch == "separate":  # ViLD-ensemble: the image embedding has head layers of its own
            head = DualBranchHead(head, TwoMLPHead(bb.out_channels * 7 * 7, representation_size))
        predictor = EmbeddingBoxPredictor(representation_size, embed_dim, tau, image_branch if image_head else None)
        # torchvision's default pooler (levels 0-3, 7x7, 2 samples), with a CPU gradient that is not one thread's loop
        rcnn_kwargs.setdefault("box_roi_pool", SeparableGradMultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2))
        super().__init__(
            bb, None, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors, box_head=head,
            box_predictor=predictor, **rcnn_kwargs,
        )
        # torchvision's RoIHeads, with post-processing that ranks the ensemble's scores as they are (no state added)
        self.roi_heads.__class__ = EmbeddingRoIHeads
        self.embed_dim = embed_dim

    @property
    def predictor(self) -> EmbeddingBoxPredictor:
        return self.roi_heads.box_predictor

    @contextlib.contextmanager
    def vocabulary(self, text: Tensor, novel_mask: Tensor | None = None, ensemble_lambda: float | None = None):
        if text.ndim != 2 or text.shape[1] != self.embed_dim:
            raise ValueError(f"text embeddings must be [K, {self.embed_dim}], got {tuple(text.shape)}")
        p = self.predictor
        p.text, p.novel_mask, p.ensemble_lambda = text, novel_mask, ensemble_lambda
        try:
            yield
        finally:
            p.text, p.novel_mask, p.ensemble_lambda = None, None, None

    def forward(self, images, targets=None, text: Tensor | None = None, novel_mask=None, ensemble_lambda=None):
        if text is None:
            return super().forward(images, targets)
        with self.vocabulary(text, novel_mask, ensemble_lambda):
            return super().forward(images, targets)

    def forward_with_regions(
        self, images: list[Tensor], targets: list[dict], text: Tensor, regions: list[Tensor], head: Literal["text", "image"] = "text"
    ) -> tuple[dict, Tensor]:
        """Training losses plus normalised embeddings ``[sum N_i, D]`` of given boxes (xyxy, input pixels).

        One backbone pass serves both: the detector losses (RPN + box head on the gold boxes) and the
        ViLD-image regions, pooled from the same FPN features.
        """
        original = [img.shape[-2:] for img in images]
        with self.vocabulary(text):
            images_t, targets_t = self.transform(images, targets)
            features = self.backbone(images_t.tensors)
            proposals, rpn_losses = self.rpn(images_t, features, targets_t)
            _, det_losses = self.roi_heads(features, proposals, images_t.image_sizes, targets_t)
        boxes = [resize_boxes(b.to(images_t.tensors.dtype), o, s) for b, o, s in zip(regions, original, images_t.image_sizes, strict=True)]
        x = self.roi_heads.box_head(self.roi_heads.box_roi_pool(features, boxes, images_t.image_sizes))
        return {**rpn_losses, **det_losses}, self.predictor.embed(x, head)

    def _backbone_pass(self, images: list[Tensor]) -> BackbonePass:
        original = [img.shape[-2:] for img in images]
        images_t, _ = self.transform(images)
        return BackbonePass(original, images_t, self.backbone(images_t.tensors))

    @torch.no_grad()
    def propose(self, images: list[Tensor], keep_features: bool = False):
        """Class-agnostic RPN proposals (xyxy, input pixels) and their objectness in [0, 1], per image.

        ``keep_features``: also return the backbone pass (``BackbonePass``), so that ``refine_boxes(images, boxes,
        features=...)`` on the same images does not run the backbone again (the pseudo labeller's round one)."""
        original, images_t, features = passed = self._backbone_pass(images)
        rpn = self.rpn
        objectness, deltas = rpn.head(list(features.values()))
        anchors = rpn.anchor_generator(images_t, list(features.values()))
        n = len(anchors)
        shapes = [o[0].shape for o in objectness]
        per_level = [s[0] * s[1] * s[2] for s in shapes]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        boxes = rpn.box_coder.decode(deltas.detach(), anchors).view(n, -1, 4)
        boxes, scores = rpn.filter_proposals(boxes, objectness, images_t.image_sizes, per_level)
        out = [resize_boxes(b, s, o) for b, s, o in zip(boxes, images_t.image_sizes, original, strict=True)]
        return (out, scores, passed) if keep_features else (out, scores)

    @torch.no_grad()
    def refine_boxes(self, images: list[Tensor], boxes: list[Tensor], features: BackbonePass | None = None) -> list[Tensor]:
        """``boxes`` (xyxy, input pixels) moved by the second stage's class-agnostic box regression, clipped.

        A proposal that covers only part of an unannotated object is often pulled onto it: the regression
        learned on base boxes is class-agnostic and carries over (round-one pseudo boxes use it). ``features``: the
        backbone pass ``propose(images, keep_features=True)`` returned for these images.
        """
        original, images_t, features = features if features is not None else self._backbone_pass(images)
        scaled = [resize_boxes(b.to(images_t.tensors.dtype), o, s) for b, o, s in zip(boxes, original, images_t.image_sizes, strict=True)]
        x = self.roi_heads.box_head(self.roi_heads.box_roi_pool(features, scaled, images_t.image_sizes))
        deltas = self.predictor.box_deltas(x)
        moved = self.roi_heads.box_coder.decode(deltas, scaled).reshape(-1, 4).split([len(b) for b in scaled])
        return [resize_boxes(box_ops.clip_boxes_to_image(b, s), s, o) for b, s, o in zip(moved, images_t.image_sizes, original, strict=True)]
