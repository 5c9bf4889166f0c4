"""``ovdistill pretrain-teacher`` and ``ovdistill teacher-trunk``: train / export the embedded teacher
(library: ``pipelines.world.pretrain_run``, ``pipelines.world.teacher``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.world.pretrain import EMBEDDED_TEACHER_NAME
from pipelines.world.pretrain_run import pretrain_teacher
from pipelines.world.teacher import load_shipped_teacher, load_teacher_dir, save_trunk_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill pretrain-teacher", description=__doc__)
    parser.add_argument("--out", required=True, help="directory for checkpoints and the exported teacher")
    parser.add_argument("--steps", type=int, default=2400, help="optimiser steps (more than a finished run's: training continues)")
    parser.add_argument("--batch-size", type=int, default=128, help="image-caption pairs per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (linear warm-up, cosine decay)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the caption data stream and the initial weights")
    parser.add_argument("--ckpt-every", type=int, default=100, help="write OUT/checkpoints/last.ckpt every N steps (resume point)")
    parser.add_argument("--p-crop", type=float, default=0.5,
                        help="share of caption groups that are cropped views (objects framed tightly to loosely, bare background)")
    parser.add_argument("--fp32", action="store_true", help="export fp32 weights (default: fp16, half the size)")
    parser.add_argument("--model-name", default=EMBEDDED_TEACHER_NAME,
                        help="name of the architecture (give another name with --model-cfg)")
    parser.add_argument("--model-cfg", default=None,
                        help="another open_clip architecture, trained by the same recipe: a JSON file holding an open_clip "
                             "model config, or an exported teacher.json (its model_cfg)")
    parser.add_argument("--init-from", default=None,
                        help="start from an exported teacher's weights (a pretrain-teacher --out directory, or 'shipped') "
                             "instead of random ones, and its architecture unless --model-cfg names another; no single-object curriculum then")
    parser.add_argument("--train-stride", type=int, choices=(8, 16, 32), default=32,
                        help="train a timm CNN tower through its trunk dilated to this output stride (a finer map under the "
                             "pool); the exported tower is the plain one")
    args = parser.parse_args(argv)
    cfg = None if args.model_cfg is None else read_model_cfg(args.model_cfg)
    try:
        out = pretrain_teacher(args.out, args.steps, args.batch_size, args.lr, args.seed, half=not args.fp32, ckpt_every=args.ckpt_every,
                               p_crop=args.p_crop, model_name=args.model_name, model_cfg=cfg, init_from=args.init_from,
                               train_stride=args.train_stride)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"ovdistill pretrain-teacher: {err}") from None
    teacher, meta = load_teacher_dir(out)
    for protocol, acc in meta["zero_shot_crop_accuracy"].items():
        if isinstance(acc, dict):
            per_class = ", ".join(f"{c} {v:.1f}" for c, v in acc["per_class"].items())
            print(f"teacher {teacher.name}, {protocol}: zero-shot accuracy {acc['mean']:.1f}% ({per_class})")
    return 0


def read_model_cfg(path: str) -> dict:
    """An open_clip model config from ``path``: the file itself, or the ``model_cfg`` of an exported teacher.json."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"--model-cfg {path}: cannot read a JSON model config ({err})") from None
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else data
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise SystemExit(f"--model-cfg {path}: an open_clip model config needs {missing} (a dict with embed_dim, vision_cfg, "
                         "text_cfg, or a teacher.json with model_cfg)")
    return cfg


def main_trunk(argv: list[str] | None = None) -> int:
    """``ovdistill teacher-trunk --out FILE``: the embedded teacher's image trunk as student initial weights."""
    parser = argparse.ArgumentParser(prog="ovdistill teacher-trunk", description=main_trunk.__doc__)
    parser.add_argument("--out", required=True, help="weights file to write")
    parser.add_argument("--layout", choices=("smp", "timm"), default="smp",
                        help="smp: PixelEmbeddingSegmenter(encoder_name='tu-resnet10t'); timm: RegionEmbeddingDetector(backbone='timm:resnet10t')")
    parser.add_argument("--teacher", default=None, help="a pretrain-teacher output directory (default: the shipped teacher)")
    args = parser.parse_args(argv)
    teacher, _ = load_teacher_dir(args.teacher) if args.teacher else load_shipped_teacher()
    print(f"wrote {save_trunk_weights(teacher, args.out, args.layout)}")
    return 0
