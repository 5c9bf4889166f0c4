"""Contrastive (CLIP) pre-training of the embedded teacher on captioned world scenes, as a LightningModule.

The model is a plain open_clip architecture declared by ``model_cfg``; the loss is open_clip's own
``ClipLoss`` (features gathered across DDP ranks). The result is saved as an open_clip state dict that
``OpenCLIPTeacher(model_name, pretrained=PATH, model_cfg=...)`` loads.
"""
from __future__ import annotations

import math

import lightning as L
import open_clip
import torch
from open_clip.timm_model import TimmModel

from distill import rng_state
from teachers import OpenCLIPTeacher
from teachers.dense import dilated_timm_trunk
from teachers.factory import register_model_cfg

from ..data.loaders import train_loader, train_position
from .pretrain_data import CaptionedScenes, collate_captions
from .shapes import SHAPES
from .zeroshot import crop_record

#: The embedded teacher: a timm ResNet-10-T image tower (average pool + linear projection) at 64 px and a
#: small text transformer, chosen over tiny open_clip ViT / ModifiedResNet towers because it learns shapes at
#: CPU budgets (README, "The synthetic world"). Its dense map is the projection at every position, at output
#: stride 8 (see teachers.dense).
EMBEDDED_TEACHER_NAME = "ovdistill-world-r10t"
EMBEDDED_TEACHER_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "timm_model_name": "resnet10t", "timm_pool": "avg", "timm_proj": "linear"},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 2},
}


class CLIPPretrainer(L.LightningModule):
    def __init__(
        self,
        model_name: str = EMBEDDED_TEACHER_NAME,
        model_cfg: dict | None = None,
        classes: tuple[str, ...] = SHAPES,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        batch_size: int = 128,
        num_samples: int = 20000,
        single_fraction: float = 0.5,
        seed: int = 0,
        eval_per_class: int = 20,
        num_workers: int = 1,
        group_size: int = 8,
        curriculum_steps: int = 0,
        init_logit_scale: float = 1 / 0.07,
        p_crop: float = 0.0,
        train_stride: int = 32,
    ):
        super().__init__()
        self.save_hyperparameters()
        cfg = model_cfg or EMBEDDED_TEACHER_CFG
        register_model_cfg(model_name, cfg)
        self.model = open_clip.create_model(model_name, pretrained=None)
        # CLIP's 1/0.07; a higher start (50) made no difference in our short runs
        with torch.no_grad():
            self.model.logit_scale.fill_(math.log(init_logit_scale))
        trunk = getattr(self.model.visual, "trunk", None)
        if hasattr(trunk, "init_weights"):
            # timm zero-initialises the last BN of every residual block; from scratch on a short run that
            # stalls early progress
            try:
                trunk.init_weights(zero_init_last=False)
            except TypeError:
                pass
        if train_stride != 32:
            # trained through the dilated trunk (a finer map under the pool); the weights, and so the export, are the
            # tower's own: the teacher is used as open_clip builds it, its dense map read at any stride
            if not isinstance(self.model.visual, TimmModel):
                raise ValueError(f"train_stride={train_stride} needs a timm CNN image tower; {model_name} has a "
                                 f"{type(self.model.visual).__name__}")
            self.model.visual.trunk = dilated_timm_trunk(self.model.visual.trunk, train_stride)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        # the model's own preprocessing statistics, as OpenCLIPTeacher will apply them at use time
        pp = open_clip.get_model_preprocess_cfg(self.model)
        self.register_buffer("pixel_mean", torch.tensor(pp["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pp["std"]).view(1, 3, 1, 1), persistent=False)
        self.loss_fn = None

    def setup(self, stage: str) -> None:
        self.loss_fn = open_clip.ClipLoss(
            local_loss=False, gather_with_grad=True, rank=self.global_rank, world_size=self.trainer.world_size
        )

    def train_dataloader(self):
        """Epoch 0 is the curriculum (``curriculum_steps`` batches of single objects named by shape alone,
        which trains like classification with learned text prototypes); epoch 1 the full caption stream.
        The trainer reloads this every epoch."""
        hp = self.hparams
        size = self.model.visual.image_size
        size = size if isinstance(size, int) else size[0]
        if self.current_epoch == 0 and hp.curriculum_steps > 0:
            ds = CaptionedScenes(
                hp.curriculum_steps * hp.batch_size, size, hp.seed + 1, tuple(hp.classes), single_fraction=1.0,
                p_colour=0.0, p_size=0.0, group_size=hp.group_size, p_background=0.0, p_crop=hp.p_crop,
            )
        else:
            ds = CaptionedScenes(
                hp.num_samples, size, hp.seed, tuple(hp.classes), hp.single_fraction, group_size=hp.group_size, p_crop=hp.p_crop
            )
        resume, self._resume = getattr(self, "_resume", None), None
        return train_loader(ds, hp.batch_size // hp.group_size, collate_captions, hp.num_workers, self.trainer, hp.seed, resume=resume)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[rng_state.KEY] = rng_state.capture()
        checkpoint["train_position"] = train_position(self.trainer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng_state.restore(checkpoint.get(rng_state.KEY))
        self._resume = checkpoint.get("train_position")

    def training_step(self, batch, batch_idx):
        images, captions = batch
        images = (images - self.pixel_mean) / self.pixel_std
        tokens = self.tokenizer(captions).to(self.device)
        img = self.model.encode_image(images, normalize=True)
        txt = self.model.encode_text(tokens, normalize=True)
        loss = self.loss_fn(img, txt, self.model.logit_scale.exp())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", self.model.logit_scale.exp(), prog_bar=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():  # CLIP clamps the temperature at 100
            self.model.logit_scale.clamp_(0, math.log(100))

    def zero_shot(self, per_class: int | None = None) -> dict:
        """Zero-shot accuracy on held-out crops under every crop protocol (``zeroshot.crop_record``)."""
        teacher = OpenCLIPTeacher.from_model(self.model, self.hparams.model_name)
        return crop_record(teacher, self.hparams.classes, per_class=per_class or self.hparams.eval_per_class)

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr
        )
        total = self.trainer.estimated_stepping_batches

        def schedule(step):
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, schedule), "interval": "step"}}
