"""Every relative link and picture in the user-facing markdown points at a file the repository holds."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", ["README.md"])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    targets = [t for t in LINK.findall(path.read_text()) if not re.match(r"[a-z]+://", t)]
    assert targets, f"{doc} links nothing: the pattern no longer matches its links"
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"{doc} links files that do not exist: {missing}"
