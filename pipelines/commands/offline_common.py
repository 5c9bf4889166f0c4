"""What ``ovdistill proposals`` and ``ovdistill pseudo-label`` share: the model, data and Trainer built by
LightningCLI from the same ``-c`` files (and ``--trainer.*`` flags) as ``fit``, a trained checkpoint loaded
strictly, and the split to label."""
from __future__ import annotations

import argparse
from pathlib import Path

from distill.teacher_student import datamodule_vocabulary
from pipelines.offline.checkpoint import load_into, read_checkpoint


def build_offline(rest: list[str], ckpt: str, split: str):
    """(module with the checkpoint loaded strictly, the split's dataset without flips, the Trainer)."""
    from pipelines.cli import lightning_cli

    read_checkpoint(ckpt)  # fail on a bad file before building models
    cli = lightning_cli(rest, run=False, logger=False)
    module, dm, trainer = cli.model, cli.datamodule, cli.trainer
    if module.vocabulary is None:
        module._set_vocabulary(datamodule_vocabulary(dm, module.held_out))
    else:
        module.vocabulary.check_matches(datamodule_vocabulary(dm, module.held_out), "the model's vocabulary", "the datamodule's")
    load_into(module, ckpt)
    module.setup("predict")
    ds = dm.dataset(split)
    ds.flip = False
    return module, dm, ds, trainer


def offline_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint of a trained detector (`ovdistill fit`'s last.ckpt)")
    parser.add_argument("--out", required=True, help="file to write (atomically)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="the data module's split to run on")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step on each device")
    return parser


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"
