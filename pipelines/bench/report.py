"""Results tables (markdown + JSON) and prediction overlays (image | ground truth | prediction)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipelines.data.atomic import save_json, save_text

_PALETTE = np.array(
    [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40)],
    dtype=np.uint8,
)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(out: Path, sections: dict[str, tuple[list[dict], list[str]]], meta: dict) -> str:
    """Write ``results.md`` and ``results.json`` atomically; returns the markdown."""
    parts = ["# ovdistill results", ""]
    for title, (rows, columns) in sections.items():
        parts += [f"## {title}", "", markdown_table(rows, columns), ""]
    parts += ["```", meta.get("command", ""), "```", ""]
    md = "\n".join(parts)
    save_text(md, out / "results.md")
    save_json({"sections": {t: rows for t, (rows, _) in sections.items()}, "meta": meta}, out / "results.json")
    return md


def finished_section(out: Path, key: str, settings: dict) -> list[dict] | None:
    """Rows of a section an earlier run finished with exactly these settings (``out/sections/KEY.json``), or None."""
    path = out / "sections" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") == settings:
            return data["rows"]
    return None


def save_section(out: Path, key: str, settings: dict, rows: list[dict]) -> Path:
    """Record a finished section atomically, so a crash later in the run loses nothing already computed."""
    return save_json({"settings": settings, "rows": rows}, out / "sections" / f"{key}.json")


def colorize(label: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    out = _PALETTE[label % len(_PALETTE)]
    out[label == ignore_index] = (255, 255, 255)
    return out


def overlay_panel(image: torch.Tensor, target: torch.Tensor, pred: torch.Tensor, names: list[str], scale: int = 3) -> Image.Image:
    """One PNG row: image | ground truth | prediction, with the class names present drawn beneath."""
    img = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    tiles = [img, colorize(target.numpy()), colorize(pred.numpy())]
    row = np.concatenate(tiles, axis=1)
    h, w = row.shape[:2]
    canvas = Image.new("RGB", (w * scale, h * scale + 16 * 3), (255, 255, 255))
    canvas.paste(Image.fromarray(row).resize((w * scale, h * scale), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(canvas)
    tile_w = w * scale // 3
    for i, (title, lab) in enumerate((("image", None), ("ground truth", target), ("prediction", pred))):
        draw.text((i * tile_w + 4, h * scale + 2), title, fill=(0, 0, 0))
        if lab is not None:
            present = [int(c) for c in torch.unique(lab) if int(c) < len(names)]
            for j, c in enumerate(present[:2]):
                draw.text((i * tile_w + 4, h * scale + 16 + j * 14), names[c], fill=tuple(int(v) for v in _PALETTE[c % len(_PALETTE)]))
            if len(present) > 2:
                draw.text((i * tile_w + 70, h * scale + 16), ", ".join(names[c] for c in present[2:5]), fill=(0, 0, 0))
    return canvas


def save_overlays(path: Path, panels: list[Image.Image]) -> Path:
    width = max(p.width for p in panels)
    sheet = Image.new("RGB", (width, sum(p.height for p in panels)), (255, 255, 255))
    y = 0
    for p in panels:
        sheet.paste(p, (0, y))
        y += p.height
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
