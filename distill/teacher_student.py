"""What every method module shares: a frozen teacher, a student of the teacher's dimension, one
``Vocabulary`` (from the constructor, the datamodule or the checkpoint, and checked against the others),
and checkpoints that leave the teacher out but record which teacher and vocabulary they were trained with."""
from __future__ import annotations

import re
import warnings

import lightning as L
from torch import Tensor, nn

from . import rng_state
from .vocabulary import Vocabulary

CHECKPOINT_KEY = "ovdistill"


def datamodule_vocabulary(dm, held_out_attr: str) -> Vocabulary | None:
    """The datamodule's ``vocabulary`` (or one built from its ``class_names`` + held-out list), if any."""
    if dm is None:
        return None
    vocab = getattr(dm, "vocabulary", None)
    if isinstance(vocab, Vocabulary):
        return vocab
    if getattr(dm, "class_names", None):
        return Vocabulary(tuple(dm.class_names), tuple(getattr(dm, held_out_attr, None) or ()))
    return None


class TeacherStudentModule(L.LightningModule):
    """Subclasses set ``held_out`` (the constructor / datamodule word for held-out classes), ``task``,
    and implement ``_set_vocabulary(vocabulary)``."""

    held_out = "unseen"
    task = "segmentation"

    def _init_pair(self, teacher: nn.Module, student: nn.Module | None, class_names, held_out) -> None:
        self.teacher, self.student = teacher, student
        if student is not None and getattr(student, "embed_dim", teacher.embed_dim) != teacher.embed_dim:
            raise ValueError(
                f"student embed_dim={student.embed_dim} but teacher {getattr(teacher, 'name', '')} emits "
                f"{teacher.embed_dim}-d embeddings; set the student's embed_dim to {teacher.embed_dim}"
            )
        self.vocabulary: Vocabulary | None = None
        self.class_names: list[str] | None = None
        self._held_out_arg = list(held_out) if held_out is not None else None
        if class_names is not None:
            self._set_vocabulary(Vocabulary(tuple(class_names), tuple(held_out or ())))

    def _vocabulary_from_datamodule(self) -> None:
        trainer = self._trainer  # None outside a Trainer (offline commands call setup themselves)
        dm = trainer.datamodule if trainer is not None else None
        theirs = datamodule_vocabulary(dm, self.held_out)
        if self.vocabulary is None:
            if theirs is None:
                raise ValueError("class_names not given and the datamodule has no class_names / vocabulary")
            if self._held_out_arg is not None and set(self._held_out_arg) != set(theirs.held_out):
                raise ValueError(
                    f"the model's {self.held_out} list {sorted(self._held_out_arg)} differs from the datamodule's "
                    f"{sorted(theirs.held_out)}; give it in one place (the datamodule) or make them equal"
                )
            self._set_vocabulary(theirs)
        elif theirs is not None:
            self.vocabulary.check_matches(theirs, "the model's vocabulary", "the datamodule's")
        # the logged hyperparameters say which vocabulary was used (and agree with the datamodule's, which Lightning
        # requires of keys both log); None meant "from the datamodule"
        for key, value in (("class_names", list(self.vocabulary.names)), (self.held_out, list(self.vocabulary.held_out))):
            if getattr(self, "_hparams_initial", None) is not None and key in self._hparams_initial and self._hparams_initial[key] is None:
                self._hparams_initial[key] = value

    def on_fit_start(self) -> None:
        # The frozen teacher stays in eval mode by design (pre-trained normalisation statistics, no dropout), and
        # Lightning warns about every eval-mode module at the start of training. Silence exactly the teacher's count:
        # a student module left in eval mode changes the count, and that warning still reaches the user.
        evaluating = [name for name, m in self.named_modules() if not m.training]
        if all(name == "teacher" or name.startswith("teacher.") for name in evaluating):
            warnings.filterwarnings("ignore", message=re.escape(f"Found {len(evaluating)} module(s) in eval mode at the start of training."))

    def set_buffer(self, name: str, value) -> None:
        """A derived tensor (text embeddings, masks) that follows the module across devices and is never
        saved: Lightning's ``setup`` runs before the model is moved to its device."""
        value = value.to(self.device)
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value, persistent=False)

    # ------------------------------------------------------------------ evaluation
    def metric_results(self, metric) -> dict:
        return metric.compute()

    def _log_metric(self, metric, prefix: str) -> dict:
        """Log the (already DDP-synced) metric's scalars; NaN stays NaN ("nothing to evaluate", not "scored 0")."""
        out = self.metric_results(metric)
        scalars = {f"{prefix}/{k}": v for k, v in out.items() if not isinstance(v, Tensor)}
        self.log_dict(scalars, prog_bar=prefix == "val", sync_dist=False)
        self.last_metrics = {prefix: out}
        metric.reset()
        return out

    def on_validation_epoch_end(self):
        self._log_metric(self.val_metric, "val")

    def on_test_epoch_end(self):
        self._log_metric(self.test_metric, "test")

    def held_out_names(self) -> list[str]:
        return list(self.vocabulary.held_out) if self.vocabulary is not None else []

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        vocab = self.vocabulary.to_dict() if self.vocabulary is not None else None
        checkpoint["vocabulary"] = vocab
        checkpoint[CHECKPOINT_KEY] = {
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "task": self.task,
            "teacher": getattr(self.teacher, "name", type(self.teacher).__name__),
            "embed_dim": int(self.teacher.embed_dim),
        }
        checkpoint[rng_state.KEY] = rng_state.capture()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "state_dict" not in checkpoint:
            raise ValueError(
                f"not a Lightning checkpoint of an ovdistill method (keys {sorted(checkpoint)[:6]}); give the last.ckpt of `ovdistill fit`"
            )
        rng_state.restore(checkpoint.get(rng_state.KEY))
        record = checkpoint.get(CHECKPOINT_KEY)
        if record is not None:
            if record.get("task") != self.task:
                raise ValueError(
                    f"this checkpoint holds a {record.get('task')} model ({record.get('module')}); "
                    f"{type(self).__name__} is a {self.task} method"
                )
            mine = getattr(self.teacher, "name", type(self.teacher).__name__)
            if record.get("teacher") != mine:
                raise ValueError(
                    f"the checkpoint's student was distilled from teacher {record.get('teacher')!r} but this run's teacher "
                    f"is {mine!r}; its embeddings live in another space. Use the training teacher (model_name + pretrained)"
                )
        vocab = checkpoint.get("vocabulary")
        if vocab:
            theirs = Vocabulary.from_dict(vocab)
            if self.vocabulary is None:
                self._set_vocabulary(theirs)
            else:
                self.vocabulary.check_matches(theirs, "this run's vocabulary", "the checkpoint's")
        # The teacher is rebuilt from the config and left out of checkpoints: supply exactly its keys so
        # that everything else loads strictly (a missing student key is an error).
        state = checkpoint["state_dict"]
        for key, value in self.teacher.state_dict(prefix="teacher.").items():
            state.setdefault(key, value)
