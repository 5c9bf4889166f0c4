"""Run by tests/test_prompts.py in a fresh process: fit + validate prompt tuning (DetPro) under 2-process DDP."""
from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
from conftest import TINY_RN, make_teacher  # noqa: E402
from ddp_harness import fit_validate_save  # noqa: E402

from distill.prompt_modules import PromptTuning  # noqa: E402
from pipelines.data.det_datamodule import WorldDetDataModule  # noqa: E402


def build(world: str):
    module = PromptTuning(make_teacher("ddp-prompt-rn", TINY_RN), method="detpro", n_ctx=4, lr=1e-2, proposals_per_image=8)
    return module, WorldDetDataModule(world, batch_size=2, eval_batch_size=3)


if __name__ == "__main__":
    L.seed_everything(0)
    fit_validate_save(*build(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
