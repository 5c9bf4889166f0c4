"""Does the pooling the teacher is trained with decide whether its dense map localises? CLIPpy's question, in the world.

    python benchmarks/pool_probe.py --out runs/pool-max-os8 --pool max --stride 8   # fine-tunes (16 min on 2 cores), then scores
    python benchmarks/pool_probe.py --out runs/pool-avg-os8 --pool avg --stride 8   # the same map, average pool
    python benchmarks/pool_probe.py --out runs/pool-avg-os32 --pool avg --stride 32  # the control: the same steps only

The shipped teacher is trained at 64 px through ResNet-10-T at output stride 32: a 2 x 2 map, averaged. Its dense map is
read at 96 px and stride 8 (12 x 12), where it names the background beside an object as the object (README, "The
synthetic world"). Average pooling rewards exactly that: the more positions carry an object's evidence, the larger its
share of the mean. CLIPpy (Ranasinghe et al., ICCV 2023) reports that max pooling over the spatial features, with
nothing else changed in contrastive training, makes the per-position embeddings localise, background included.

The probe fine-tunes the shipped teacher on the shipped recipe's caption generator, with another seed (open_clip's
contrastive loss; no boxes, masks or labels), its trunk dilated to ``--stride`` (so the pooled map is ``64 / stride``
cells wide, 4 x 4 at 16) and ``--pool`` as the global pool; the control is the average pool at stride 32 (the same
steps, nothing else changed). Each probe and the shipped teacher are scored on a world split (choose on ``val``)
as ``benchmarks/tower_probe.py`` scores towers: tight crops, MaskCLIP dense mIoU seen / unseen (hIoU) per input size at
stride 8, and where the background mistakes lie. The probe's dense map is the projection at every position, the same
readout as the shipped teacher's (for a max-pooled tower this is CLIPpy's). The answer is in the README.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from bench_common import dense_table_header, scoring_world

from pipelines.bench.mission import demo_spec
from pipelines.data.atomic import save_json, save_torch
from pipelines.world.pretrain import EMBEDDED_TEACHER_CFG, CLIPPretrainer
from pipelines.world.pretrain_run import load_starting_weights
from pipelines.world.spec import WORLD_VERSION
from pipelines.world.teacher import TEACHER_JSON, TEACHER_PT, load_shipped_teacher, load_teacher_dir
from pipelines.world.zeroshot import crop_record, dense_quality
from teachers.dense import dilated_timm_trunk


def probe_cfg(pool: str) -> dict:
    return {**EMBEDDED_TEACHER_CFG, "vision_cfg": {**EMBEDDED_TEACHER_CFG["vision_cfg"], "timm_pool": pool}}


def fine_tune(out: Path, pool: str, stride: int, steps: int, lr: float, seed: int = 0) -> None:
    name = f"ovdistill-world-r10t-{pool}-os{stride}-probe"
    L.seed_everything(seed, verbose=False)
    module = CLIPPretrainer(model_name=name, model_cfg=probe_cfg(pool), lr=lr, batch_size=128, num_samples=steps * 128,
                            seed=seed + 7, warmup_steps=min(50, steps // 10), curriculum_steps=0, p_crop=0.5)
    load_starting_weights(module.model, "shipped")
    module.model.visual.trunk = dilated_timm_trunk(module.model.visual.trunk, stride)
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        log_every_n_steps=10)
    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(module)
    state = {k: v.half() if v.is_floating_point() else v for k, v in module.model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    save_torch(state, out / TEACHER_PT)
    save_json({"model_name": name, "model_cfg": probe_cfg(pool), "world_version": WORLD_VERSION,
               "recipe": {"from": "the shipped teacher", "pool": pool, "stride": stride, "steps": steps, "lr": lr, "p_crop": 0.5},
               "command": f"python benchmarks/pool_probe.py --out OUT --pool {pool} --stride {stride} --steps {steps} --lr {lr}",
               "train_seconds": round(time.time() - start, 1)}, out / TEACHER_JSON)


def tight_crops(teacher, split: str) -> str:
    tight = next(iter(crop_record(teacher, demo_spec(False, 0).classes, 40, 1 if split == "val" else 0).values()))
    return f"{tight['mean']:.1f} / {min(tight['per_class'].values()):.1f}"


def scores(teacher, world: Path, split: str, sizes: list[int], stride: int, plain=None) -> list[str]:
    """The table's cells; ``plain``: the same weights as open_clip builds the tower (stride 32), whose crops are shown too."""
    cells = [tight_crops(teacher, split) + ("" if plain is None else f" (stride 32: {tight_crops(plain, split)})")]
    for size in sizes:
        with torch.no_grad():
            d = dense_quality(teacher, world, split, size=(size, size), output_stride=stride)
        cells.append(f"{float(d['mIoU_seen']):.1f} / {float(d['mIoU_unseen']):.1f} ({float(d['hIoU']):.1f}); "
                     f"{d['background_near_error']:.0f} % / {d['background_far_error']:.0f} %")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the probe teacher's directory (fine-tuned there unless it holds one)")
    parser.add_argument("--pool", choices=["max", "avg"], default="max")
    parser.add_argument("--stride", type=int, choices=[8, 16, 32], default=16, help="the trunk's output stride in training")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--read-stride", type=int, default=8, help="the output stride the dense maps are read at")
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / TEACHER_JSON).is_file():
        fine_tune(out, args.pool, args.stride, args.steps, args.lr)
    plain, probe = load_teacher_dir(out)[0], load_teacher_dir(out)[0]
    # crops go through the trunk at the stride it was trained at (the dense maps are read at --read-stride either way);
    # the demo's teacher passes run the tower as open_clip builds it (stride 32), so its crops are shown too
    probe.model.visual.trunk = dilated_timm_trunk(probe.model.visual.trunk, args.stride).eval().requires_grad_(False)
    rows = {"shipped": (load_shipped_teacher()[0], None), f"{args.pool} pool, stride {args.stride}, {args.steps} steps": (probe, plain)}
    print("train seconds:", json.loads((out / TEACHER_JSON).read_text())["train_seconds"])
    with tempfile.TemporaryDirectory() as tmp:
        world = scoring_world(tmp)
        print(dense_table_header(args.split, args.sizes, args.read_stride))
        for name, (teacher, plain) in rows.items():
            print(f"| {name} | " + " | ".join(scores(teacher, world, args.split, args.sizes, args.read_stride, plain)) + " |", flush=True)


if __name__ == "__main__":
    main()
