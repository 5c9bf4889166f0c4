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
    if "wall_s" in meta:
        minutes, seconds = divmod(round(meta["wall_s"]), 60)
        parts += [f"Finished in {minutes} min {seconds} s on {meta.get('machine', 'this machine')}.", ""]
    md = "\n".join(parts)
    save_text(md, out / "results.md")
    save_json({"sections": {t: rows for t, (rows, _) in sections.items()}, "meta": meta}, out / "results.json")
    return md


def finished_section(out: Path, key: str, settings: dict) -> list[dict] | None:
    """Rows of a section an earlier run finished with exactly these settings (``out/sections/KEY.json``), or None.
    The settings are compared as the file holds them (a tuple such as a teacher size reads back as a list)."""
    path = out / "sections" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("settings") == json.loads(json.dumps(settings)):
            return data["rows"]
    return None


def save_section(out: Path, key: str, settings: dict, rows: list[dict]) -> Path:
    """Record a finished section atomically, so a crash later in the run loses nothing already computed."""
    return save_json({"settings": settings, "rows": rows}, out / "sections" / f"{key}.json")


BEGIN, END = "<!-- demo-results:begin -->", "<!-- demo-results:end -->"


def splice_results(readme: str, results_md: str) -> str:
    """``readme`` with the text between its demo-results markers replaced by ``results_md`` (its title dropped,
    its sections one heading level down)."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"the README must hold exactly one {BEGIN} ... {END} block")
    body = [line for line in results_md.splitlines() if not line.startswith("# ")]
    body = ["#" + line if line.startswith("## ") else line for line in body]
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return head + BEGIN + "\n" + "\n".join(body).strip() + "\n" + END + tail
