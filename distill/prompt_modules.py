"""Prompt learning on base classes with the teacher frozen: CoOp on labelled crops, DetPro on proposals.

- ``coop``: the teacher embeds each base box (1x crop); logits are ``logit_scale * region @ prompts(base)ᵀ``;
  cross-entropy against the box's class (CoOp, with crops as its labelled images).
- ``detpro``: proposals (a stored proposals file, else boxes sampled around and away from the base boxes)
  with IoU >= ``fg_iou`` to a base box are pulled to its class; those below ``bg_iou`` are pushed to the
  uniform distribution over base classes (DetPro's background objective), weighted by ``bg_weight``.

Only the context vectors learn (the teacher is frozen and outside the optimiser). Validation reports the
crop accuracy (mean over classes) on base and novel classes, the held-out names embedded with the same
context. ``export(path)`` writes the prompt file the methods' ``prompts:`` option reads.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.ops import box_iou

from teachers.prompts import PromptLearner

from .det_losses import remap_labels
from .regions import teacher_region_embeddings
from .teacher_student import TeacherStudentModule
from .vocabulary import Vocabulary


def sample_boxes(gt: Tensor, size: tuple[int, int], n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` boxes inside an image of ``size`` (h, w): half jittered copies of ``gt`` (foreground-ish), half anywhere."""
    h, w = size
    n_fg = n // 2 if len(gt) else 0
    out = []
    if n_fg:
        pick = gt[torch.randint(0, len(gt), (n_fg,), generator=generator)]
        wh = (pick[:, 2:] - pick[:, :2]).clamp_min(1)
        shift = (torch.rand(n_fg, 4, generator=generator) - 0.5) * 0.4 * wh.repeat(1, 2)
        out.append(pick + shift)
    xy = torch.rand(n - n_fg, 2, generator=generator) * torch.tensor([w, h])
    wh = (0.1 + 0.5 * torch.rand(n - n_fg, 2, generator=generator)) * torch.tensor([w, h])
    out.append(torch.cat([xy, xy + wh], 1))
    boxes = torch.cat(out)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, h)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 2) & ((boxes[:, 3] - boxes[:, 1]) >= 2)
    return boxes[keep]


class PromptTuning(TeacherStudentModule):
    held_out = "novel"
    task = "prompts"

    def __init__(
        self,
        teacher: nn.Module,
        class_names: list[str] | None = None,
        novel: list[str] | None = None,
        method: Literal["coop", "detpro"] = "coop",
        n_ctx: int = 16,
        init: str | None = None,
        class_specific: bool = False,
        position: Literal["end", "middle"] = "end",
        lr: float = 2e-3,
        fg_iou: float = 0.5,
        bg_iou: float = 0.5,
        bg_weight: float = 1.0,
        proposals_per_image: int = 32,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["teacher"])
        # unified context needs no class names, so it exists before any checkpoint is loaded into it
        self.prompt: PromptLearner | None = None if class_specific else PromptLearner(teacher, n_ctx, init, position=position)
        self._init_pair(teacher, None, class_names, novel)

    def _set_vocabulary(self, vocabulary: Vocabulary) -> None:
        self.vocabulary, self.class_names = vocabulary, list(vocabulary.names)
        self.base_ids, self.novel_ids = vocabulary.seen_ids, vocabulary.held_out_ids
        hp = self.hparams
        if self.prompt is None:  # class-specific context: built once the class names are known
            base = [self.class_names[i] for i in self.base_ids]
            self.prompt = PromptLearner(self.teacher, hp.n_ctx, hp.init, hp.class_specific, base if hp.class_specific else None, hp.position)
        k = len(self.class_names)
        self.val_accuracy = MulticlassConfusionMatrix(num_classes=k)
        self.test_accuracy = MulticlassConfusionMatrix(num_classes=k)

    def setup(self, stage: str) -> None:
        self._vocabulary_from_datamodule()
        for m in (self.val_accuracy, self.test_accuracy):
            m.to(self.device)

    @property
    def logit_scale(self) -> Tensor:
        scale = getattr(self.teacher.model, "logit_scale", None)
        return scale.exp().detach() if scale is not None else torch.tensor(100.0)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        names = [self.class_names[i] for i in self.base_ids]
        text = self.prompt(names)
        if self.hparams.method == "coop":
            boxes = [t["boxes"] for t in targets]
            if not sum(len(b) for b in boxes):
                return None  # no labelled crop in this batch
            feats = teacher_region_embeddings(self.teacher, images, boxes, scales=(1.0,))
            labels = torch.cat([remap_labels(t["labels"], self.base_ids, self.class_names, t.get("image_id")) for t in targets]) - 1
            loss = F.cross_entropy(self.logit_scale * feats @ text.T, labels)
        else:
            loss = self._detpro_loss(images, targets, text)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def _detpro_loss(self, images: list[Tensor], targets: list[dict], text: Tensor) -> Tensor:
        hp = self.hparams
        props = [t["proposals"] if "proposals" in t else sample_boxes(t["boxes"].cpu(), img.shape[-2:], hp.proposals_per_image).to(img.device)
                 for img, t in zip(images, targets, strict=True)]
        feats = teacher_region_embeddings(self.teacher, images, props, scales=(1.0,))
        fg_labels, is_fg, is_bg = [], [], []
        for p, t in zip(props, targets, strict=True):
            if len(t["boxes"]):
                iou, idx = box_iou(p, t["boxes"]).max(1)
                labels = remap_labels(t["labels"], self.base_ids, self.class_names, t.get("image_id"))[idx] - 1
            else:
                iou, labels = torch.zeros(len(p), device=p.device), torch.zeros(len(p), dtype=torch.long, device=p.device)
            fg_labels.append(labels)
            is_fg.append(iou >= hp.fg_iou)
            is_bg.append(iou < hp.bg_iou)
        logp = (self.logit_scale * feats @ text.T).log_softmax(-1)
        fg, bg, labels = torch.cat(is_fg), torch.cat(is_bg), torch.cat(fg_labels)
        loss = logp.sum() * 0.0  # keeps the graph when a batch has neither kind
        if fg.any():
            loss = loss + F.nll_loss(logp[fg], labels[fg])
        if bg.any():  # cross-entropy to the uniform distribution over base classes
            loss = loss + hp.bg_weight * (-logp[bg].mean(-1)).mean()
        return loss

    def _evaluate(self, batch, metric) -> None:
        images, targets = batch
        boxes = [t["boxes"] for t in targets]
        if not sum(len(b) for b in boxes):
            return
        with torch.no_grad():
            feats = teacher_region_embeddings(self.teacher, images, boxes, scales=(1.0,))
            preds = (feats @ self._eval_text.T).argmax(-1)
        metric.update(preds, torch.cat([t["labels"] for t in targets]))

    def _embed_all(self) -> None:
        """Every class (held-out ones too) through the context once per evaluation pass, not once per batch."""
        with torch.no_grad():
            self._eval_text = self.prompt(self.class_names)

    def on_validation_epoch_start(self):
        self._embed_all()

    def on_test_epoch_start(self):
        self._embed_all()

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_accuracy)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_accuracy)

    def metric_results(self, metric) -> dict:
        """Mean per-class crop accuracy (percent) over the classes with crops; NaN where a group has none."""
        confusion = metric.compute().double()  # synced across processes
        support = confusion.sum(1)
        per_class = confusion.diagonal() / support.clamp_min(1) * 100

        def mean(ids: list[int]) -> float:
            ids = [i for i in ids if support[i] > 0]
            return float(per_class[ids].mean()) if ids else float("nan")

        return {"acc_base": mean(self.base_ids), "acc_novel": mean(self.novel_ids), "acc": mean(self.base_ids + self.novel_ids)}

    def on_validation_epoch_end(self):
        self._log_metric(self.val_accuracy, "val")

    def on_test_epoch_end(self):
        self._log_metric(self.test_accuracy, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.prompt.parameters(), lr=self.hparams.lr, momentum=0.9)

    def export(self, path):
        return self.prompt.save(path)
