"""Cropped views of world scenes for the teacher's caption data: objects framed at every scale, and bare background.

Web-scale image-caption data holds objects at every framing: filling the picture, with a margin, cut by the
border, beside others, and pictures of no object at all. A teacher that only saw whole scenes recognises
objects with a margin of context and fails on tight crops (the shipped teacher of world version 1 named
tight squares 0 % of the time: a square filling the crop is a flat patch of colour it had never seen).

A view is a window of a world-like scene (the world's own object sizes), resampled to the teacher's input
with the same RoIAlign resize the region teacher uses at run time. Its caption names the objects that
keep at least ``min_inside`` of their visible pixels inside the window or fill a large part of it; a window
with no visible piece of an object is captioned as background. The caption is the only supervision: no box, mask or class label reaches the loss.
"""
from __future__ import annotations

import numpy as np
import torch

from teachers.image_ops import crop_and_resize

from .scene import Scene, caption

BACKGROUND_FRAMES = ("an empty {} background.", "a photo of a {} background.", "a {} background.", "a photo of a background.")


def view_window(scene: Scene, rng: np.random.Generator, scale_range: tuple[float, float], p_background: float):
    """A window ``(x1, y1, x2, y2)`` in pixels: about one object's box scaled by a random factor, or anywhere."""
    size = scene.pixels.shape[0]
    if scene.instances and rng.random() >= p_background:
        inst = scene.instances[int(rng.integers(len(scene.instances)))]
        ys, xs = np.nonzero(inst.mask)
        x1, x2, y1, y2 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
        scale = rng.uniform(*scale_range)
        half_w, half_h = (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
        jitter = rng.uniform(-0.15, 0.15, size=2) * np.array([half_w, half_h])
        cx, cy = (x1 + x2) / 2 + jitter[0], (y1 + y2) / 2 + jitter[1]
    else:
        half_w = half_h = rng.uniform(0.08, 0.25) * size
        cx, cy = rng.uniform(half_w, size - half_w), rng.uniform(half_h, size - half_h)
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    box = np.clip(box, 0, size)  # clipped to the image, as the region teacher's context crops are
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        box = np.array([0.0, 0.0, size, size])
    return box


def crop_view(
    scene: Scene,
    rng: np.random.Generator,
    out_size: int,
    scale_range: tuple[float, float] = (0.9, 2.0),
    p_background: float = 0.2,
    min_inside: float = 0.5,
    p_colour: float = 0.2,
    p_background_word: float = 0.3,
) -> tuple[torch.Tensor, str]:
    """One view ``[3, out_size, out_size]`` in [0, 1] of ``scene`` and its caption."""
    box = view_window(scene, rng, scale_range, p_background)
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    inside = [int(inst.mask[y1:y2, x1:x2].sum()) for inst in scene.instances]
    area = max(1, (y2 - y1) * (x2 - x1))
    # named: mostly inside the window, or a large part of what the window shows
    named = [inst for inst, n in zip(scene.instances, inside, strict=True) if n >= min_inside * max(1, inst.mask.sum()) or n >= 0.15 * area]
    if not named and inside and max(inside) >= 0.03 * area:  # a visible piece is not "background"
        named = [scene.instances[int(np.argmax(inside))]]
    image = torch.from_numpy(scene.pixels).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    roi = torch.tensor([[0.0, *box]], dtype=torch.float32)
    view = crop_and_resize(image, roi, (out_size, out_size))[0].clamp(0, 1)
    if named:
        text = caption(Scene(scene.pixels, named, scene.background), rng, p_colour, 0.0, p_background_word)
    else:
        text = BACKGROUND_FRAMES[int(rng.integers(len(BACKGROUND_FRAMES)))].format(scene.background)
    return view, text
