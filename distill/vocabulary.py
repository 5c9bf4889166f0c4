"""``Vocabulary``: the class names of a task (index = label id) and the held-out (unseen / novel) ones.

One frozen object is the single source of truth for which classes exist, in which order, and which
ones no training loss may see. The data layer builds it and hides held-out labels with it; methods,
metrics and checkpoints are checked against it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Vocabulary:
    """``names``: every class, in label-id order; ``held_out``: the classes whose training labels are hidden."""

    names: tuple[str, ...]
    held_out: tuple[str, ...] = ()
    ignore_index: int = 255
    _ids: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names, held = tuple(self.names or ()), tuple(self.held_out or ())
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "held_out", held)
        if not names:
            raise ValueError("the class list is empty: give the dataset's class names (index = label id)")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"class names must be non-empty strings, got {bad[:3]}")
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise ValueError(f"the class list repeats {dup}")
        unknown = [c for c in held if c not in names]
        if unknown:
            raise ValueError(f"held-out classes {unknown} are not in the class list ({len(names)} classes, e.g. {list(names[:5])})")
        dup = sorted({c for c in held if held.count(c) > 1})
        if dup:
            raise ValueError(f"the held-out list names {dup} twice")
        if len(held) >= len(names):
            raise ValueError("every class is held out: at least one seen (base) class is needed")
        self._ids.update({n: i for i, n in enumerate(names)})

    # ------------------------------------------------------------------ ids
    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        if name not in self._ids:
            raise KeyError(f"class {name!r} is not in the vocabulary ({len(self.names)} classes)")
        return self._ids[name]

    @property
    def held_out_ids(self) -> list[int]:
        return [self._ids[c] for c in self.held_out]

    @property
    def seen_ids(self) -> list[int]:
        held = set(self.held_out_ids)
        return [i for i in range(len(self.names)) if i not in held]

    @property
    def seen(self) -> list[str]:
        return [self.names[i] for i in self.seen_ids]

    # ------------------------------------------------------------------ hiding
    def hide(self, labels: Tensor) -> Tensor:
        """A label map (or vector of label ids) with every held-out class set to ``ignore_index``:
        what a training split may show a loss (the zero-shot protocols' rule)."""
        if not self.held_out:
            return labels
        held = torch.tensor(self.held_out_ids, device=labels.device, dtype=labels.dtype)
        return labels.masked_fill(torch.isin(labels, held), self.ignore_index)

    def held_out_mask(self, labels: Tensor) -> Tensor:
        held = torch.tensor(self.held_out_ids, device=labels.device, dtype=torch.long)
        return torch.isin(labels.long(), held)

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict:
        return {"class_names": list(self.names), "held_out": list(self.held_out)}

    @classmethod
    def from_dict(cls, data: dict, ignore_index: int = 255) -> Vocabulary:
        held = data.get("held_out", data.get("unseen", data.get("novel", [])))
        return cls(tuple(data["class_names"]), tuple(held), ignore_index)

    def check_matches(self, other: Vocabulary, mine: str, theirs: str) -> None:
        """Refuse two vocabularies that differ in classes, their order or the held-out set."""
        if self.names != other.names:
            if set(self.names) == set(other.names):
                first = next(i for i, (a, b) in enumerate(zip(self.names, other.names, strict=True)) if a != b)
                raise ValueError(
                    f"{mine} and {theirs} order the classes differently (position {first}: {self.names[first]!r} vs "
                    f"{other.names[first]!r}); label ids would be scored against the wrong text rows"
                )
            only_a = sorted(set(self.names) - set(other.names))[:5]
            only_b = sorted(set(other.names) - set(self.names))[:5]
            raise ValueError(f"{mine} and {theirs} have different classes: only in {mine}: {only_a}; only in {theirs}: {only_b}")
        if set(self.held_out) != set(other.held_out):
            raise ValueError(
                f"{mine} holds out {sorted(self.held_out)} but {theirs} holds out {sorted(other.held_out)}; "
                "give one held-out list (the datamodule's) or make them equal"
            )


class NamesFromVocabulary:
    """For holders of ``self.vocabulary`` (the data modules): the names as the lists configs and methods read."""

    vocabulary: Vocabulary

    @property
    def class_names(self) -> list[str]:
        return list(self.vocabulary.names)

    def log_resolved_vocabulary(self, held_out_key: str) -> None:
        """The logged hyperparameters name the vocabulary in use, not the ``None`` / preset they were resolved from:
        the methods log the same lists, and Lightning refuses keys that both log with different values."""
        for hp in (getattr(self, "_hparams_initial", None), getattr(self, "_hparams", None)):
            if hp is not None:
                if "class_names" in hp:
                    hp["class_names"] = list(self.vocabulary.names)
                if held_out_key in hp:
                    hp[held_out_key] = list(self.vocabulary.held_out)
