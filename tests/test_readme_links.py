"""Every relative link and picture in the README points at a file the repository holds."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_relative_links_resolve():
    targets = [t for t in LINK.findall((ROOT / "README.md").read_text()) if not re.match(r"[a-z]+://", t)]
    assert targets, "README.md links nothing: the pattern no longer matches its links"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"
