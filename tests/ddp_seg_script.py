"""Run by tests/test_seg_ddp.py in a fresh process: fit + validate LSeg + dense distillation (second head, ensemble) under 2-process DDP."""
from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")

import lightning as L  # noqa: E402
from conftest import TINY_RN, make_teacher, tiny_segmenter  # noqa: E402
from ddp_harness import fit_validate_save  # noqa: E402

from distill.seg_modules import LSegDenseDistill  # noqa: E402
from pipelines.data.seg_datamodule import WorldSegDataModule  # noqa: E402


def main(world: str, out: str, devices: int) -> None:
    L.seed_everything(0)
    teacher = make_teacher("ddp-rn", TINY_RN)
    module = LSegDenseDistill(teacher, tiny_segmenter(teacher.embed_dim, image_head=True), teacher_stride=8, lr=1e-2, ensemble=True)
    fit_validate_save(module, WorldSegDataModule(world, batch_size=4, eval_batch_size=2), out, devices)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
