"""Run by tests/test_det_ddp.py in a fresh process: fit + validate ViLD-ensemble under 2-process DDP."""
from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
from conftest import TINY_RN, make_teacher  # noqa: E402
from ddp_harness import fit_validate_save  # noqa: E402
from test_det_parts import tiny_detector  # noqa: E402

from distill.det_modules import ViLD  # noqa: E402
from pipelines.data.det_datamodule import WorldDetDataModule  # noqa: E402


def build(world: str, proposals: str):
    teacher = make_teacher("ddp-det-rn", TINY_RN)
    module = ViLD(teacher, tiny_detector(image_head=True), lr=1e-3, image_weight=0.5, image_regions=4, ensemble=True)
    return module, WorldDetDataModule(world, batch_size=2, eval_batch_size=3, proposals=proposals)


if __name__ == "__main__":
    L.seed_everything(0)
    fit_validate_save(*build(sys.argv[1], sys.argv[2]), sys.argv[3], int(sys.argv[4]))
