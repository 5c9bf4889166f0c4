"""Shape classes of the synthetic world as rotated polygons (or ellipses) drawn with PIL."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross", "heart", "ring")


def _regular(n: int, r: float, rot: float, phase: float = 0.0) -> np.ndarray:
    a = rot + phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star(r: float, rot: float) -> np.ndarray:
    outer = _regular(5, r, rot, -math.pi / 2)
    inner = _regular(5, r * 0.42, rot, -math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _cross(r: float, rot: float) -> np.ndarray:
    w = r * 0.36
    pts = np.array(
        [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
    )
    return _rotate(pts, rot)


def _heart(r: float, rot: float) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1) * (r / 17.0)
    return _rotate(pts, rot)


def _rotate(pts: np.ndarray, rot: float) -> np.ndarray:
    c, s = math.cos(rot), math.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def shape_mask(shape: str, size: tuple[int, int], cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """Boolean ``[H, W]`` mask of one shape centred at (cx, cy) with outer radius ``r`` pixels."""
    h, w = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if shape in ("circle", "ring"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        if shape == "ring":
            ri = r * 0.55
            draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)
    else:
        if shape == "square":
            pts = _regular(4, r * 0.92, rot, math.pi / 4)
        elif shape == "triangle":
            pts = _regular(3, r, rot, -math.pi / 2)
        elif shape == "hexagon":
            pts = _regular(6, r, rot)
        elif shape == "star":
            pts = _star(r, rot)
        elif shape == "cross":
            pts = _cross(r, rot)
        elif shape == "heart":
            pts = _heart(r, rot)
        else:
            raise ValueError(f"unknown shape {shape!r}; known shapes: {SHAPES}")
        draw.polygon([(float(x + cx), float(y + cy)) for x, y in pts], fill=255)
    return np.asarray(canvas) > 127
