"""The house rules, checked on the source: imports flow one way (the table below), and files stay small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOW = {"teachers", "students"}

#: package -> the project packages its modules may import (besides themselves)
ALLOWED: dict[str, set[str]] = {
    "teachers": set(),
    "students": set(),
    "distill": {"teachers", "students"},
    "pipelines.data": {"distill", "teachers", "students"},
    "pipelines.world": {"pipelines.data", "distill", "teachers", "students"},
    "pipelines.offline": {"pipelines.data", "pipelines.world", "distill", "teachers", "students"},
    "pipelines.evaluate": {"pipelines.data", "distill"},
    "pipelines.cache": {"pipelines.data", "distill", "teachers", "students"},
    "pipelines.bench": {"pipelines.cache", "pipelines.offline", "pipelines.data", "pipelines.world", "distill", "teachers", "students"},
    "pipelines.commands": {"pipelines", "pipelines.cache", "pipelines.evaluate", "pipelines.bench", "pipelines.offline", "pipelines.data",
                           "pipelines.world", "distill", "teachers", "students"},
    "pipelines": {"pipelines.commands", "pipelines.cache", "pipelines.evaluate", "pipelines.bench", "pipelines.offline", "pipelines.data",
                  "pipelines.world", "distill", "teachers", "students"},
}
PACKAGES = sorted(ALLOWED, key=len, reverse=True)


def _package(module: str) -> str | None:
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), None)


def _modules():
    for top in ("teachers", "students", "distill", "pipelines"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            yield ".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts), path


def _imports(module: str, path: Path):
    tree = ast.parse(path.read_text())
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base), node.lineno
            elif node.module:
                yield node.module, node.lineno


def test_imports_flow_one_way():
    bad = []
    for module, path in _modules():
        mine = _package(module)
        for target, line in _imports(module, path):
            theirs = _package(target)
            if theirs is None or theirs == mine:
                continue
            if theirs not in ALLOWED[mine]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} ({theirs})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_layering_check_would_notice_a_violation(tmp_path):
    assert _package("pipelines.data.coco_det") == "pipelines.data" and "pipelines.offline" not in ALLOWED["pipelines.data"]
    assert "distill" not in ALLOWED["teachers"] and "students" not in ALLOWED["teachers"]
    probe = tmp_path / "x.py"
    probe.write_text("from ..offline import predict\nimport pipelines.bench.report\n")
    assert [t for t, _ in _imports("pipelines.data.x", probe)] == ["pipelines.offline", "pipelines.bench.report"]


@pytest.mark.parametrize("top", ["teachers", "students", "distill", "pipelines"])
def test_no_file_over_300_lines(top):
    long = [f"{p.relative_to(ROOT)}: {n}" for p in (ROOT / top).rglob("*.py") if (n := len(p.read_text().splitlines())) > 320]
    assert not long, long


def test_settings_are_chosen_on_val_never_on_test():
    """The benches that pick the demo's settings (and its teacher) score val; the test split is the demo's, reported
    once. Every scoring call they make names the val split: ``score(..., "val")`` or a bench run with ``split="val"``."""
    for name in ("choose_on_val.py", "teacher_choice.py"):
        tree = ast.parse((ROOT / "benchmarks" / name).read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        attrs = {n.func.attr for n in calls if isinstance(n.func, ast.Attribute)}
        assert "test" not in attrs, name
        named = {n.func.id: n for n in calls if isinstance(n.func, ast.Name)}
        scoring = [n for n in calls if isinstance(n.func, ast.Name) and n.func.id in ("score", "run_seg_methods", "run_det_methods")]
        assert scoring, (name, sorted(named))
        for call in scoring:
            split = [k.value for k in call.keywords if k.arg == "split"] or call.args[2:3]
            assert [getattr(v, "value", None) for v in split] == ["val"], (name, call.func.id, call.lineno)
