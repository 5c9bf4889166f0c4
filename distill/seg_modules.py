"""LightningModules for open-vocabulary segmentation: LSeg, LSeg + dense distillation, MaskCLIP, MaskCLIP+.

Each pairs a frozen teacher with a student; the logic lives in plain functions (``seg_losses``,
``seg_inference``). Class names and the unseen list come from the constructor or, if omitted, from
the datamodule (``class_names`` / ``unseen`` attributes). Teacher dense maps are read from
``batch["teacher_dense"]`` when a cache supplies them and computed live otherwise.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from students.ensemble import vild_blend
from teachers.pamr import PAMR_DILATIONS
from teachers.prompts import text_embeddings

from .dense_teacher import check_dense_teacher
from .lr_schedule import LRSchedule, with_schedule
from .metrics import OpenVocabMeanIoU
from .seg_inference import slide_inference, whole_inference
from .seg_losses import (
    dense_feature_loss,
    pseudo_labels,
    remap_to_subset,
    teacher_signal,
)
from .teacher_key import dense_cache_key, key_mismatch
from .teacher_student import TeacherStudentModule
from .vocabulary import Vocabulary


class OpenVocabSegModule(TeacherStudentModule):
    """Shared machinery: vocabulary, text embeddings, evaluation with ``OpenVocabMeanIoU``."""

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
        teacher_size: tuple[int, int] | None = None,
        teacher_stride: int | None = None,
        teacher_mode: Literal["maskclip", "value_only", "clearclip"] = "maskclip",
        encoder_lr: float | None = None,
        lr_schedule: LRSchedule = "constant",
        warmup_steps: int = 0,
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
        return self.teacher.encode_dense(batch["image"], hp.teacher_mode, hp.teacher_size, hp.teacher_stride)

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
        return self.teacher.dense_logits(images, text, mode=hp.teacher_mode, size=hp.teacher_size, output_stride=hp.teacher_stride)

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
        """Logits over all classes at input resolution (whole-image or sliding-window inference)."""
        hp = self.hparams
        fn = self.student_logits
        if hp.inference == "slide":
            return slide_inference(fn, images, len(self.class_names), hp.crop, hp.stride)
        return whole_inference(fn, images)

    def _evaluate(self, batch: dict, metric: OpenVocabMeanIoU) -> None:
        logits = self.predict_logits(batch["image"])
        metric.update(logits.argmax(1), batch["label"])

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metric)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metric)

    def predict_step(self, batch, batch_idx):
        return self.predict_logits(batch["image"]).argmax(1)

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


class LSeg(OpenVocabSegModule):
    """LSeg: per-pixel cross-entropy over seen classes against frozen text embeddings."""

    def training_step(self, batch, batch_idx):
        loss, _ = self.seen_loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss


class LSegDenseDistill(OpenVocabSegModule):
    """LSeg + distillation of the teacher's dense (MaskCLIP) features into the pixel embeddings.

    ``ensemble=True`` (ViLD-ensemble carried to pixels) needs a student built with ``image_head=True``: the
    cross-entropy trains the text head, the distillation the image head, so the two losses stop competing for one
    embedding; inference blends both heads' class probabilities with ``ensemble_lambda`` (seen classes lean on the
    text head, unseen ones on the distilled head; ``students.ensemble.vild_blend``).
    """

    uses_dense_teacher = True

    def __init__(
        self, *args, distill_weight: float = 1.0, distill_loss: Literal["cosine", "l1"] = "cosine", ensemble: bool = False,
        ensemble_lambda: float = 2 / 3, **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["teacher", "student"])
        if ensemble and not getattr(self.student, "image_head", False):
            raise ValueError("ensemble=True distils into a second head: build the student with image_head=True "
                             "(student.init_args.image_head: true)")

    def student_logits(self, images: Tensor, class_ids: list[int] | None = None) -> Tensor:
        if not self.hparams.ensemble:
            return super().student_logits(images, class_ids)
        ids = list(range(len(self.class_names))) if class_ids is None else class_ids
        text_emb, image_emb = self.student.forward_heads(images)
        (text, bg), scale = self.sub_vocabulary(ids), self.hparams.logit_scale
        size = images.shape[-2:]
        p_text = self.student.classify(text_emb, text, scale, bg, size=size).softmax(1)
        # the image head mimics the teacher, which scores background with its text embedding too
        p_image = self.student.classify(image_emb, text, scale, size=size).softmax(1)
        novel = torch.tensor([i in self.unseen_ids for i in ids], device=images.device)
        return vild_blend(p_text, p_image, novel, self.hparams.ensemble_lambda, dim=1).clamp_min(1e-12).log()

    def training_step(self, batch, batch_idx):
        text_emb, image_emb = self.student.forward_heads(batch["image"]) if self.hparams.ensemble else (None, None)
        ce, emb = self.seen_loss(batch, text_emb)
        distill = dense_feature_loss(emb if image_emb is None else image_emb, self.teacher_dense(batch), self.hparams.distill_loss)
        loss = ce + self.hparams.distill_weight * distill
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/distill": distill}, prog_bar=True)
        return loss


class MaskCLIP(OpenVocabSegModule):
    """Training-free MaskCLIP: the teacher's dense logits are the prediction (baseline row).

    ``smooth`` / ``denoise``: MaskCLIP's key smoothing and prompt denoising. ``pamr_steps > 0``: the upsampled
    probabilities are then refined by PAMR guided by the image (``teachers.pamr``; ``pamr_dilations``)."""

    uses_dense_teacher = True

    def __init__(
        self, teacher: nn.Module, student: nn.Module | None = None, *args, denoise: float | None = None, smooth: bool = False,
        smooth_affinity: Literal["official", "cosine"] = "official", pamr_steps: int = 0,
        pamr_dilations: tuple[int, ...] = PAMR_DILATIONS, **kwargs,
    ):
        if student is not None:
            raise ValueError("MaskCLIP is training-free and has no student: set student: null (configs/seg/method/maskclip.yaml does)")
        super().__init__(teacher, None, *args, **kwargs)
        self.save_hyperparameters(ignore=["teacher", "student"])

    def predict_logits(self, images: Tensor) -> Tensor:
        """The teacher's refined dense logits over the whole image (the official ``test_cfg``, ``mode='whole'``) or,
        with ``inference: slide``, averaged over ``crop`` windows every ``stride`` pixels (no padding: the teacher
        resizes each window itself)."""
        hp = self.hparams

        def fn(x: Tensor) -> Tensor:
            return self.teacher.dense_logits(
                x, self.text, mode=hp.teacher_mode, size=hp.teacher_size, output_stride=hp.teacher_stride,
                denoise=hp.denoise, smooth=hp.smooth, smooth_affinity=hp.smooth_affinity, pamr_steps=hp.pamr_steps,
                pamr_dilations=tuple(hp.pamr_dilations),
            )

        if hp.inference == "slide":
            return slide_inference(fn, images, len(self.class_names), hp.crop, hp.stride, divisor=1)
        return fn(images)

    def configure_optimizers(self):
        return None


class MaskCLIPPlus(OpenVocabSegModule):
    """MaskCLIP+: pseudo labels from frozen teacher dense logits, then self-training.

    ``transductive=True``: pixels the annotation ignores (unseen classes) get the teacher's arg-max over
    the unseen classes; ``False``: annotation-free, every pixel is pseudo-labelled over all classes. After
    ``self_train_after`` of the training steps the student's own (detached) predictions replace the
    teacher's. Plain cross-entropy over all classes.
    """

    uses_dense_teacher = True

    def __init__(
        self, *args, transductive: bool = True, self_train_after: float = 0.1, pseudo_threshold: float = 0.0, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["teacher", "student"])

    def self_training(self) -> bool:
        total = self._trainer.estimated_stepping_batches if self._trainer is not None else 0
        return bool(total) and self.global_step >= self.hparams.self_train_after * total

    @torch.no_grad()
    def targets(self, batch: dict, logits: Tensor) -> Tensor:
        """The pixel targets of a step: annotation + teacher pseudo labels, or the student's own after the switch."""
        hp = self.hparams
        scores, valid = (logits.detach(), None) if self.self_training() else self.teacher_scores(batch)
        target = pseudo_labels(
            batch["label"], scores, self.unseen_ids, transductive=hp.transductive, threshold=hp.pseudo_threshold, ignore_index=hp.ignore_index,
        )
        if valid is not None:  # padding of an augmented view has no cached teacher score
            target = torch.where(valid, target, torch.full_like(target, hp.ignore_index))
        return target

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        emb = self.student(batch["image"])
        logits = self.student.classify(emb, self.text, hp.logit_scale, self.background_index, size=batch["image"].shape[-2:])
        target = self.targets(batch, logits)
        loss = F.cross_entropy(logits, target, ignore_index=hp.ignore_index)
        self.log("train/loss", loss, prog_bar=True)
        return loss
