"""What every method module shares: a frozen teacher, a student of the teacher's dimension, a vocabulary
(class names + held-out classes) from the constructor, the datamodule or the checkpoint, and checkpoints
that leave the teacher out."""
from __future__ import annotations

import lightning as L
from torch import nn


def check_vocabulary(class_names: list[str], held_out: list[str], word: str = "unseen") -> None:
    if not class_names:
        raise ValueError("class_names is empty: give the dataset's class names (index = label id)")
    dup = sorted({c for c in class_names if class_names.count(c) > 1})
    if dup:
        raise ValueError(f"class_names repeats {dup}")
    missing = [c for c in held_out if c not in class_names]
    if missing:
        raise ValueError(f"{word} classes {missing} are not in class_names")
    if len(set(held_out)) != len(held_out):
        raise ValueError(f"{word} lists a class twice: {held_out}")
    if len(held_out) >= len(class_names):
        raise ValueError(f"every class is {word}: at least one seen class is needed")


class TeacherStudentModule(L.LightningModule):
    """Subclasses set ``held_out`` (the datamodule / checkpoint attribute naming held-out classes) and
    implement ``_set_vocabulary(class_names, held_out)``."""

    held_out = "unseen"

    def _init_pair(self, teacher: nn.Module, student: nn.Module | None, class_names, held_out) -> None:
        self.teacher, self.student = teacher, student
        if student is not None and getattr(student, "embed_dim", teacher.embed_dim) != teacher.embed_dim:
            raise ValueError(
                f"student embed_dim={student.embed_dim} but teacher {getattr(teacher, 'name', '')} emits "
                f"{teacher.embed_dim}-d embeddings; set the student's embed_dim to {teacher.embed_dim}"
            )
        self.class_names = list(class_names) if class_names is not None else None
        self.strict_loading = False  # checkpoints leave the frozen teacher out
        if self.class_names is not None:
            self._set_vocabulary(self.class_names, list(held_out or []))

    def _vocabulary_from_datamodule(self) -> None:
        if self.class_names is None:
            dm = self.trainer.datamodule if self.trainer is not None else None
            if dm is None or not hasattr(dm, "class_names"):
                raise ValueError("class_names not given and the datamodule has no class_names")
            self._set_vocabulary(list(dm.class_names), list(getattr(dm, self.held_out, [])))

    def held_out_names(self) -> list[str]:
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        checkpoint["vocabulary"] = {"class_names": self.class_names, self.held_out: self.held_out_names()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        vocab = checkpoint.get("vocabulary")
        if vocab and self.class_names is None:
            self._set_vocabulary(vocab["class_names"], vocab[self.held_out])
