"""``PixelEmbeddingSegmenter``: an segmentation-models-pytorch network whose head emits one D-dim
embedding per pixel. Classes are text embeddings passed at call time, so the vocabulary is free."""
from __future__ import annotations

import os
from typing import Literal

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def load_encoder_weights(encoder: nn.Module, path: str, encoder_name: str) -> None:
    """A local state dict (torchvision / timm / smp layout; optionally under ``state_dict``) into an smp encoder.

    smp encoders override ``load_state_dict`` (some return nothing, some reject ``strict``), so the plain
    ``nn.Module`` loader is used and the key check done here: every encoder key must be present; extra keys
    (a classifier head) are ignored.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder_weights file not found: {path} (resolved in {os.path.abspath(os.path.dirname(path) or '.')})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    own = encoder.state_dict()
    if not any(k in own for k in state) and all(k.startswith("model.") for k in own):
        state = {f"model.{k}": v for k, v in state.items()}  # a plain timm state dict for a ``tu-`` encoder
    try:
        missing, _ = nn.Module.load_state_dict(encoder, state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"encoder_weights {path} does not fit encoder {encoder_name!r}: {str(err).splitlines()[-1].strip()[:300]}") from err
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"encoder_weights {path} lacks {len(missing)} of the {len(own)} tensors of encoder {encoder_name!r}, "
            f"e.g. {missing[:3]}; is it a state dict of that architecture?"
        )


class SpatialRegBlock(nn.Module):
    """LSeg's spatial regularisation: one depthwise 3x3 filter pair shared by every class channel,
    so it works for any number of classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 3, padding=1)
        self.conv2 = nn.Conv2d(1, 1, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, logits: Tensor) -> Tensor:
        b, k, h, w = logits.shape
        x = logits.reshape(b * k, 1, h, w)
        x = x + self.conv2(F.relu(self.conv1(x)))
        return x.reshape(b, k, h, w)


class PixelEmbeddingSegmenter(nn.Module):
    """Dense student: smp ``arch`` + ``encoder_name`` -> ``[B, D, H, W]`` L2-normalised pixel embeddings.

    Args:
        embed_dim: D, must equal the teacher's text embedding dim.
        arch / encoder_name: any smp architecture (``Unet``, ``FPN``, ``DeepLabV3Plus`` ...) and encoder
            (``resnet18``, ``mit_b0`` ...).
        encoder_weights: ``None`` (random init), a local state-dict file for the encoder, or an smp weights
            name (downloaded by smp; needs network).
        spatial_reg_blocks: number of LSeg spatial regularisation blocks applied to the logits.
        learnable_background: if set, class index ``background_index`` is scored against a learned
            embedding instead of its text embedding.
        image_head: a second D-dim embedding from the same decoder, for a loss of its own (dense distillation's
            ViLD-style ensemble): a convolution like smp's head's on the decoder output, kept at the decoder's
            resolution (1/4 of the input for FPN / DeepLabV3+) because its target, a teacher map, is coarser still;
            ``forward`` still returns the first (text) head, ``forward_heads`` both.
        upsample: where an architecture whose head upsamples (FPN, DeepLabV3+: 4x) reaches the input resolution.
            ``"logits"`` (default, as the official LSeg): embeddings stay at the decoder's resolution and ``classify``
            upsamples the K class logits; ``"embeddings"``: smp's head upsamples the D-dim embeddings, normalised at
            full resolution (D/K times the memory traffic: on the world's 96 px FPN student a training step takes
            4x as long, ``benchmarks/student_speed.py``). Architectures whose head does not upsample (Unet) are the
            same either way.
        encoder_depth / decoder_channels / smp_kwargs: passed to ``smp.create_model``.
    """

    def __init__(
        self,
        embed_dim: int,
        arch: str = "Unet",
        encoder_name: str = "resnet18",
        encoder_weights: str | None = None,
        spatial_reg_blocks: int = 0,
        learnable_background: bool = False,
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        smp_kwargs: dict | None = None,
        image_head: bool = False,
        upsample: Literal["logits", "embeddings"] = "logits",
    ):
        super().__init__()
        if upsample not in ("logits", "embeddings"):
            raise ValueError(f"upsample={upsample!r}; expected 'logits' or 'embeddings'")
        smp_kwargs = dict(smp_kwargs or {}, encoder_depth=encoder_depth)
        if decoder_channels is not None:
            smp_kwargs["decoder_channels"] = tuple(decoder_channels)
        local = encoder_weights is not None and (
            os.sep in encoder_weights or os.path.isfile(encoder_weights) or encoder_weights.endswith((".pt", ".pth", ".bin", ".safetensors"))
        )
        try:
            self.net = smp.create_model(
                arch, encoder_name=encoder_name, encoder_weights=None if local else encoder_weights,
                classes=embed_dim, **smp_kwargs,
            )
        except (OSError, RuntimeError, ValueError) as err:
            if encoder_weights is None or local:
                raise
            raise RuntimeError(
                f"could not get smp weights {encoder_weights!r} for encoder {encoder_name!r} ({str(err).splitlines()[0][:160]}). "
                "Without network, download the encoder's ImageNet state dict where there is network and set "
                "encoder_weights to that local file (e.g. checkpoints/resnet101_imagenet.pth)"
            ) from err
        if local:
            load_encoder_weights(self.net.encoder, encoder_weights, encoder_name)
        head = self.net.segmentation_head
        if upsample == "logits" and isinstance(head, nn.Sequential) and len(head) > 1 and isinstance(head[1], nn.Upsample):
            # smp's SegmentationHead is (conv, upsampling, activation); without the upsampling the head emits the
            # decoder's grid and ``classify`` brings the logits to the input size
            head[1] = nn.Identity()
        self.embed_dim, self.image_head, self.upsample = embed_dim, image_head, upsample
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.reg = nn.ModuleList(SpatialRegBlock() for _ in range(spatial_reg_blocks))
        self.background = nn.Parameter(torch.randn(embed_dim) * embed_dim**-0.5) if learnable_background else None
        self.distill_head = self._second_head(embed_dim) if image_head else None
        self._freeze_unused()

    def _second_head(self, embed_dim: int) -> nn.Conv2d:
        """smp's head convolution again (same input, kernel and initialisation), without its upsampling."""
        conv = self.net.segmentation_head[0]
        head = nn.Conv2d(conv.in_channels, embed_dim, conv.kernel_size, padding=conv.padding)
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    @torch.no_grad()
    def _freeze_unused(self) -> None:
        """Freeze parameters the forward never touches (e.g. encoder stages past ``encoder_depth``), so
        DDP runs without ``find_unused_parameters``."""
        used: set[int] = set()
        hooks = [m.register_forward_hook(lambda mod, a, o: used.add(id(mod))) for m in self.net.modules()]
        was_training = self.net.training
        self.net.eval()
        try:
            self.net(torch.zeros(1, 3, 64, 64))
        finally:
            for h in hooks:
                h.remove()
            self.net.train(was_training)
        for module in self.net.modules():
            if id(module) not in used:
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """Images ``[B,3,H,W]`` in [0,1] (H, W multiples of 32) -> normalised embeddings ``[B,D,h,w]`` (text head), at
        the input resolution or, with ``upsample="logits"``, the decoder's (``classify(..., size=(H, W))`` upsamples)."""
        return self.forward_heads(images)[0]

    def forward_heads(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(text-head embeddings [B,D,h,w] as ``forward``, image-head embeddings [B,D,h',w'] at the decoder's
        resolution or None)``, both normalised."""
        try:
            return self._heads((images - self.mean) / self.std)
        except ValueError as err:
            if "Expected more than 1 value per channel" not in str(err):
                raise
            raise ValueError(
                f"a batch of {images.shape[0]} image(s) of {tuple(images.shape[-2:])} px reaches a normalisation over a 1x1 "
                "map (DeepLabV3/V3+'s ASPP image pooling in training; FPN's GroupNorm on inputs under 64 px), which needs "
                "at least 2 values per channel: use a batch size of 2 or more per device (drop_last keeps every training "
                "batch full) or larger images"
            ) from err

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.distill_head is None:
            return F.normalize(self.net(x), dim=1), None
        net = self.net  # smp's own forward, split after the decoder so that both heads read its output
        net.check_input_shape(x)
        decoded = net.decoder(net.encoder(x))
        return F.normalize(net.segmentation_head(decoded), dim=1), F.normalize(self.distill_head(decoded), dim=1)

    def classify(self, embeddings: Tensor, text: Tensor, logit_scale: float, background_index: int | None = None,
                 size: tuple[int, int] | None = None) -> Tensor:
        """Logits ``[B,K,h,w]`` = scale * cos(pixel, class embedding), then the regularisation blocks; with ``size``,
        bilinearly resized to it (the input resolution, for embeddings at the decoder's)."""
        if text.shape[-1] != embeddings.shape[1]:
            raise ValueError(f"text embeddings are {text.shape[-1]}-d but the student emits {embeddings.shape[1]}-d")
        classes = F.normalize(text.to(embeddings.dtype), dim=-1)
        if self.background is not None and background_index is not None:
            bg = F.normalize(self.background, dim=0)[None]
            classes = torch.cat([classes[:background_index], bg, classes[background_index + 1 :]])
        logits = logit_scale * torch.einsum("bdhw,kd->bkhw", embeddings, classes)
        for block in self.reg:
            logits = block(logits)
        if size is not None and tuple(size) != tuple(logits.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits
