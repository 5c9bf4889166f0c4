"""Training-free dense (per-patch) embeddings from a CLIP image tower: MaskCLIP and later variants.

Modes (``encode_dense(mode=...)``):

``maskclip``   Zhou et al. 2022. In the last ViT block the q-k attention is replaced by the value
               path: ``o = out_proj(v(ln_1(x)))``; the residual and MLP are kept as in the official
               code; then ``ln_post`` and ``proj``. For ModifiedResNet the attention pool's ``v_proj``
               and ``c_proj`` act as 1x1 convolutions on the layer4 map. A ResNet's map is 1/32 of the
               input; ``output_stride`` 16 or 8 computes it densely instead (DeepLab's atrous trick):
               the stride-2 average pools of layer4 (and layer3) become stride-1 2x2 averages and later
               3x3 convolutions are dilated, so every 2nd (4th) output equals the stride-32 map exactly.
``value_only`` The value path without the residual and the MLP (the residual removal of ClearCLIP,
               Lan et al. 2024, with plain value attention). ViT only.
``clearclip``  ClearCLIP: q-q self-attention in the last block, no residual, no MLP. ViT only.

timm CNN towers whose head is global average pooling + a linear projection (``timm_pool: avg``) have
an exact dense counterpart: the projection applied at every position of the last feature map (its
spatial mean is the image embedding; CAM's observation). A max-pooled tower (``timm_pool: max``) is read the same
way, as CLIPpy (Ranasinghe et al. 2023) reads its max-pooled towers: the projection at every position, whose
maximum is not the image embedding (the projection comes after the pool). ``maskclip`` names that path for them; an
``output_stride`` of 16 or 8 rebuilds the trunk dilated (timm's ``output_stride``) with the same
weights, its shortcut averages made to leave padding out (``_SameAvgPoolExcludingPad``). Attention-pool (MAP / SigLIP)
and ViT timm towers raise ``NotImplementedError``.

Each function returns ``(features [B, D, h, w], keys [B, C, h, w])``; the keys of the last block
feed key smoothing (see :mod:`teachers.refine`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import Tensor, nn

VIT_MODES = ("maskclip", "value_only", "clearclip")
RESNET_MODES = ("maskclip",)


def dense_modes(visual: nn.Module) -> tuple[str, ...]:
    """The dense modes a vision tower supports (empty when it has none)."""
    if isinstance(visual, VisionTransformer) and _vit_supported(visual):
        return VIT_MODES
    if isinstance(visual, ModifiedResNet) or (isinstance(visual, TimmModel) and _timm_pooled_cnn(visual)):
        return RESNET_MODES
    return ()


def fixed_dense_stride(visual: nn.Module) -> int | None:
    """A ViT's patch stride, the only stride its dense map has; ``None`` where ``output_stride`` can be chosen (CNNs)."""
    return visual.patch_size[0] if isinstance(visual, VisionTransformer) else None


#: the global pools of a timm CNN tower whose dense map is the projection at every position
TIMM_DENSE_POOLS = ("avg", "max")


def _timm_pooled_cnn(visual: TimmModel) -> bool:
    pool = getattr(visual.trunk, "global_pool", None)
    pool_type = getattr(pool, "pool_type", None)
    head_ok = all(isinstance(m, (nn.Linear, nn.Dropout)) for m in visual.head.children())
    return pool_type in TIMM_DENSE_POOLS and head_ok and hasattr(visual.trunk, "forward_features")


#: bump when the dense path's values change for the same weights (teacher caches record it in their key).
#: 2: a dilated timm trunk's shortcut average no longer counts zero padding at the right and bottom edges
DENSE_VERSION = 2

_ATROUS_TWINS: dict[tuple, nn.Module] = {}


class _SameAvgPoolExcludingPad(nn.Module):
    """timm's ``AvgPool2dSame`` as its caller asks for it: 'same' padding, padded taps left out of the average.

    ``timm.create_model(..., output_stride=8|16)`` makes the avg-down shortcut of ResNet-D towers (resnet10t,
    resnet50d, ...) a stride-1 2x2 ``AvgPool2dSame(count_include_pad=False)``, but that module pads with zeros before
    pooling, so the last row and column average in zeros: the shortcut is halved there and the dense map's right and
    bottom border cells fall on one wrong class (the shipped world teacher: 2 % correct on the last column against
    54 % on the first). Dividing by the pooled count of real taps gives the average over the taps inside the map.
    """

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.kernel_size, self.stride = tuple(pool.kernel_size), tuple(pool.stride)

    def forward(self, x: Tensor) -> Tensor:
        from timm.layers.padding import pad_same

        summed = F.avg_pool2d(pad_same(x, self.kernel_size, self.stride), self.kernel_size, self.stride)
        ones = x.new_ones((1, 1, *x.shape[-2:]))
        count = F.avg_pool2d(pad_same(ones, self.kernel_size, self.stride), self.kernel_size, self.stride)
        return summed / count


def _exclude_pad_in_same_pools(model: nn.Module) -> None:
    from timm.layers import AvgPool2dSame

    for name, module in list(model.named_modules()):
        if isinstance(module, AvgPool2dSame) and not module.count_include_pad:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, _SameAvgPoolExcludingPad(module))


def dilated_timm_trunk(trunk: nn.Module, output_stride: int, strict: bool = True) -> nn.Module:
    """A new module: the timm CNN ``trunk`` rebuilt by timm at ``output_stride`` (dilated), with its weights and its
    global pool, its shortcut averages made to leave padding out. Trainable as it comes (``pretrain-teacher
    --train-stride`` trains through one); a stride-32 rebuild is the trunk itself, as a copy."""
    import timm

    arch = trunk.pretrained_cfg.get("architecture") if hasattr(trunk, "pretrained_cfg") else None
    pool = getattr(getattr(trunk, "global_pool", None), "pool_type", "avg") or "avg"
    try:
        twin = timm.create_model(arch, pretrained=False, num_classes=0, output_stride=output_stride, global_pool=pool)
    except Exception as err:  # architectures without dilation support
        raise NotImplementedError(f"timm model {arch!r} cannot be rebuilt with output_stride={output_stride}: {err}") from err
    twin.load_state_dict(trunk.state_dict(), strict=strict)
    _exclude_pad_in_same_pools(twin)
    return twin


def _atrous_trunk(trunk: nn.Module, output_stride: int) -> nn.Module:
    """The same timm trunk rebuilt with ``output_stride`` (dilated) and the same weights, frozen (cached)."""
    p = next(trunk.parameters())
    key = (id(trunk), output_stride, p.device, p.dtype, p._version)
    twin = _ATROUS_TWINS.get(key)
    if twin is None:
        twin = dilated_timm_trunk(trunk, output_stride, strict=False)
        twin.to(device=p.device, dtype=p.dtype).eval().requires_grad_(False)
        _ATROUS_TWINS.clear()  # keep one twin: teachers are few and large
        _ATROUS_TWINS[key] = twin
    return twin


def timm_dense(visual: TimmModel, x: Tensor, mode: str = "maskclip", output_stride: int = 32) -> tuple[Tensor, Tensor]:
    """Dense features of a timm CNN tower with an average- or max-pool + linear head: the head at every position."""
    if mode not in RESNET_MODES:
        raise ValueError(f"dense mode {mode!r} is not one of {RESNET_MODES} for a timm CNN tower")
    trunk = visual.trunk if output_stride == 32 else _atrous_trunk(visual.trunk, output_stride)
    fmap = trunk.forward_features(x.to(next(trunk.parameters()).dtype))
    feat = fmap.permute(0, 2, 3, 1)
    for m in visual.head.children():
        if isinstance(m, nn.Linear):
            feat = m(feat)
    return feat.permute(0, 3, 1, 2), fmap


def _vit_supported(visual: VisionTransformer) -> bool:
    last = visual.transformer.resblocks[-1]
    return (
        visual.attn_pool is None
        and isinstance(last, ResidualAttentionBlock)
        and isinstance(last.attn, nn.MultiheadAttention)
        and not hasattr(last, "ln_1_kv")
    )


def interpolate_pos_embed(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Bicubically resize a ViT's ``[1 + gh*gw, C]`` positional embedding to another patch grid."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, patch_pos = pos[:1], pos[1:]
    patch_pos = patch_pos.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=new_grid, mode="bicubic", align_corners=False)
    patch_pos = patch_pos.to(pos.dtype).permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls_pos, patch_pos], dim=0)


def _split_qkv(block: ResidualAttentionBlock, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    attn = block.attn
    return F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)


def vit_dense(visual: VisionTransformer, x: Tensor, mode: str = "maskclip") -> tuple[Tensor, Tensor]:
    """Dense features of an open_clip ``VisionTransformer`` on a normalised input ``x``."""
    if mode not in VIT_MODES:
        raise ValueError(f"dense mode {mode!r} is not one of {VIT_MODES} for a ViT tower")
    b = x.shape[0]
    tokens = visual.conv1(x)
    grid = tokens.shape[-2:]
    tokens = tokens.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(tokens.dtype).view(1, 1, -1).expand(b, -1, -1)
    tokens = torch.cat([cls, tokens], dim=1)
    tokens = tokens + interpolate_pos_embed(visual.positional_embedding, visual.grid_size, grid).to(tokens.dtype)
    tokens = visual.ln_pre(tokens)
    for block in visual.transformer.resblocks[:-1]:
        tokens = block(tokens)

    last: ResidualAttentionBlock = visual.transformer.resblocks[-1]
    y = last.ln_1(tokens)
    q, k, v = _split_qkv(last, y)
    if mode == "clearclip":
        heads = last.attn.num_heads
        qh = q.unflatten(-1, (heads, -1)).transpose(1, 2)
        vh = v.unflatten(-1, (heads, -1)).transpose(1, 2)
        v = F.scaled_dot_product_attention(qh, qh, vh).transpose(1, 2).flatten(2)
    out = last.attn.out_proj(v)
    if mode == "maskclip":
        out = tokens + last.ls_1(out)
        out = out + last.ls_2(last.mlp(last.ln_2(out)))
    out = visual.ln_post(out)[:, 1:]
    if visual.proj is not None:
        out = out @ visual.proj
    feats = out.transpose(1, 2).reshape(b, -1, *grid)
    # MaskCLIP's keys for key smoothing: the last block's keys passed through out_proj (official backbone)
    keys = last.attn.out_proj(k)[:, 1:].transpose(1, 2).reshape(b, -1, *grid)
    return feats, keys


def _dense_avgpool(x: Tensor, d: int) -> Tensor:
    """A 2x2 average of taps ``d`` apart at stride 1: on a grid already dilated by ``d``, position
    2dj equals ``avg_pool2d(x, 2)`` at j of the undilated map."""
    h, w = x.shape[-2:]
    p = F.pad(x, (0, d, 0, d), mode="replicate")
    return (p[..., :h, :w] + p[..., d:, :w] + p[..., :h, d:] + p[..., d:, d:]) / 4


def _bottleneck(block: nn.Module, x: Tensor, dilation: int, atrous: bool) -> Tensor:
    """open_clip's Bottleneck with its 3x3 conv dilated and, if ``atrous``, its stride made dense."""
    conv2 = block.conv2
    out = block.act1(block.bn1(block.conv1(x)))
    out = F.conv2d(out, conv2.weight, conv2.bias, padding=dilation, dilation=dilation)
    out = block.act2(block.bn2(out))
    strided = block.stride > 1
    out = _dense_avgpool(out, dilation) if (strided and atrous) else block.avgpool(out)
    out = block.bn3(block.conv3(out))
    identity = x
    if block.downsample is not None:
        pool, conv, bn = block.downsample
        identity = bn(conv(_dense_avgpool(x, dilation) if (strided and atrous) else pool(x)))
    return block.act3(out + identity)


def resnet_dense(
    visual: ModifiedResNet, x: Tensor, mode: str = "maskclip", output_stride: int = 32
) -> tuple[Tensor, Tensor]:
    """Dense features of an open_clip ``ModifiedResNet``: attention-pool v/c projections as 1x1 convs."""
    if mode not in RESNET_MODES:
        raise ValueError(f"dense mode {mode!r} is not one of {RESNET_MODES} for a ModifiedResNet tower")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride={output_stride}; a ModifiedResNet supports 8, 16 or 32")
    x = x.to(visual.conv1.weight.dtype)
    x = visual.stem(x)
    x = visual.layer2(visual.layer1(x))
    dilation = 1
    for layer, atrous in ((visual.layer3, output_stride <= 8), (visual.layer4, output_stride <= 16)):
        for i, block in enumerate(layer):
            x = _bottleneck(block, x, dilation, atrous)
            if i == 0 and atrous and block.stride > 1:
                dilation *= 2
    pool = visual.attnpool
    feat = x.permute(0, 2, 3, 1)
    keys = pool.k_proj(feat).permute(0, 3, 1, 2)
    feats = pool.c_proj(pool.v_proj(feat)).permute(0, 3, 1, 2)
    return feats, keys


def dense_features(
    visual: nn.Module, x: Tensor, mode: str, model_name: str, output_stride: int | None = None
) -> tuple[Tensor, Tensor]:
    """Dispatch on the tower type; unsupported towers raise ``NotImplementedError`` naming the model."""
    if isinstance(visual, VisionTransformer):
        if not _vit_supported(visual):
            raise NotImplementedError(
                f"encode_dense is not implemented for {model_name!r}: its ViT uses an attention-pool head or a "
                "custom attention block, for which the MaskCLIP value path is not defined"
            )
        if output_stride not in (None, fixed_dense_stride(visual)):
            raise ValueError(f"a ViT's dense map has the patch stride {fixed_dense_stride(visual)}; got output_stride={output_stride}")
        return vit_dense(visual, x, mode)
    if isinstance(visual, ModifiedResNet):
        return resnet_dense(visual, x, mode, output_stride or 32)
    if isinstance(visual, TimmModel) and _timm_pooled_cnn(visual):
        if output_stride not in (None, 8, 16, 32):
            raise ValueError(f"output_stride={output_stride}; a timm CNN tower supports 8, 16 or 32")
        return timm_dense(visual, x, mode, output_stride or 32)
    raise NotImplementedError(
        f"encode_dense is not implemented for {model_name!r} (vision tower {type(visual).__name__}); "
        "MaskCLIP dense features are defined for open_clip VisionTransformer and ModifiedResNet towers and for "
        "timm CNN towers with an average- or max-pool head; not for attention-pool (MAP) heads. "
        "Text, image and region embeddings work for this model."
    )


