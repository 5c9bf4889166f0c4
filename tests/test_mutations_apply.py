"""Every mutation of ``tests/mutations.py`` still applies: its original text occurs exactly once in its file.

A mutation whose text the code no longer holds cannot run, and the README's count of caught mutations would then
include one that nothing checks (the tuned-on-test mutation went stale this way when the judge moved to ``score``).
"""
from __future__ import annotations

import pytest
from mutations import MUTATIONS, ROOT


@pytest.mark.parametrize("name,file,old,new,tests", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_applies(name, file, old, new, tests):
    text = (ROOT / file).read_text()
    assert text.count(old) == 1, f"{name!r}: {file} holds its original text {text.count(old)} times, not once"
    assert new != old
    for path in tests.split():
        if not path.startswith("-") and path.endswith(".py"):
            assert (ROOT / path).is_file(), f"{name!r} runs {path}, which does not exist"


def test_mutation_names_are_unique():
    names = [m[0] for m in MUTATIONS]
    assert len(names) == len(set(names))
