"""Region-embedding detector: torchvision Faster R-CNN + FPN whose box head emits D-dim region embeddings.

Only the box predictor changes (``EmbeddingBoxPredictor``): a projection to the embedding space, a
learned background embedding, class-agnostic box regression, and class scores that are cosine
similarities to text embeddings supplied at call time divided by a temperature τ. Everything else —
transform, backbone, RPN, RoI pooling, losses, post-processing — is torchvision's ``FasterRCNN``.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, resnet
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, mobilenet_backbone
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2")
MOBILENETS = {"mobilenet_v2": mobilenet_v2, "mobilenet_v3_large": mobilenet_v3_large}


def _load_backbone_weights(model: nn.Module, path: str) -> None:
    """Load a torchvision classification checkpoint (state dict, optionally under ``state_dict``) into ``model``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"backbone weights file {p} does not exist")
    state = torch.load(p, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "num_batches_tracked" not in k]
    if missing or len(unexpected) > 2:  # a classifier's fc.weight / fc.bias may be left over
        raise ValueError(f"{p} does not fit the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}")


def build_backbone(
    name: str, weights: str | None = None, trainable_layers: int = 3, norm: str = "auto", out_channels: int = 256
) -> BackboneWithFPN:
    """A torchvision ResNet / MobileNet (or ``timm:<name>``) with an FPN. ``weights``: None or a local file.

    ``norm="auto"`` freezes BatchNorm statistics (torchvision's detection default) when weights are
    loaded and trains ordinary BatchNorm from scratch otherwise.
    """
    if norm not in ("auto", "frozen", "bn"):
        raise ValueError(f"norm must be 'auto', 'frozen' or 'bn', got {norm!r}")
    frozen = norm == "frozen" or (norm == "auto" and weights is not None)
    norm_layer = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
    if name.startswith("timm:"):
        return TimmBackboneWithFPN(name[5:], weights, trainable_layers, frozen, out_channels)
    if name in RESNETS:
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
        body = getattr(resnet, name)(weights=None, norm_layer=norm_layer)
        if weights is not None:
            _load_backbone_weights(body, weights)
        train = ["layer4", "layer3", "layer2", "layer1", "conv1", "bn1"][: trainable_layers + (trainable_layers == 5)]
        for pname, param in body.named_parameters():
            param.requires_grad_(any(pname.startswith(t) for t in train))
        c2 = body.inplanes // 8
        return BackboneWithFPN(
            body, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}, [c2 * 2 ** (k - 1) for k in (1, 2, 3, 4)], out_channels
        )
    if name in MOBILENETS:
        bb = mobilenet_backbone(backbone_name=name, weights=None, fpn=True, norm_layer=norm_layer, trainable_layers=trainable_layers)
        if weights is not None:
            probe = MOBILENETS[name](weights=None, norm_layer=norm_layer)
            _load_backbone_weights(probe, weights)
            bb.body.load_state_dict({k: v for k, v in probe.features.state_dict().items()}, strict=True)
        return bb
    raise ValueError(f"unknown backbone {name!r}; known: {list(RESNETS) + list(MOBILENETS)}")


class TimmBackboneWithFPN(nn.Module):
    """A timm model (``features_only``, strides 4-32) under torchvision's FPN; ``weights`` a local timm state dict."""

    def __init__(self, name: str, weights: str | None, trainable_layers: int, frozen_bn: bool, out_channels: int):
        import timm
        from timm.layers import freeze_batch_norm_2d

        super().__init__()
        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        except RuntimeError as err:
            raise ValueError(f"unknown timm backbone {name!r}: {err}") from err
        if weights is not None:
            _load_backbone_weights(self.body, weights)
        if frozen_bn:
            self.body = freeze_batch_norm_2d(self.body)
        # freeze the stem and the first stages as torchvision does: trainable_layers counts from the top
        stages = [n for n, _ in self.body.named_children()]
        frozen = stages[: max(0, len(stages) - trainable_layers)] if trainable_layers < 5 else []
        for n, child in self.body.named_children():
            child.requires_grad_(n not in frozen)
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.num_levels = 5

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


class EmbeddingBoxPredictor(nn.Module):
    """Box predictor emitting ``[cos(e, e_bg), cos(e, t_1), ...] / tau`` and class-agnostic box deltas.

    The vocabulary (L2-normalised text embeddings ``[K, D]``) is set per call by the detector. With an
    ``image_head`` (ViLD-ensemble) a second projection is trained against teacher region embeddings;
    at inference its class probabilities are blended with the text head's: base classes
    ``p_text^λ · p_image^(1-λ)``, novel ``p_text^(1-λ) · p_image^λ``, background from the text head.
    """

    def __init__(self, in_channels: int, embed_dim: int, tau: float = 0.01, image_head: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.embed_dim, self.tau = embed_dim, tau
        self.proj = nn.Linear(in_channels, embed_dim)
        self.image_proj = nn.Linear(in_channels, embed_dim) if image_head else None
        self.bbox_pred = nn.Linear(in_channels, 4)
        self.background = nn.Parameter(torch.randn(embed_dim) * embed_dim**-0.5)
        self.text: Tensor | None = None
        self.novel_mask: Tensor | None = None
        self.ensemble_lambda: float | None = None

    def embed(self, x: Tensor, head: str = "text") -> Tensor:
        proj = self.proj if head == "text" else self.image_proj
        if proj is None:
            raise ValueError("this detector has no image head (build it with image_head=True)")
        return F.normalize(proj(x.flatten(1)), dim=-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.text is None:
            raise RuntimeError("no vocabulary: call the detector with text=... (L2-normalised [K, D] embeddings)")
        x = x.flatten(1)
        classes = torch.cat([F.normalize(self.background, dim=0)[None], self.text.to(x.dtype)])
        logits = self.embed(x) @ classes.T / self.tau
        if self.image_proj is not None and self.ensemble_lambda is not None and not self.training:
            logits = self._ensemble(logits, self.embed(x, "image") @ self.text.to(x.dtype).T / self.tau)
        deltas = self.bbox_pred(x)
        return logits, deltas.repeat(1, logits.shape[1])  # the same box for every class (class-agnostic)

    def _ensemble(self, text_logits: Tensor, image_logits: Tensor) -> Tensor:
        lam = self.ensemble_lambda
        p_text = text_logits.softmax(-1)
        p_image = image_logits.softmax(-1)
        novel = self.novel_mask.to(p_text.device) if self.novel_mask is not None else torch.zeros(p_image.shape[1], dtype=torch.bool)
        w_text = torch.where(novel, 1 - lam, lam)
        blended = p_text[:, 1:].clamp_min(1e-12) ** w_text * p_image.clamp_min(1e-12) ** (1 - w_text)
        # torchvision soft-maxes the returned logits: the log of the blend keeps the ratios between classes
        return torch.cat([p_text[:, :1], blended], 1).log()


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
        predictor = EmbeddingBoxPredictor(representation_size, embed_dim, tau, image_head)
        super().__init__(
            bb, None, min_size=min_size, max_size=max_size, rpn_anchor_generator=anchors, box_head=head,
            box_predictor=predictor, **rcnn_kwargs,
        )
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
        self, images: list[Tensor], targets: list[dict], text: Tensor, regions: list[Tensor], head: str = "text"
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
        boxes = [resize_boxes(b.to(images_t.tensors.dtype), o, s) for b, o, s in zip(regions, original, images_t.image_sizes)]
        x = self.roi_heads.box_head(self.roi_heads.box_roi_pool(features, boxes, images_t.image_sizes))
        return {**rpn_losses, **det_losses}, self.predictor.embed(x, head)

    @torch.no_grad()
    def propose(self, images: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Class-agnostic RPN proposals (xyxy, input pixels) and their objectness in [0, 1], per image."""
        original = [img.shape[-2:] for img in images]
        images_t, _ = self.transform(images)
        features = self.backbone(images_t.tensors)
        rpn = self.rpn
        objectness, deltas = rpn.head(list(features.values()))
        anchors = rpn.anchor_generator(images_t, list(features.values()))
        n = len(anchors)
        shapes = [o[0].shape for o in objectness]
        per_level = [s[0] * s[1] * s[2] for s in shapes]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        boxes = rpn.box_coder.decode(deltas.detach(), anchors).view(n, -1, 4)
        boxes, scores = rpn.filter_proposals(boxes, objectness, images_t.image_sizes, per_level)
        out = [resize_boxes(b, s, o) for b, s, o in zip(boxes, images_t.image_sizes, original)]
        return out, scores
