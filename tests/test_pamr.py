"""PAMR (``teachers.pamr``): the refinement against a per-pixel loop written from the paper's definition, its effect
on a blurred two-region map, and its place at the end of ``dense_logits`` and the MaskCLIP module."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.seg_modules import MaskCLIP
from teachers import PAMR_DILATIONS, pamr


def _reference(image: np.ndarray, probs: np.ndarray, steps: int, dilations) -> np.ndarray:
    """One pixel at a time: 8 neighbours per dilation (coordinates clamped: replicate padding), the 9-tap standard
    deviation (ddof 1) per channel, scores -|I_i - I_j| / (1e-8 + 0.1 sigma) averaged over channels, softmax over
    all neighbours, then ``steps`` weighted sums of the neighbours' probabilities (the pixel itself excluded)."""
    c, h, w = image.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    weights, where = np.zeros((h, w, 8 * len(dilations))), np.zeros((h, w, 8 * len(dilations), 2), dtype=int)
    for y in range(h):
        for x in range(w):
            scores, n = [], 0
            for d in dilations:
                taps = [(min(max(y + dy * d, 0), h - 1), min(max(x + dx * d, 0), w - 1)) for dy, dx in offsets]
                sigma = np.std(np.stack([image[:, ty, tx] for ty, tx in [*taps, (y, x)]]), axis=0, ddof=1)
                for ty, tx in taps:
                    scores.append(np.mean(-np.abs(image[:, ty, tx] - image[:, y, x]) / (1e-8 + 0.1 * sigma)))
                    where[y, x, n] = (ty, tx)
                    n += 1
            s = np.array(scores)
            weights[y, x] = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    out = probs.copy()
    for _ in range(steps):
        nxt = np.zeros_like(out)
        for y in range(h):
            for x in range(w):
                nxt[:, y, x] = sum(weights[y, x, n] * out[:, ty, tx] for n, (ty, tx) in enumerate(where[y, x]))
        out = nxt
    return out


def test_pamr_matches_the_per_pixel_definition():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 7, 9, generator=g)
    probs = torch.rand(2, 4, 7, 9, generator=g).softmax(1)
    got = pamr(image, probs, steps=3, dilations=(1, 2, 3))
    for b in range(2):
        want = _reference(image[b].double().numpy(), probs[b].double().numpy(), 3, (1, 2, 3))
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-5)  # a convex combination stays a distribution
    assert torch.equal(pamr(image, probs, steps=0), probs.float())


def test_pamr_pulls_a_blurred_map_onto_the_image_edges():
    """Two flat regions (a square on a background, slight noise) and a map that bleeds the square's class 4 px out:
    PAMR gives the bleed back to the background and keeps the square."""
    g = torch.Generator().manual_seed(1)
    image = torch.full((1, 3, 32, 32), 0.2)
    image[..., 10:22, 10:22] = torch.tensor([0.9, 0.3, 0.1])[:, None, None]
    image = (image + 0.01 * torch.randn(image.shape, generator=g)).clamp(0, 1)
    truth = torch.zeros(32, 32, dtype=torch.long)
    truth[10:22, 10:22] = 1
    blurred = torch.zeros(32, 32, dtype=torch.long)
    blurred[6:26, 6:26] = 1
    probs = torch.nn.functional.one_hot(blurred, 2).permute(2, 0, 1)[None].float() * 0.6 + 0.2
    before = (probs.argmax(1)[0] == truth).float().mean()
    after = (pamr(image, probs, steps=20).argmax(1)[0] == truth).float().mean()
    assert before < 0.8 and after > 0.97, (float(before), float(after))


@pytest.mark.parametrize("bad", [{"steps": -1}, {"dilations": (0, 1)}, {"dilations": ()}])
def test_pamr_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="steps|dilations"):
        pamr(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 8, 8), **bad)


def test_pamr_refuses_an_image_of_another_size():
    with pytest.raises(ValueError, match="PAMR needs the image"):
        pamr(torch.rand(1, 3, 8, 8), torch.rand(1, 2, 9, 8))


def test_dense_logits_and_maskclip_apply_pamr_last(timm_cnn_teacher):
    teacher = timm_cnn_teacher
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    text = teacher.encode_text(["background", "circle", "square"], "simple")
    base = teacher.dense_logits(images, text, output_stride=8)
    got = teacher.dense_logits(images, text, output_stride=8, pamr_steps=4, pamr_dilations=(1, 2))
    want = pamr(images, (100 * base).softmax(1), 4, (1, 2)).clamp_min(1e-12).log() / 100
    torch.testing.assert_close(got, want)
    assert (got - base).abs().max() > 1e-3  # the refinement changed the scores (so the comparison above means something)
    # at another output size the guide is the image resized to it
    small = teacher.dense_logits(images, text, output_stride=8, pamr_steps=2, output_size=(24, 20))
    guide = torch.nn.functional.interpolate(images, size=(24, 20), mode="bilinear", align_corners=False)
    base_small = teacher.dense_logits(images, text, output_stride=8, output_size=(24, 20))
    torch.testing.assert_close(small, pamr(guide, (100 * base_small).softmax(1), 2, PAMR_DILATIONS).clamp_min(1e-12).log() / 100)

    module = MaskCLIP(teacher, class_names=["background", "circle", "square"], unseen=["square"], teacher_stride=8,
                      pamr_steps=4, pamr_dilations=[1, 2])
    module.setup("test")
    want = teacher.dense_logits(images, module.text, output_stride=8, pamr_steps=4, pamr_dilations=(1, 2))
    torch.testing.assert_close(module.predict_logits(images), want)
