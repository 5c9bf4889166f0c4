"""``ovdistill pretrain-teacher``: train the embedded teacher and export it as an open_clip checkpoint.

Training is resumable: Lightning checkpoints go to ``OUT/checkpoints`` (``last.ckpt``) and a second run
with the same ``--out`` continues from there. The export (``teacher.pt`` + ``teacher.json``) is written
atomically, the JSON last, so a directory with ``teacher.json`` always holds a complete teacher.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from pipelines.atomic import save_json, save_torch
from pipelines.embedded_teacher import TEACHER_JSON, TEACHER_PT, load_teacher_dir
from pipelines.world import WORLD_VERSION
from pipelines.world.pretrain import EMBEDDED_TEACHER_CFG, EMBEDDED_TEACHER_NAME, CLIPPretrainer


def check_resume_recipe(out: Path, recipe: dict, resuming: bool) -> None:
    """A run resumed from ``out`` must use the recipe it started with (its record would lie otherwise); only
    ``steps`` may grow (training continues)."""
    path = out / "recipe.json"
    if resuming and path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in recipe.items() if old.get(k) != v}
        if set(diff) == {"steps"} and recipe["steps"] > old.get("steps", 0):
            diff = {}  # more steps of the same recipe: training continues, and the record says so
        if diff:
            changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
            raise ValueError(
                f"{out} holds a run started with another recipe ({changes}); resuming it would train the old recipe and "
                "record the new one. Use a new --out, or the original settings"
            )
    save_json(recipe, path)


def pretrain_teacher(
    out: str | Path,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    half: bool = True,
    eval_per_class: int = 40,
    progress: bool = True,
    num_workers: int = 1,
    curriculum_steps: int | None = None,
) -> Path:
    """Train (or resume) the embedded teacher into ``out`` and export it; returns ``out``."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, verbose=False)
    curriculum = steps * 3 // 10 if curriculum_steps is None else curriculum_steps
    module = CLIPPretrainer(
        model_cfg=EMBEDDED_TEACHER_CFG, lr=lr, batch_size=batch_size, num_samples=(steps - curriculum) * batch_size,
        seed=seed, warmup_steps=min(100, max(1, steps // 10)), num_workers=num_workers, curriculum_steps=curriculum,
    )
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    recipe = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "curriculum_steps": curriculum}
    check_resume_recipe(out, recipe, last.is_file())
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,  # max_steps decides; a resumed run with more steps keeps going
        reload_dataloaders_every_n_epochs=1,
        logger=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=ckpt_dir, save_last=True, every_n_train_steps=max(1, min(200, steps)), enable_version_counter=False
            )
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module, ckpt_path=str(last) if last.is_file() else None)
    train_s = time.time() - start
    accuracy, per_class = module.zero_shot(eval_per_class)
    state = module.model.state_dict()
    if half:  # halves the shipped file; OpenCLIPTeacher loads it back into fp32 parameters
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_torch(state, out / TEACHER_PT)
    save_json(
        {
            "model_name": EMBEDDED_TEACHER_NAME,
            "model_cfg": EMBEDDED_TEACHER_CFG,
            "world_version": WORLD_VERSION,
            "recipe": recipe,
            "train_seconds": round(train_s, 1),
            "zero_shot_crop_accuracy": {"mean": accuracy, "per_class": per_class, "per_class_crops": eval_per_class},
        },
        out / TEACHER_JSON,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill pretrain-teacher", description=__doc__)
    parser.add_argument("--out", required=True, help="directory for checkpoints and the exported teacher")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fp32", action="store_true", help="export fp32 weights (default: fp16, half the size)")
    args = parser.parse_args(argv)
    torch.set_float32_matmul_precision("high")
    out = pretrain_teacher(args.out, args.steps, args.batch_size, args.lr, args.seed, half=not args.fp32)
    teacher, meta = load_teacher_dir(out)
    acc = meta["zero_shot_crop_accuracy"]
    print(f"teacher {teacher.name}: zero-shot crop accuracy {acc['mean']:.1f}%")
    for name, value in acc["per_class"].items():
        print(f"  {name:<10} {value:5.1f}%")
    return 0


def main_trunk(argv: list[str] | None = None) -> int:
    """``ovdistill teacher-trunk --out FILE``: the embedded teacher's image trunk as student initial weights."""
    from pipelines.embedded_teacher import load_shipped_teacher, load_teacher_dir, save_trunk_weights

    parser = argparse.ArgumentParser(prog="ovdistill teacher-trunk", description=main_trunk.__doc__)
    parser.add_argument("--out", required=True, help="weights file to write")
    parser.add_argument("--layout", choices=("smp", "timm"), default="smp",
                        help="smp: PixelEmbeddingSegmenter(encoder_name='tu-resnet10t'); timm: RegionEmbeddingDetector(backbone='timm:resnet10t')")
    parser.add_argument("--teacher", default=None, help="a pretrain-teacher output directory (default: the shipped teacher)")
    args = parser.parse_args(argv)
    teacher, _ = load_teacher_dir(args.teacher) if args.teacher else load_shipped_teacher()
    print(f"wrote {save_trunk_weights(teacher, args.out, args.layout)}")
    return 0
