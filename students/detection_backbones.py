"""Detection backbones with an FPN: torchvision ResNets / MobileNets or any timm ``features_only`` model, with
weights from a local file only (nothing is downloaded)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v2, mobilenet_v3_large, resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN, mobilenet_backbone
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
    name: str, weights: str | None = None, trainable_layers: int = 3, norm: Literal["auto", "frozen", "bn"] = "auto",
    out_channels: int = 256,
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

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))
