"""Sampling one synthetic scene: a textured background with 1-4 coloured shapes that may occlude each other."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shapes import SHAPES, shape_mask

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 50, 180),
    "orange": (240, 130, 20),
    "cyan": (40, 200, 210),
    "pink": (240, 120, 180),
}


@dataclass
class Instance:
    shape: str
    colour: str
    size_word: str
    mask: np.ndarray  # visible pixels after occlusion
    cx: float
    cy: float


@dataclass
class Scene:
    pixels: np.ndarray  # uint8 [H, W, 3]
    instances: list[Instance]
    background: str  # texture word, used in captions


@dataclass
class SceneConfig:
    image_size: int = 96
    min_objects: int = 1
    max_objects: int = 4
    min_radius: float = 9.0
    max_radius: float = 24.0
    min_visible: float = 0.6  # an object keeps at least this fraction of its area under occlusion


BACKGROUND_WORDS = ("striped", "checkered", "blotchy", "plain")


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """Low-saturation gradient + one texture (stripes, checks, blobs or none) + pixel noise."""
    base = rng.uniform(60, 190, size=3)
    tint = rng.uniform(-25, 25, size=3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    img = base[None, None, :] + ramp[..., None] * tint[None, None, :] * 2
    kind = rng.integers(0, 4)
    if kind == 0:
        period = rng.uniform(6, 16)
        theta = rng.uniform(0, np.pi)
        stripes = np.sin((np.cos(theta) * xx + np.sin(theta) * yy) * max(h, w) * 2 * np.pi / period)
        img += stripes[..., None] * rng.uniform(8, 22)
    elif kind == 1:
        cell = int(rng.integers(6, 14))
        checks = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2) * 2 - 1
        img += checks[..., None] * rng.uniform(6, 16)
    elif kind == 2:
        for _ in range(int(rng.integers(3, 8))):
            cy, cx, rad = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 20)
            blob = np.exp(-((np.arange(h)[:, None] - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2) / (2 * rad**2))
            img += blob[..., None] * rng.uniform(-30, 30, size=3)
    img += rng.normal(0, rng.uniform(3, 12), size=img.shape)
    return img, BACKGROUND_WORDS[kind]


def _size_word(r: float, cfg: SceneConfig) -> str:
    t = (r - cfg.min_radius) / max(cfg.max_radius - cfg.min_radius, 1e-6)
    return "small" if t < 0.33 else "medium" if t < 0.66 else "large"


def sample_scene(
    rng: np.random.Generator,
    cfg: SceneConfig,
    shapes: tuple[str, ...] = SHAPES,
    n_objects: int | None = None,
    shape_offset: int = 0,
) -> Scene:
    """One RGB uint8 image ``[H, W, 3]`` and its visible instances, painted back to front.

    ``shape_offset`` rotates every drawn shape through ``shapes`` while consuming the random stream
    identically, so offsets 0..len(shapes)-1 of one seed give the same scene with different shapes.
    """
    h = w = cfg.image_size
    img, background = _background(rng, h, w)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1)) if n_objects is None else n_objects
    instances: list[Instance] = []
    full_areas: list[int] = []
    colours = list(COLOURS)
    for _ in range(n):
        for _attempt in range(20):
            r = float(rng.uniform(cfg.min_radius, cfg.max_radius))
            cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
            shape = shapes[(int(rng.integers(len(shapes))) + shape_offset) % len(shapes)]
            mask = shape_mask(shape, (h, w), cx, cy, r, float(rng.uniform(0, 2 * np.pi)))
            if mask.sum() < 20:
                continue
            if all((inst.mask & ~mask).sum() >= cfg.min_visible * area for inst, area in zip(instances, full_areas, strict=True)):
                break
        else:
            continue
        for inst in instances:
            inst.mask = inst.mask & ~mask
        colour = colours[int(rng.integers(len(colours)))]
        shade = np.array(COLOURS[colour], dtype=np.float64) * rng.uniform(0.85, 1.1)
        # a mild per-object gradient so objects are not flat stickers
        yy, xx = np.mgrid[0:h, 0:w]
        light = 1 + 0.12 * (((xx - cx) * rng.normal() + (yy - cy) * rng.normal()) / max(r, 1))
        obj = shade[None, None, :] * np.clip(light, 0.7, 1.3)[..., None]
        img[mask] = obj[mask]
        instances.append(Instance(shape, colour, _size_word(r, cfg), mask, cx, cy))
        full_areas.append(int(mask.sum()))
    img += rng.normal(0, 3, size=img.shape)
    return Scene(np.clip(img, 0, 255).astype(np.uint8), instances, background)


def caption(
    scene: Scene, rng: np.random.Generator, p_colour: float = 0.7, p_size: float = 0.5, p_background: float = 0.3
) -> str:
    """A short sentence naming every object, left to right, with optional colour/size/background words."""
    instances = scene.instances
    if not instances:
        return f"an empty {scene.background} background."
    parts = []
    for inst in sorted(instances, key=lambda i: i.cx):
        words = []
        if rng.random() < p_size:
            words.append(inst.size_word)
        if rng.random() < p_colour:
            words.append(inst.colour)
        words.append(inst.shape)
        parts.append(" ".join(words))
    desc = " and ".join(f"a {p}" for p in parts)
    if rng.random() < p_background:
        desc += f" on a {scene.background} background"
    frames = ("a photo of {}.", "{}.", "there is {} in the scene.", "an image of {}.", "a picture with {}.")
    return frames[int(rng.integers(len(frames)))].format(desc)
