"""The detector's RoI pooling: torchvision's forward, a separable CPU gradient equal to torchvision's backward."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from students import RegionEmbeddingDetector, roi_pool
from students.roi_pool import SeparableGradMultiScaleRoIAlign, roi_align_separable_grad


def _rois(n: int, images: int, extent: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Boxes of every kind: tiny (under one cell), partly or wholly outside the map, touching its far edge."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * (extent + 16) - 8
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * extent * 0.6 + 0.1
    rois = torch.cat([torch.randint(0, images, (n, 1), generator=g).to(dtype), xy, xy + wh], 1)
    rois[0, 1:] = torch.tensor([extent - 3, extent - 3, extent + 2, extent + 2], dtype=dtype)  # over the far edge
    rois[1, 1:] = torch.tensor([extent + 20, 1, extent + 30, 5], dtype=dtype)  # outside: no sample counts
    return rois


def _grads(fn, x, rois, grad, *args):
    out = fn(x, rois, *args)
    return out, torch.autograd.grad(out, x, grad)[0]


@pytest.mark.parametrize("path", ["dense", "sparse"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio,output_size", [(1, (7, 7)), (2, (7, 7)), (3, (5, 3))])
def test_gradient_equals_torchvisions_backward(aligned, sampling_ratio, output_size, path, monkeypatch):
    monkeypatch.setattr(roi_pool, "_DENSE_MAX_CELLS", 10**9 if path == "dense" else 0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 11, 13, generator=g, dtype=torch.float64, requires_grad=True)
    rois = _rois(40, 2, 13 / 0.25, seed=2)  # image 2 gets no box: its gradient must stay zero
    grad = torch.randn(40, 4, *output_size, generator=g, dtype=torch.float64)
    args = (output_size, 0.25, sampling_ratio, aligned)
    ref_out, ref = _grads(roi_align, x, rois, grad, *args)
    out, mine = _grads(roi_align_separable_grad, x, rois, grad, *args)
    assert torch.equal(out, ref_out)  # the forward is torchvision's own
    assert ref.abs().max() > 1  # the boxes sample the map: a zero gradient would not pass below
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
    assert torch.count_nonzero(mine[2]) == 0


@pytest.mark.parametrize("dense_max_cells", [10**9, 0])
def test_gradient_passes_gradcheck_against_the_forward(dense_max_cells, monkeypatch):
    monkeypatch.setattr(roi_pool, "_DENSE_MAX_CELLS", dense_max_cells)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    rois = _rois(6, 2, 5 / 0.5, seed=3)
    assert torch.autograd.gradcheck(lambda f: roi_align_separable_grad(f, rois, (3, 2), 0.5, 2, False), (x,))


def test_chunked_gradient_equals_one_chunk(monkeypatch):
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64, requires_grad=True)
    rois = _rois(50, 2, 36, seed=4)
    grad = torch.randn(50, 8, 7, 7, dtype=torch.float64)
    whole = _grads(roi_align_separable_grad, x, rois, grad, 7, 0.25, 2, False)[1]
    monkeypatch.setattr(roi_pool, "_CHUNK_ELEMENTS", 8 * 7 * 9 * 3)  # three boxes a chunk
    chunked = _grads(roi_align_separable_grad, x, rois, grad, 7, 0.25, 2, False)[1]
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)


def test_multiscale_pooler_matches_torchvisions():
    g = torch.Generator().manual_seed(5)
    # a 512 px image: boxes of 20-500 px reach every level; level 0 (128 x 128) takes the sparse path, the others the dense
    sizes = {"0": 128, "1": 64, "2": 32, "3": 16, "pool": 8}
    feats = {k: torch.randn(2, 3, s, s, generator=g, requires_grad=True) for k, s in sizes.items()}
    boxes = []
    for _ in range(2):
        wh = torch.rand(40, 2, generator=g) * 480 + 20
        xy = torch.rand(40, 2, generator=g) * (512 - wh)
        boxes.append(torch.cat([xy, xy + wh], 1))
    shapes = [(512, 512)] * 2
    ref = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, boxes, shapes)
    mine = SeparableGradMultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, boxes, shapes)
    assert torch.equal(mine, ref)
    grad = torch.randn(ref.shape, generator=g)
    levels = [feats[k] for k in "0123"]
    ref_grads = torch.autograd.grad(ref, levels, grad)
    my_grads = torch.autograd.grad(mine, levels, grad)
    assert all(r.abs().sum() > 0 for r in ref_grads)  # every level gets boxes
    for r, m in zip(ref_grads, my_grads, strict=True):
        assert (m - r).norm() <= 1e-6 * r.norm()


def test_detector_training_gradient_matches_torchvisions_pooler():
    """The whole detector's loss gradient, the student's pooler against torchvision's default one."""
    torch.manual_seed(0)
    det = RegionEmbeddingDetector(16, "timm:resnet10t", norm="bn", trainable_layers=5, fpn_channels=16, representation_size=32,
                                  anchor_sizes=[8, 16, 32, 64, 128], min_size=64, max_size=64, tau=0.05)
    assert isinstance(det.roi_heads.box_roi_pool, SeparableGradMultiScaleRoIAlign)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 28.0], [30.0, 20.0, 60.0, 62.0]]), "labels": torch.tensor([1, 2])}] * 2
    text = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=-1)

    def grads():
        torch.manual_seed(2)  # the box sampler draws the same proposals both times
        losses = det(images, targets, text=text)
        params = [p for p in det.parameters() if p.requires_grad]
        return torch.autograd.grad(sum(losses.values()), params, allow_unused=True)

    det.train()
    mine = grads()
    det.roi_heads.box_roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ref = grads()
    backbone = [(m, r) for m, r in zip(mine, ref, strict=True) if r is not None]
    assert sum(r.abs().sum() for _, r in backbone) > 0
    for m, r in backbone:  # float32 sums in another order: equal up to rounding
        assert (m - r).norm() <= 1e-5 * r.norm()
