"""``Vocabulary``: validation, hiding held-out labels, and the checks between model, data and checkpoint."""
from __future__ import annotations

import pytest
import torch

from distill.vocabulary import Vocabulary


def test_vocabulary_validates_its_lists():
    with pytest.raises(ValueError, match="empty"):
        Vocabulary(())
    with pytest.raises(ValueError, match=r"held-out classes \['dragon'\] are not in the class list"):
        Vocabulary(("a", "b"), ("dragon",))
    with pytest.raises(ValueError, match=r"repeats \['a'\]"):
        Vocabulary(("a", "a", "b"), ("b",))
    with pytest.raises(ValueError, match=r"names \['b'\] twice"):
        Vocabulary(("a", "b", "c"), ("b", "b"))
    with pytest.raises(ValueError, match="every class is held out"):
        Vocabulary(("a", "b"), ("a", "b"))


def test_hide_sets_exactly_the_held_out_ids_to_ignore():
    v = Vocabulary(("bg", "cat", "dog", "cow"), ("dog",))
    labels = torch.tensor([[0, 1, 2], [3, 255, 2]])
    expected = labels.clone()
    expected[labels == 2] = 255
    assert torch.equal(v.hide(labels), expected)
    assert v.seen_ids == [0, 1, 3] and v.held_out_ids == [2] and v.seen == ["bg", "cat", "cow"]
    assert Vocabulary(("a", "b")).hide(labels) is labels


def test_check_matches_names_the_difference():
    a = Vocabulary(("circle", "square", "star"), ("star",))
    with pytest.raises(ValueError, match="order the classes differently .*position 0: 'circle' vs 'square'"):
        a.check_matches(Vocabulary(("square", "circle", "star"), ("star",)), "model", "data")
    with pytest.raises(ValueError, match=r"holds out \['star'\] but data holds out \['square'\]"):
        a.check_matches(Vocabulary(("circle", "square", "star"), ("square",)), "model", "data")
    with pytest.raises(ValueError, match="different classes"):
        a.check_matches(Vocabulary(("circle", "square", "unicorn"), ()), "model", "data")
    a.check_matches(Vocabulary.from_dict(a.to_dict()), "model", "data")
