"""LightningModules for open-vocabulary detection: ViLD (text / image / ensemble), pseudo-box training,
a closed-vocabulary base-only detector and the teacher-on-proposals (CLIP-on-crops) baseline.

Targets carry labels as indices into ``class_names`` (``pipelines.data.det_datamodule``). Training maps
them onto the training vocabulary (base classes, or all for pseudo-box training) as torchvision wants
(1..K, 0 = background); evaluation scores every class against the teacher's text embeddings and feeds
``OpenVocabDetectionAP`` (and ``LVISDetectionAP`` when ``lvis_json`` is given). Teacher region
embeddings for ViLD-image come from ``target["teacher_regions"]`` (an offline proposals file) or live.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from teachers.prompts import text_embeddings

from .det_losses import crop_class_scores, remap_labels, vild_image_loss
from .lr_schedule import LRSchedule, with_schedule
from .metrics import LVISDetectionAP, OpenVocabDetectionAP
from .regions import teacher_region_embeddings
from .teacher_student import TeacherStudentModule
from .vocabulary import Vocabulary


class OpenVocabDetModule(TeacherStudentModule):
    """Vocabulary, text embeddings, evaluation; subclasses define ``training_step`` (and the classifier)."""

    held_out = "novel"
    task = "detection"

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module | None = None,
        class_names: list[str] | None = None, novel: list[str] | None = None,
        templates: str | list[str] = "simple",
        prompts: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools",
        max_detections: int = 100,
        lvis_json: str | None = None,
        region_teacher: Literal["crop", "dense"] = "crop",
        region_stride: int | None = None,
        lr_schedule: LRSchedule = "constant",
        warmup_steps: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["teacher", "student"])
        self.novel_names = list(novel) if novel is not None else None
        self._init_pair(teacher, student, class_names, novel)

    # ------------------------------------------------------------------ vocabulary
    def _set_vocabulary(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        class_names = list(vocabulary.names)
        self.class_names, self.novel_names = class_names, list(vocabulary.held_out)
        self.novel_ids = vocabulary.held_out_ids
        self.base_ids = vocabulary.seen_ids
        hp = self.hparams
        self.val_metric = OpenVocabDetectionAP(class_names, self.novel_ids, hp.backend, hp.max_detections)
        self.test_metric = OpenVocabDetectionAP(class_names, self.novel_ids, hp.backend, hp.max_detections)
        self.lvis_metric = LVISDetectionAP(hp.lvis_json) if hp.lvis_json else None
        if self.lvis_metric is not None and self.lvis_metric.class_names != self.class_names:
            raise ValueError(f"class_names do not follow the categories of {hp.lvis_json} (sorted by id)")

    def setup(self, stage: str) -> None:
        self._vocabulary_from_datamodule()
        for m in (self.val_metric, self.test_metric, self.lvis_metric):
            if m is not None:
                m.to(self.device)
        self.set_buffer("text", text_embeddings(self.teacher, self.class_names, self.hparams.templates, self.hparams.prompts))
        novel_mask = torch.zeros(len(self.class_names), dtype=torch.bool)
        novel_mask[self.novel_ids] = True
        self.set_buffer("novel_mask", novel_mask)

    # ------------------------------------------------------------------ training helpers
    def train_classes(self) -> list[int]:
        """Class indices the training loss classifies over (base by default)."""
        return self.base_ids

    def train_targets(self, targets: list[dict]) -> list[dict]:
        """Targets relabelled 1..K over ``train_classes()`` (0 is background in torchvision)."""
        classes = self.train_classes()
        return [
            {"boxes": t["boxes"], "labels": remap_labels(t["labels"], classes, self.class_names, t.get("image_id"))} for t in targets
        ]

    def train_text(self) -> Tensor:
        return self.text[self.train_classes()]

    def teacher_regions(self, images: list[Tensor], boxes: list[Tensor], scales) -> Tensor:
        """The teacher's region embeddings by this run's ``region_teacher`` (crops, or pooled from a dense map)."""
        hp = self.hparams
        return teacher_region_embeddings(self.teacher, images, boxes, scales, hp.region_teacher, hp.region_stride)

    def configure_optimizers(self):
        """AdamW, with the learning-rate schedule ``lr_schedule`` (ViLD's own: ``step``; see distill.lr_schedule)."""
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        return with_schedule(opt, hp.lr_schedule, lambda: self.trainer.estimated_stepping_batches, hp.warmup_steps)

    # ------------------------------------------------------------------ evaluation
    def detect(self, images: list[Tensor]) -> list[dict]:
        """Detections with ``labels`` indexing ``class_names``."""
        preds = self.student(images, text=self.text, **self.scoring_kwargs())
        return [{**p, "labels": p["labels"] - 1} for p in preds]

    def scoring_kwargs(self) -> dict:
        return {}

    def _evaluate(self, batch, metric: OpenVocabDetectionAP) -> None:
        images, targets = batch
        preds = self.detect(images)
        metric.update(preds, targets)
        if self.lvis_metric is not None:
            self.lvis_metric.update(preds, targets)

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_metric)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metric)

    def predict_step(self, batch, batch_idx):
        return self.detect(batch[0])

    def metric_results(self, metric) -> dict:
        out = metric.compute()
        if self.lvis_metric is not None:
            out.update({f"lvis_{k}": v for k, v in self.lvis_metric.compute().items()})
            self.lvis_metric.reset()
        return out


def check_region_teacher(meta: dict, teacher, region_teacher: str = "crop") -> None:
    """Stored teacher region embeddings must come from this run's teacher (same name, weights and dim) and
    region teacher (crop or dense-pooled)."""
    if not meta or meta.get("teacher_dim") is None:
        return
    if meta.get("region_teacher", "crop") != region_teacher:
        raise ValueError(
            f"proposals file {meta.get('path')} holds {meta.get('region_teacher', 'crop')} region embeddings but this run's "
            f"region_teacher is {region_teacher!r}; recompute it with `ovdistill proposals` and this config"
        )
    name = getattr(teacher, "name", "")
    if meta.get("teacher") != name or meta["teacher_dim"] != teacher.embed_dim:
        raise ValueError(
            f"proposals file {meta.get('path')} holds {meta['teacher_dim']}-d region embeddings of teacher "
            f"{meta.get('teacher')!r}, but this run distils teacher {name!r} ({teacher.embed_dim}-d); recompute it with "
            "`ovdistill proposals` and this config's teacher"
        )


class ViLD(OpenVocabDetModule):
    """ViLD: text loss over base classes + background (τ in the student), optional ViLD-image L1 loss.

    ``image_weight`` > 0 adds the L1 distance between the region embeddings of the first
    ``image_regions`` offline proposals per image (``target["proposals"]``) and the teacher's embeddings
    of the same boxes. ``ensemble=True`` needs a student built with ``image_head=True``: the image loss
    trains that head, and inference blends both heads with ``ensemble_lambda`` (ViLD-ensemble).
    """

    def __init__(
        self, *args, image_weight: float = 0.0, image_regions: int = 100, ensemble: bool = False,
        ensemble_lambda: float = 2 / 3, region_scales: tuple[float, ...] = (1.0, 1.5), **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters(ignore=["teacher", "student"])
        if ensemble and image_weight <= 0:
            raise ValueError("ensemble=True trains the image head with the ViLD-image loss: set image_weight > 0")
        if ensemble and getattr(self.student.predictor, "image_proj", None) is None:
            raise ValueError("ensemble=True needs a student built with image_head=True")

    def scoring_kwargs(self) -> dict:
        hp = self.hparams
        return {"novel_mask": self.novel_mask, "ensemble_lambda": hp.ensemble_lambda} if hp.ensemble else {}

    def on_train_start(self) -> None:
        # the training dataloader (and with it the proposals file) exists by now
        if self.hparams.image_weight > 0:
            check_region_teacher(getattr(self.trainer.datamodule, "proposals_meta", None), self.teacher, self.hparams.region_teacher)

    def image_targets(self, images: list[Tensor], targets: list[dict]) -> tuple[list[Tensor], Tensor]:
        n = self.hparams.image_regions
        missing = [t.get("image_id") for t in targets if "proposals" not in t]
        if missing:
            raise ValueError(f"ViLD-image needs offline proposals (datamodule `proposals`); images {missing[:5]} have none")
        regions = [t["proposals"][:n].to(self.device) for t in targets]
        if all("teacher_regions" in t for t in targets):
            teacher = torch.cat([t["teacher_regions"][:n] for t in targets]).to(self.device)
        else:
            teacher = self.teacher_regions(images, regions, self.hparams.region_scales)
        return regions, F.normalize(teacher.float(), dim=-1)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        hp = self.hparams
        tgt = self.train_targets(targets)
        if hp.image_weight > 0:
            regions, teacher = self.image_targets(images, targets)
            head = "image" if hp.ensemble else "text"
            losses, emb = self.student.forward_with_regions(images, tgt, self.train_text(), regions, head)
            losses["loss_vild_image"] = hp.image_weight * vild_image_loss(emb, teacher)
        else:
            losses = self.student(images, tgt, text=self.train_text())
        loss = sum(losses.values())
        self.log_dict({f"train/{k}": v for k, v in losses.items()})
        self.log("train/loss", loss, prog_bar=True)
        return loss


class PseudoBoxDetector(ViLD):
    """Pseudo-box self-training: ViLD-text over *all* classes on gold base boxes + pseudo boxes of novel classes."""

    def train_classes(self) -> list[int]:
        return list(range(len(self.class_names)))


class BaseOnlyDetector(OpenVocabDetModule):
    """Closed-vocabulary baseline: learned class embeddings for the base classes, no teacher text.

    It can only ever name base classes, so its novel AP is zero by construction: the row shows what
    open-vocabulary training adds.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, *args, **kwargs):
        super().__init__(teacher, student, *args, **kwargs)
        if self.vocabulary is None:
            raise ValueError(
                "BaseOnlyDetector learns one embedding per base class and creates them at construction: give "
                "class_names and novel (the datamodule's), e.g. model.init_args.class_names / novel in the config"
            )
        g = torch.Generator().manual_seed(0)
        self.class_embeddings = nn.Parameter(torch.randn(len(self.base_ids), teacher.embed_dim, generator=g))

    def train_text(self) -> Tensor:
        return F.normalize(self.class_embeddings, dim=-1)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.student(images, self.train_targets(targets), text=self.train_text())
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def detect(self, images: list[Tensor]) -> list[dict]:
        base = torch.tensor(self.base_ids, device=self.device)
        preds = self.student(images, text=self.train_text())
        return [{**p, "labels": base[p["labels"] - 1]} for p in preds]


class TeacherOnProposals(OpenVocabDetModule):
    """CLIP-on-crops baseline: a base-trained RPN proposes, the teacher classifies each crop (1× + 1.5×).

    score(box, k) = softmax(scale · cos(teacher region, text))_k × objectness; per-class NMS, top
    ``max_detections``. The student is only the proposer (its RPN); nothing is trained.
    """

    def __init__(
        self, teacher: nn.Module, student: nn.Module, *args, teacher_scale: float = 100.0, top_proposals: int = 100,
        nms_iou: float = 0.5, region_scales: tuple[float, ...] = (1.0, 1.5), **kwargs,
    ):
        super().__init__(teacher, student, *args, **kwargs)

    def detect(self, images: list[Tensor]) -> list[dict]:
        hp = self.hparams
        boxes, objectness = self.student.propose(images)
        boxes = [b[: hp.top_proposals] for b in boxes]
        objectness = [o[: hp.top_proposals] for o in objectness]
        emb = self.teacher_regions(images, boxes, hp.region_scales).split([len(b) for b in boxes])
        out = []
        for b, o, e in zip(boxes, objectness, emb, strict=True):
            p = crop_class_scores(e, self.text, o, hp.teacher_scale)
            scores = p.flatten()
            labels = torch.arange(p.shape[1], device=p.device).repeat(len(b))
            rep = b.repeat_interleave(p.shape[1], 0)
            keep = batched_nms(rep, scores, labels, hp.nms_iou)[: hp.max_detections]
            out.append({"boxes": rep[keep], "scores": scores[keep], "labels": labels[keep]})
        return out

    def configure_optimizers(self):
        return None
