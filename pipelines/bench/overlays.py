"""Prediction overlays that read at a glance: every label tile has a legend of the classes present in it
(colour swatch + name, held-out classes marked ``* novel``), ground truth and predictions side by side.

``method_sheet``: one method, one row per image (image | ground truth | prediction). ``comparison_sheet``:
every method on the same images (image | ground truth | method 1 | method 2 | ...), columns titled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipelines.data.atomic import save_with

PALETTE = np.array(
    [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40)],
    dtype=np.uint8,
)
LINE = 13  # pixels per legend line (PIL's default bitmap font)


def colorize(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    out = PALETTE[label % len(PALETTE)]
    out[label == ignore_index] = (255, 255, 255)
    return out


def _colour(c: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[c % len(PALETTE)])


def _legend(draw: ImageDraw.ImageDraw, x: int, y: int, label: torch.Tensor, names: list[str], novel: set[str]) -> None:
    present = [int(c) for c in torch.unique(label) if int(c) < len(names)]
    for j, c in enumerate(present):
        top = y + j * LINE
        draw.rectangle((x, top + 2, x + 9, top + 11), fill=_colour(c), outline=(0, 0, 0))
        tag = "  * novel" if names[c] in novel else ""
        draw.text((x + 13, top), names[c] + tag, fill=(200, 0, 0) if tag else (0, 0, 0))


def _grid(images: list[torch.Tensor], columns: list[tuple[str, list[torch.Tensor | None]]], names: list[str], novel: set[str],
          scale: int) -> Image.Image:
    """Rows = images; columns = (title, one label map per image, or None for the photo itself)."""
    h, w = images[0].shape[-2:]
    tile_w, tile_h = w * scale, h * scale
    legend_h = LINE * (1 + max(len(torch.unique(lab)) for _, labs in columns for lab in labs if lab is not None))
    header = LINE + 4
    sheet = Image.new("RGB", (tile_w * len(columns) + 4 * len(columns), header + len(images) * (tile_h + legend_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (title, labels) in enumerate(columns):
        x = k * (tile_w + 4)
        draw.text((x + 2, 2), title[: tile_w // 6], fill=(0, 0, 0))
        for r, (image, label) in enumerate(zip(images, labels, strict=True)):
            y = header + r * (tile_h + legend_h)
            if label is None:
                tile = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
            else:
                tile = colorize(label.numpy())
            sheet.paste(Image.fromarray(tile).resize((tile_w, tile_h), Image.NEAREST), (x, y))
            if label is not None:
                _legend(draw, x + 2, y + tile_h + 2, label, names, novel)
    return sheet


def method_sheet(images, targets, preds, names: list[str], novel, scale: int = 3) -> Image.Image:
    return _grid(images, [("image", [None] * len(images)), ("ground truth", targets), ("prediction", preds)], names, set(novel), scale)


def comparison_sheet(images, targets, preds_by_method: dict[str, list], names: list[str], novel, scale: int = 2) -> Image.Image:
    columns = [("image", [None] * len(images)), ("ground truth", targets)] + list(preds_by_method.items())
    return _grid(images, columns, names, set(novel), scale)


def save_sheet(sheet: Image.Image, path: Path) -> Path:
    return save_with(lambda fh: sheet.save(fh, format="PNG"), path)
