"""``OpenCLIPTeacher``: a frozen open_clip model behind the teacher interface.

Text, image, region and dense embeddings, all L2-normalised, from any open_clip architecture:
a built-in name, or a new name declared inline by ``model_cfg`` (an open_clip JSON model config).
Weights come from an open_clip pretrained tag, a local checkpoint file (loaded with
``weights_only``), or nowhere (random init, for tests).
"""
from __future__ import annotations

import copy
import os
from typing import Literal

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dense import dense_features, dense_modes, fixed_dense_stride
from .factory import (
    PRECISIONS,
    _create,
    _file_fingerprint,
    check_open_clip_layout,
    load_tokenizer,
    register_model_cfg,
    weights_fingerprint,
)
from .image_ops import check_boxes, check_images, context_boxes, crop_and_resize, to_rois, whole_image_boxes
from .pamr import PAMR_DILATIONS, pamr
from .refine import refine_logits
from .region_pool import pool_regions
from .side_by_side import map_side_by_side
from .templates import resolve_templates


class OpenCLIPTeacher(nn.Module):
    """A frozen open_clip vision-language model exposing text/image/region/dense embeddings.

    Args:
        model_name: an open_clip architecture (``ViT-B-16``, ``RN50``, ``ViT-B-16-SigLIP``, ...) or a new
            name declared by ``model_cfg``.
        pretrained: an open_clip pretrained tag, a local checkpoint path, or ``None`` (random init).
        model_cfg: an open_clip model config dict declaring ``model_name`` inline.
        precision: ``fp32``, ``fp16`` or ``bf16`` weights (outputs are always float32).
        device: where to build the model; it moves with ``.to()`` afterwards.
        region_chunk: how many crops go through the image tower at once in ``encode_regions``.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        *,
        model_cfg: dict | None = None,
        precision: Literal["fp32", "fp16", "bf16"] = "fp32",
        device="cpu",
        region_chunk: int = 256,
    ):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
        if model_cfg is not None:
            register_model_cfg(model_name, copy.deepcopy(model_cfg))
        model = _create(model_name, pretrained, precision, device)
        if pretrained is None:
            tag = f"random-{weights_fingerprint(model)}"
        elif os.path.isfile(os.path.expanduser(pretrained)):
            tag = f"file-{_file_fingerprint(os.path.expanduser(pretrained))}"
        else:
            tag = pretrained
        self._setup(model, model_name, pretrained, precision, region_chunk, tag)

    @classmethod
    def from_model(cls, model: nn.Module, model_name: str, *, region_chunk: int = 256) -> OpenCLIPTeacher:
        """Wrap a frozen deep copy of an in-memory open_clip model (e.g. to evaluate one being trained)."""
        teacher = cls.__new__(cls)
        nn.Module.__init__(teacher)
        model = copy.deepcopy(model)
        teacher._setup(model, model_name, None, "fp32", region_chunk, f"memory-{weights_fingerprint(model)}")
        return teacher

    def _setup(self, model: nn.Module, model_name: str, pretrained, precision: str, region_chunk: int, tag: str):
        check_open_clip_layout(model, model_name)
        model.requires_grad_(False)
        model.eval()
        self.model = model
        self.model_name = model_name
        self.pretrained = pretrained
        self.precision = precision
        self.region_chunk = region_chunk
        self.tokenizer = load_tokenizer(model_name)
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg["size"]
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        device = next(model.parameters()).device
        mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.register_buffer("_mean", mean, persistent=False)
        self.register_buffer("_std", std, persistent=False)
        self.embed_dim: int = int(self._probe_dim())
        self.name: str = f"{model_name}@{tag}"
        self._text_cache: dict[tuple, Tensor] = {}

    # ------------------------------------------------------------------ state
    def train(self, mode: bool = True) -> OpenCLIPTeacher:
        """Keep the wrapped model in eval mode whatever a parent module asks (it is never trained)."""
        self.training = mode
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self._mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the image tower (its first convolution or linear layer)."""
        for module in self.model.visual.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                return module.weight.dtype
        return next(self.model.visual.parameters()).dtype

    def dense_modes(self) -> tuple[str, ...]:
        """Modes ``encode_dense`` accepts for this teacher's vision tower (empty if none)."""
        return dense_modes(self.model.visual)

    def fixed_dense_stride(self) -> int | None:
        """The patch stride of a ViT tower, whose dense map has no other; ``None`` where ``output_stride`` can be chosen."""
        return fixed_dense_stride(self.model.visual)

    def _probe_dim(self) -> int:
        with torch.no_grad():
            tokens = self.tokenizer(["a"]).to(self._mean.device)
            text_dim = self.model.encode_text(tokens).shape[-1]
            probe = torch.zeros(1, 3, *self.image_size, device=self._mean.device, dtype=self.dtype)
            image_dim = self.model.encode_image(probe).shape[-1]
        if text_dim != image_dim:
            raise ValueError(
                f"{self.model_name!r}: image tower emits {image_dim}-d and text tower {text_dim}-d embeddings; "
                "a teacher needs one shared embedding space (check embed_dim / timm_proj in the model config)"
            )
        return text_dim

    # ------------------------------------------------------------------ helpers
    def normalize(self, images: Tensor) -> Tensor:
        """Apply the teacher's mean/std to images already at the teacher's input size."""
        return ((images.float() - self._mean) / self._std).to(self.dtype)

    def preprocess(self, images: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Resize ``[B,3,H,W]`` images in [0,1] to ``size`` (default: the teacher's) and normalise them."""
        check_images(images)
        size = tuple(size or self.image_size)
        images = images.to(self.device, torch.float32)
        resized = crop_and_resize(images, to_rois(whole_image_boxes(images)), size)
        return self.normalize(resized)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, class_names: list[str], templates: str | list[str] | None = None) -> Tensor:
        """``[K, D]``: each template filled with each name, embedded, normalised, averaged, re-normalised."""
        if isinstance(class_names, str) or not class_names:
            raise ValueError(f"class_names must be a non-empty list of strings, got {class_names!r}")
        for name in class_names:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"class name {name!r} in class_names must be a non-empty string")
        patterns = resolve_templates(templates)
        key = (tuple(class_names), patterns)
        cached = self._text_cache.get(key)
        if cached is None:
            prompts = [t.format(name) for name in class_names for t in patterns]
            tokens = self.tokenizer(prompts).to(self.device)
            emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            emb = emb.view(len(class_names), len(patterns), -1).mean(dim=1)
            cached = F.normalize(emb, dim=-1).cpu()
            self._text_cache[key] = cached
        return cached.to(self.device)

    # ------------------------------------------------------------------ image / regions
    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        """``[B, D]`` normalised embeddings of whole images (resized to the teacher's input size)."""
        return self._embed(self.preprocess(images))

    def _embed(self, normalised: Tensor) -> Tensor:
        # channels-last input: oneDNN's convolutions run ~1.5x faster on CPU (measured, ResNet tower, 64 px crops), same values
        return F.normalize(self.model.encode_image(normalised.contiguous(memory_format=torch.channels_last)).float(), dim=-1)

    @torch.no_grad()
    def encode_regions(self, images: Tensor, boxes: list[Tensor], scales=(1.0, 1.5)) -> Tensor:
        """``[sum N_i, D]`` ViLD region embeddings: crops at each scale, embedded, averaged, re-normalised.

        A box enlarged by a scale is clipped to the image (no black padding), as the public ViLD-image
        implementation (DetPro) crops; each crop is resized to the teacher's input size.

        All boxes of the batch at all scales are cropped in one RoIAlign call and embedded in chunks of
        ``region_chunk`` crops; rows follow the order of ``boxes`` (image 0's boxes first).
        """
        check_images(images)
        check_boxes(boxes, images)
        if not scales:
            raise ValueError("scales must name at least one crop scale, e.g. (1.0, 1.5)")
        images = images.to(self.device, torch.float32)
        boxes = [b.to(self.device, torch.float32) for b in boxes]
        n = sum(len(b) for b in boxes)
        if n == 0:
            return torch.zeros(0, self.embed_dim, device=self.device)
        rois = to_rois(boxes)
        height, width = images.shape[-2:]
        rois = torch.cat([torch.cat([rois[:, :1], context_boxes(rois[:, 1:], s, height, width)], dim=1) for s in scales])

        def chunk(start: int) -> Tensor:
            crops = crop_and_resize(images, rois[start : start + self.region_chunk], self.image_size)
            return self._embed(self.normalize(crops))

        # chunks are independent: on CPU they run side by side (teachers.side_by_side), same values as one by one
        feats = map_side_by_side(chunk, range(0, len(rois), self.region_chunk), self.device)
        emb = torch.cat(feats).view(len(scales), n, -1).mean(dim=0)
        return F.normalize(emb, dim=-1)

    @torch.no_grad()
    def encode_regions_dense(self, images: Tensor, boxes: list[Tensor], scales=(1.0, 1.5), mode: str = "maskclip",
                             size: tuple[int, int] | None = None, output_stride: int | None = None) -> Tensor:
        """``[sum N_i, D]`` region embeddings pooled (RoIAlign) from one dense forward per image at ``size``
        (default: the images' own size), same box and scale conventions as ``encode_regions``."""
        check_images(images)
        check_boxes(boxes, images)
        images = images.to(self.device, torch.float32)
        feats = self.encode_dense(images, mode, size or tuple(images.shape[-2:]), output_stride)
        return pool_regions(feats, tuple(images.shape[-2:]), boxes, scales)

    # ------------------------------------------------------------------ dense
    @torch.no_grad()
    def encode_dense_with_keys(self, images: Tensor, mode: str = "maskclip", size: tuple[int, int] | None = None,
                               output_stride: int | None = None) -> tuple[Tensor, Tensor]:
        """``(features [B,D,h,w] normalised over D, last-block keys [B,C,h,w])`` at input ``size``."""
        x = self.preprocess(images, size)
        feats, keys = dense_features(self.model.visual, x, mode, self.model_name, output_stride)
        return F.normalize(feats.float(), dim=1), keys.float()

    def encode_dense(self, images: Tensor, mode: str = "maskclip", size: tuple[int, int] | None = None,
                     output_stride: int | None = None) -> Tensor:
        """``[B, D, h, w]`` per-patch embeddings, L2-normalised over D (MaskCLIP value path by default).

        ``size``: input size in pixels (default: the teacher's image size; a ViT's position embedding is
        interpolated). ``output_stride``: 32 (default), 16 or 8 for ModifiedResNet towers.
        """
        return self.encode_dense_with_keys(images, mode, size, output_stride)[0]

    @torch.no_grad()
    def dense_logits(
        self,
        images: Tensor,
        text: Tensor,
        *,
        mode: str = "maskclip",
        size: tuple[int, int] | None = None,
        output_stride: int | None = None,
        denoise: float | None = None,
        smooth: bool = False,
        output_size: tuple[int, int] | None = None,
        smooth_affinity: Literal["official", "cosine"] = "official",
        pamr_steps: int = 0,
        pamr_dilations: tuple[int, ...] = PAMR_DILATIONS,
    ) -> Tensor:
        """Zero-shot segmentation scores ``[B, K, H, W]``: cosine(dense feature, text), then (MaskCLIP's order)
        prompt denoising (threshold ``denoise``) and key smoothing, upsampled to ``output_size``. With
        smoothing the scores are ``log(smoothed probabilities) / 100`` (logit scale; same arg-max).

        ``pamr_steps > 0`` then refines the upsampled probabilities ``softmax(100 * scores)`` with PAMR
        (:mod:`teachers.pamr`) guided by the image at the output size; the scores are ``log(refined) / 100``."""
        feats, keys = self.encode_dense_with_keys(images, mode, size, output_stride)
        if text.shape[-1] != feats.shape[1]:
            raise ValueError(f"text embeddings have dim {text.shape[-1]} but the teacher's dense dim is {feats.shape[1]}")
        logits = torch.einsum("bdhw,kd->bkhw", feats, text.to(feats))
        logits = refine_logits(logits, keys, denoise, smooth, smooth_affinity)
        out = output_size or tuple(images.shape[-2:])
        logits = F.interpolate(logits, size=out, mode="bilinear", align_corners=False)
        if not pamr_steps:
            return logits
        guide = images if tuple(images.shape[-2:]) == tuple(out) else F.interpolate(images, size=out, mode="bilinear", align_corners=False)
        refined = pamr(guide.to(logits.device, torch.float32), (100.0 * logits.float()).softmax(dim=1), pamr_steps, pamr_dilations)
        return refined.clamp_min(1e-12).log() / 100.0

    def extra_repr(self) -> str:
        return f"name={self.name!r}, embed_dim={self.embed_dim}, image_size={self.image_size}, precision={self.precision}"
