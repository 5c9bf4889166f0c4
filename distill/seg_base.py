"""The shared machinery of the open-vocabulary segmentation LightningModules (``distill.seg_modules``): vocabulary,
text embeddings, the teacher seam (live or cached dense maps), whole / sliding-window prediction, calibrated stacking
and evaluation with ``OpenVocabMeanIoU``, the seen-class cross-entropy and the optimiser.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from teachers.prompts import text_embeddings

from .dense_teacher import check_dense_teacher
from .lr_schedule import LRSchedule, with_schedule
from .metrics import OpenVocabMeanIoU
from .seg_inference import slide_inference, whole_inference
from .seg_losses import remap_to_subset, teacher_signal
from .teacher_key import dense_cache_key, key_mismatch
from .teacher_student import TeacherStudentModule
from .vocabulary import Vocabulary


class OpenVocabSegModule(TeacherStudentModule):
    """Shared machinery: vocabulary, text embeddings, evaluation with ``OpenVocabMeanIoU``.

    ``calibration`` (calibrated stacking, Chao et al. 2016; SPNet's "-C" rows): gamma subtracted from every seen
    class's score before the arg-max, at inference only. Negative values favour the seen classes (a distilled head that
    over-calls unseen ones), positive the unseen (a student biased to the classes it was trained on). Choose it on val.
    """

    uses_dense_teacher = False

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module | None = None,
        class_names: list[str] | None = None,
        unseen: list[str] | None = None,
        templates: str | list[str] = "simple",
        prompts: str | None = None,
        logit_scale: float = 1 / 0.07,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        ignore_index: int = 255,
        background: str | None = "background",
        inference: Literal["whole", "slide"] = "whole",
        crop: int = 512,
        stride: int = 341,
        teacher_size: tuple[int, int] | Literal["input"] | None = None,
        teacher_stride: int | None = None,
        teacher_mode: Literal["maskclip", "value_only", "clearclip"] = "maskclip",
        encoder_lr: float | None = None,
        lr_schedule: LRSchedule = "constant",
        warmup_steps: int = 0,
        calibration: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["teacher", "student"])
        self.unseen_names = list(unseen) if unseen is not None else None
        self._init_pair(teacher, student, class_names, unseen)
        if self.uses_dense_teacher:
            check_dense_teacher(teacher, teacher_mode, type(self).__name__)

    # ------------------------------------------------------------------ vocabulary
    def _set_vocabulary(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = Vocabulary(vocabulary.names, vocabulary.held_out, self.hparams.ignore_index)
        class_names = list(vocabulary.names)
        self.class_names, self.unseen_names = class_names, list(vocabulary.held_out)
        self.unseen_ids = self.vocabulary.held_out_ids
        self.seen_ids = self.vocabulary.seen_ids
        self.background_index = class_names.index(self.hparams.background) if self.hparams.background in class_names else None
        self.val_metric = OpenVocabMeanIoU(len(class_names), self.unseen_ids, self.hparams.ignore_index)
        self.test_metric = OpenVocabMeanIoU(len(class_names), self.unseen_ids, self.hparams.ignore_index)

    def setup(self, stage: str) -> None:
        self._vocabulary_from_datamodule()
        if stage == "fit" and self.uses_dense_teacher:
            self._check_teacher_cache()
        self.val_metric.to(self.device)
        self.test_metric.to(self.device)
        self.set_buffer("text", text_embeddings(self.teacher, self.class_names, self.hparams.templates, self.hparams.prompts))

    # ------------------------------------------------------------------ teacher seam
    def _check_teacher_cache(self) -> None:
        """A datamodule that reads a teacher cache must have built it with this run's teacher and preprocessing."""
        dm = self._trainer.datamodule if self._trainer is not None else None
        cache = dm.dense_cache() if hasattr(dm, "dense_cache") else None
        if cache is None:
            return
        hp = self.hparams
        diff = key_mismatch(cache.key, dense_cache_key(self.teacher, hp.teacher_mode, hp.teacher_size, hp.teacher_stride))
        if diff:
            raise ValueError(
                f"teacher cache {cache.root} was built for another teacher or preprocessing ({'; '.join(diff)}); "
                "rebuild it for this config with `ovdistill cache -c ... --rebuild`, or drop data.teacher_cache to run the teacher live"
            )

    def teacher_dense(self, batch: dict) -> Tensor:
        """Teacher dense map for the batch: from a cache if the batch carries it (zero vectors where the
        augmented view has no image), else computed live."""
        if "teacher_dense" in batch:
            return batch["teacher_dense"]
        hp = self.hparams
        return self.teacher.encode_dense(batch["image"], hp.teacher_mode, self.teacher_input(batch["image"]), hp.teacher_stride)

    def teacher_scores(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """(teacher dense logits at image size, pixels that have a teacher score or None = all): the cached map's
        cosine with the text, resized as the live path resizes it, or the live teacher."""
        if "teacher_dense" not in batch:
            return self.teacher_logits(batch["image"], self.text), None
        dense = batch["teacher_dense"].to(self.text)
        size = tuple(batch["image"].shape[-2:])
        logits = torch.einsum("bdhw,kd->bkhw", F.normalize(dense, dim=1), self.text)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        valid = F.interpolate(teacher_signal(dense)[:, None].float(), size=size, mode="nearest")[:, 0] > 0
        return logits, valid

    def teacher_logits(self, images: Tensor, text: Tensor) -> Tensor:
        hp = self.hparams
        return self.teacher.dense_logits(images, text, mode=hp.teacher_mode, size=self.teacher_input(images), output_stride=hp.teacher_stride)

    def teacher_input(self, images: Tensor) -> tuple[int, int] | None:
        """The teacher's input size for ``images``: ``teacher_size``, or their own size when it is ``"input"`` (the
        official MaskCLIP runs CLIP on the image as the test pipeline resized it; None: the teacher's own size)."""
        size = self.hparams.teacher_size
        return tuple(images.shape[-2:]) if size == "input" else size

    # ------------------------------------------------------------------ prediction
    def sub_vocabulary(self, class_ids: list[int] | None) -> tuple[Tensor, int | None]:
        """(text embeddings of ``class_ids`` (all classes if None), the background's position among them or None)."""
        if class_ids is None:
            return self.text, self.background_index
        bg = class_ids.index(self.background_index) if self.background_index in class_ids else None
        return self.text[class_ids], bg

    def student_logits(self, images: Tensor, class_ids: list[int] | None = None) -> Tensor:
        text, bg = self.sub_vocabulary(class_ids)
        return self.student.classify(self.student(images), text, self.hparams.logit_scale, bg, size=images.shape[-2:])

    def predict_logits(self, images: Tensor) -> Tensor:
        """Scores over all classes at input resolution, calibrated (``calibration``): what evaluation and
        prediction take the arg-max of."""
        gamma = self.hparams.get("calibration", 0.0)
        logits = self.uncalibrated_logits(images)
        if not gamma:
            return logits
        logits = logits.clone()
        logits[:, self.seen_ids] -= gamma
        return logits

    def uncalibrated_logits(self, images: Tensor) -> Tensor:
        """Logits over all classes at input resolution (whole-image or sliding-window inference)."""
        hp = self.hparams
        fn = self.student_logits
        if hp.inference == "slide":
            return slide_inference(fn, images, len(self.class_names), hp.crop, hp.stride)
        return whole_inference(fn, images)

    def labels_from_logits(self, logits: Tensor) -> Tensor:
        """Each pixel's predicted class from ``predict_logits`` (at any size): the arg-max (training-free MaskCLIP may
        also name low-confidence pixels background, ``background_threshold``)."""
        return logits.argmax(1)

    def _evaluate(self, batch: dict, metric: OpenVocabMeanIoU) -> None:
        metric.update(self.labels_from_logits(self._at_label_size(self.predict_logits(batch["image"]), batch)), batch["label"])

    @staticmethod
    def _at_label_size(logits: Tensor, batch: dict) -> Tensor:
        # a keep-ratio evaluation view (data.img_scale) holds the label at its original size: mmseg resizes the logits
        label = batch.get("label")
        if label is None or tuple(logits.shape[-2:]) == tuple(label.shape[-2:]):
            return logits
        return F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metric)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metric)

    def predict_step(self, batch, batch_idx):
        return self.labels_from_logits(self._at_label_size(self.predict_logits(batch["image"]), batch))

    def configure_optimizers(self):
        """AdamW; a pre-trained encoder (``student.net.encoder``) may get its own ``encoder_lr`` (LSeg uses a
        lower backbone rate); both follow ``lr_schedule`` (LSeg's and MaskCLIP+'s own: ``poly``; distill.lr_schedule)."""
        hp = self.hparams
        trainable = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        groups = [p for _, p in trainable]
        if hp.encoder_lr is not None:
            enc = [p for n, p in trainable if n.startswith("net.encoder.")]
            rest = [p for n, p in trainable if not n.startswith("net.encoder.")]
            groups = [{"params": rest}, {"params": enc, "lr": hp.encoder_lr}]
        opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        return with_schedule(opt, hp.lr_schedule, lambda: self.trainer.estimated_stepping_batches, hp.warmup_steps)

    # ------------------------------------------------------------------ training
    def seen_loss(self, batch: dict, emb: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """LSeg cross-entropy over the seen classes only (unseen pixels ignored) of the student's embeddings ``emb``
        (computed here if not given); returns (loss, embeddings)."""
        emb = self.student(batch["image"]) if emb is None else emb
        text = self.text[self.seen_ids]
        bg = self.seen_ids.index(self.background_index) if self.background_index in self.seen_ids else None
        logits = self.student.classify(emb, text, self.hparams.logit_scale, bg, size=batch["label"].shape[-2:])
        target = remap_to_subset(batch["label"], self.seen_ids, self.hparams.ignore_index)
        return F.cross_entropy(logits, target, ignore_index=self.hparams.ignore_index), emb
