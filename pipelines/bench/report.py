"""Results tables (markdown + JSON), written atomically after every finished section."""
from __future__ import annotations

import json
import math
from pathlib import Path

from pipelines.data.atomic import save_json, save_text


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
