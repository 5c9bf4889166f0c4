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

from .seg_base import OpenVocabSegModule
from .seg_inference import slide_inference
from .seg_losses import dense_feature_loss, pseudo_labels

__all__ = ["LSeg", "LSegDenseDistill", "MaskCLIP", "MaskCLIPPlus", "OpenVocabSegModule"]


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
    probabilities are then refined by PAMR guided by the image (``teachers.pamr``; ``pamr_dilations``).

    ``background_threshold`` (SCLIP's ``prob_thd``, also ClearCLIP's and NACLIP's, for datasets with a background
    class): a pixel whose highest class probability, ``softmax(logit_scale * score)`` at the label's size, is under it
    is named background. 0 (default, MaskCLIP's own protocol) leaves the arg-max alone. Choose it and ``logit_scale``
    on val."""

    uses_dense_teacher = True

    def __init__(
        self, teacher: nn.Module, student: nn.Module | None = None, *args, denoise: float | None = None, smooth: bool = False,
        smooth_affinity: Literal["official", "cosine"] = "official", pamr_steps: int = 0,
        pamr_dilations: tuple[int, ...] = PAMR_DILATIONS, background_threshold: float = 0.0, **kwargs,
    ):
        if student is not None:
            raise ValueError("MaskCLIP is training-free and has no student: set student: null (configs/seg/method/maskclip.yaml does)")
        if not 0.0 <= background_threshold < 1.0:
            raise ValueError(f"background_threshold={background_threshold}: a probability in [0, 1) (0: off)")
        super().__init__(teacher, None, *args, **kwargs)
        self.save_hyperparameters(ignore=["teacher", "student"])

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.hparams.background_threshold and self.background_index is None:
            raise ValueError(
                f"background_threshold={self.hparams.background_threshold} names low-confidence pixels "
                f"{self.hparams.background!r}, which is not among this dataset's classes ({', '.join(self.class_names[:5])}, ...): "
                "use it on a dataset with a background class (context60, the world, your own files with one), or set it to 0"
            )

    def labels_from_logits(self, logits: Tensor) -> Tensor:
        labels = logits.argmax(1)
        threshold = self.hparams.background_threshold
        if not threshold:
            return labels
        confidence = (self.hparams.logit_scale * logits.float()).softmax(1).amax(1)
        return labels.masked_fill(confidence < threshold, self.background_index)

    def uncalibrated_logits(self, images: Tensor) -> Tensor:
        """The teacher's refined dense logits over the whole image (the official ``test_cfg``, ``mode='whole'``) or,
        with ``inference: slide``, averaged over ``crop`` windows every ``stride`` pixels (no padding: the teacher
        resizes each window itself)."""
        hp = self.hparams

        def fn(x: Tensor) -> Tensor:
            return self.teacher.dense_logits(
                x, self.text, mode=hp.teacher_mode, size=self.teacher_input(x), output_stride=hp.teacher_stride,
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
