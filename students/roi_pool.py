"""RoIAlign whose CPU gradient is a few matmuls per image instead of torchvision's one-thread loop.

torchvision's CPU ``roi_align`` backward recomputes every sample's bilinear weights once per channel and adds
them one by one on a single thread: on the world's detector (1,024 sampled boxes x 64 channels a step) it
was 40 % of a training step, with the second core idle. Bilinear sampling on a box's axis-aligned grid is
separable: the ``[PH, PW]`` output of one channel is ``Ay @ F @ Ax.T / count``, where ``Ay`` ``[PH, H]`` and
``Ax`` ``[PW, W]`` hold each output row's (column's) weights on the feature rows (columns), summed over the
bin's samples, with torchvision's sample positions, edge clamping and out-of-range rule. So the gradient is
``Ay.T @ G @ Ax / count``, summed over an image's boxes. The forward is torchvision's op, unchanged: values at
inference are the same; only the gradient's summation order differs (float rounding, checked in
tests/test_roi_pool.py against torchvision's backward and by ``gradcheck``).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

# Elements of one chunk's ``G @ Ax`` intermediate: bounds memory on the dense path.
_CHUNK_ELEMENTS = 1 << 22
# Maps up to this many cells take the dense path (per-box weight rows over the whole map, two matmuls: the
# world's 24 x 24); larger ones (a real detector's 200 x 272) a sparse matrix of the bilinear taps.
_DENSE_MAX_CELLS = 64 * 64


def _axis_taps(start: Tensor, bin_size: Tensor, pooled: int, grid: int, size: int) -> tuple[Tensor, Tensor]:
    """Feature rows (``[R, pooled, grid, 2]``, low and high tap) and their weights for each output row's samples."""
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(grid, dtype=start.dtype, device=start.device)[None, None, :]
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    pos = start + p * bin_size + (i + 0.5) * bin_size / grid  # [R, pooled, grid], torchvision's sample positions
    valid = ((pos >= -1.0) & (pos <= size)).to(start.dtype)  # samples beyond one pixel outside count as zero
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    edge = low >= size - 1  # at the last row both taps are that row
    low = torch.where(edge, torch.full_like(low, size - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.to(pos.dtype))
    return torch.stack([low, high], -1), torch.stack([(1 - frac) * valid, frac * valid], -1)


def _dense_weights(taps: tuple[Tensor, Tensor], size: int) -> Tensor:
    """``[R, pooled, size]``: each output row's weight on each feature row, summed over its samples."""
    index, weight = (t.flatten(2) for t in taps)
    out = torch.zeros(*index.shape[:2], size, dtype=weight.dtype, device=weight.device)
    return out.scatter_add_(2, index, weight)


def _dense_grad(out: Tensor, grad: Tensor, batch: Tensor, y_taps, x_taps) -> Tensor:
    _, channels, height, width = out.shape
    pooled_h = grad.shape[-2]
    ay, ax = _dense_weights(y_taps, height), _dense_weights(x_taps, width)  # [R, PH, H], [R, PW, W]
    chunk = max(1, _CHUNK_ELEMENTS // (channels * pooled_h * width))
    for b in batch.unique().tolist():
        for part in torch.nonzero(batch == b).flatten().split(chunk):
            rows = torch.einsum("rcpq,rqw->rcpw", grad[part], ax[part])  # [r, C, PH, W]
            out[b] += torch.einsum("rph,rcpw->chw", ay[part], rows)
    return out


def _sparse_grad(out: Tensor, grad: Tensor, batch: Tensor, y_taps, x_taps) -> Tensor:
    images, channels, height, width = out.shape
    boxes, _, pooled_h, pooled_w = grad.shape
    (yi, yw), (xi, xw) = y_taps, x_taps
    yi, yw = (t.reshape(boxes, pooled_h, 1, -1, 1) for t in (yi, yw))
    xi, xw = (t.reshape(boxes, 1, pooled_w, 1, -1) for t in (xi, xw))
    cells = (batch.view(-1, 1, 1, 1, 1) * height + yi) * width + xi  # [R, PH, PW, 2S, 2S]: every sample's taps
    outputs = torch.arange(boxes * pooled_h * pooled_w, device=grad.device).view(boxes, pooled_h, pooled_w, 1, 1)
    taps = torch.sparse_coo_tensor(
        torch.stack([cells.flatten(), outputs.expand_as(cells).flatten()]), (yw * xw).flatten(),
        (images * height * width, boxes * pooled_h * pooled_w), check_invariants=False,
    )
    flat = torch.sparse.mm(taps, grad.permute(0, 2, 3, 1).reshape(-1, channels))  # [B*H*W, C]
    return out.copy_(flat.view(images, height, width, channels).permute(0, 3, 1, 2))


def roi_align_grad(grad: Tensor, rois: Tensor, input_shape: torch.Size, spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
    """The gradient of ``roi_align`` w.r.t. its input (``[B, C, H, W]``) for output gradient ``grad`` ``[R, C, PH, PW]``."""
    _, _, height, width = input_shape
    out = torch.zeros(input_shape, dtype=grad.dtype, device=grad.device)
    if rois.numel() == 0:
        return out
    pooled_h, pooled_w = grad.shape[-2:]
    rois = rois.to(grad.dtype)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, k] * spatial_scale - offset for k in range(1, 5))
    w, h = x2 - x1, y2 - y1
    if not aligned:  # torchvision's legacy mode: boxes at least one cell wide
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    y_taps = _axis_taps(y1, h / pooled_h, pooled_h, sampling_ratio, height)
    x_index, x_weight = _axis_taps(x1, w / pooled_w, pooled_w, sampling_ratio, width)
    x_taps = (x_index, x_weight / (sampling_ratio * sampling_ratio))  # the bin's mean over its samples
    batch = rois[:, 0].long()
    if height * width <= _DENSE_MAX_CELLS:
        return _dense_grad(out, grad, batch, y_taps, x_taps)
    return _sparse_grad(out, grad, batch, y_taps, x_taps)


class _RoIAlignSeparableGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool):
        ctx.save_for_backward(rois)
        ctx.shape, ctx.dtype = features.shape, features.dtype
        ctx.args = (spatial_scale, sampling_ratio, aligned)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        grad_features = roi_align_grad(grad.contiguous(), rois, ctx.shape, *ctx.args).to(ctx.dtype)
        return grad_features, None, None, None, None, None


def roi_align_separable_grad(
    features: Tensor, rois: Tensor, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = False
) -> Tensor:
    """``torchvision.ops.roi_align`` (rois ``[K, 5]``) with the separable gradient on CPU; elsewhere, or with adaptive
    sampling (``sampling_ratio <= 0``, a grid size per box), torchvision's own op."""
    if features.device.type != "cpu" or sampling_ratio <= 0 or not (torch.is_grad_enabled() and features.requires_grad):
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _RoIAlignSeparableGrad.apply(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


class SeparableGradMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same levels, scales and outputs) pooling each level with
    ``roi_align_separable_grad``; no parameters or buffers, so checkpoints are unchanged."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(features, image_shapes, self.canonical_scale, self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        pool = {"output_size": self.output_size, "sampling_ratio": self.sampling_ratio}
        if len(features) == 1:
            return roi_align_separable_grad(features[0], rois, spatial_scale=self.scales[0], **pool)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (level_features, scale) in enumerate(zip(features, self.scales, strict=True)):
            idx = torch.where(levels == level)[0]
            result[idx] = roi_align_separable_grad(level_features, rois[idx], spatial_scale=scale, **pool).to(result.dtype)
        return result
