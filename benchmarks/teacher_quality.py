"""The embedded teacher's three zero-shot figures (issue targets): tight-crop accuracy (mean and worst class),
ViLD's 1x + 1.5x crop average, and MaskCLIP dense mIoU (seen / unseen / hIoU) on a world split; and where the dense
map's background mistakes lie (background pixels named as an object within 8 px of an object, and farther); and the
same figures for the map refined by PAMR (the demo's training-free "MaskCLIP + PAMR" row).

    python benchmarks/teacher_quality.py                       # the shipped teacher, world test split
    python benchmarks/teacher_quality.py --teacher runs/teacher --split val --crop-seed 1   # choosing a recipe

Choose recipes with ``--split val --crop-seed 1``; the shipped teacher's figures are read on ``test`` / seed 0.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from pipelines.bench.mission import demo_spec
from pipelines.bench.segmentation import PAMR_REFINE, PAMR_SIZE, PAMR_STEPS, PAMR_STRIDE, WORLD_TEACHER_MAP
from pipelines.world import write_world
from pipelines.world.teacher import load_shipped_teacher, load_teacher_dir
from pipelines.world.zeroshot import crop_record, dense_quality


def quality(teacher, classes, world: Path, split: str, crop_seed: int, mode: str = "maskclip") -> dict:
    """``mode``: the dense path (``teacher.dense_modes()``). A CNN's map is read as the demo's MaskCLIP row reads it
    (``WORLD_TEACHER_MAP``: 128 px, output stride 8; PAMR's at its own size and stride); a ViT's has only its patch
    stride, at the same input sizes."""
    tight, _, vild = crop_record(teacher, classes, 40, crop_seed).values()  # in CROP_PROTOCOLS order
    per_class = tight["per_class"]
    cnn = teacher.fixed_dense_stride() is None
    dense = dense_quality(teacher, world, split, size=WORLD_TEACHER_MAP["teacher_size"], mode=mode,
                          output_stride=WORLD_TEACHER_MAP["teacher_stride"] if cnn else None)
    refined = dense_quality(teacher, world, split, size=(PAMR_SIZE, PAMR_SIZE), mode=mode, output_stride=PAMR_STRIDE if cnn else None,
                            pamr_steps=PAMR_STEPS, **PAMR_REFINE)
    return {"tight": tight["mean"], "tight_worst": min(per_class.values()), "tight_per_class": per_class, "vild_1x_1.5x": vild["mean"],
            **{f"dense_{k}": float(dense[k]) for k in ("mIoU_seen", "mIoU_unseen", "hIoU")},
            **{k: dense[k] for k in ("background_near_error", "background_far_error", "background_near_share",
                                     "seen_named_unseen", "unseen_named_seen")},
            **{f"pamr_{k}": float(refined[k]) for k in ("mIoU_seen", "mIoU_unseen", "hIoU", "background_near_error", "background_far_error")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="a pretrain-teacher directory (default: the shipped teacher)")
    parser.add_argument("--world", default=None, help="a world directory (default: the demo's world, generated)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--crop-seed", type=int, default=0)
    parser.add_argument("--dense-mode", default="maskclip", help="the dense path: maskclip (CNN and ViT towers), value_only or "
                        "clearclip (ViT towers)")
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher, _ = load_teacher_dir(args.teacher) if args.teacher else load_shipped_teacher()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(args.world) if args.world else Path(tmp) / "world"
        if not args.world:
            spec = demo_spec(False, 0)
            spec.splits = {"train": 0, "val": spec.splits["val"], "test": spec.splits["test"]}
            write_world(spec, world)
        q = quality(teacher, demo_spec(False, 0).classes, world, args.split, args.crop_seed, args.dense_mode)
    stride = teacher.fixed_dense_stride()
    print(f"teacher: {args.teacher or 'shipped'}; crops seed {args.crop_seed}; dense ({args.dense_mode}) on world {args.split}"
          + (f"; a ViT: every map at its patch stride {stride}" if stride else ""))
    size, dense_stride = WORLD_TEACHER_MAP["teacher_size"][0], stride or WORLD_TEACHER_MAP["teacher_stride"]
    print(f"| tight 1.0x crops (mean / worst class) | ViLD 1x + 1.5x | MaskCLIP dense ({size} px, stride {dense_stride}) mIoU seen / unseen / hIoU "
          f"| MaskCLIP + PAMR ({PAMR_SIZE} px, stride {stride or PAMR_STRIDE}, {PAMR_REFINE}, {PAMR_STEPS} steps) seen / unseen / hIoU |")
    print("|---|---|---|---|")
    print(f"| {q['tight']:.1f} / {q['tight_worst']:.1f} | {q['vild_1x_1.5x']:.1f} | "
          f"{q['dense_mIoU_seen']:.1f} / {q['dense_mIoU_unseen']:.1f} / {q['dense_hIoU']:.1f} | "
          f"{q['pamr_mIoU_seen']:.1f} / {q['pamr_mIoU_unseen']:.1f} / {q['pamr_hIoU']:.1f} |")
    print("per class (tight):", {k: round(v, 1) for k, v in q["tight_per_class"].items()})
    print(f"dense map, background pixels named as an object: {q['background_near_error']:.1f} % within 8 px of an object "
          f"({q['background_near_share']:.1f} % of the background), {q['background_far_error']:.1f} % farther away; "
          f"after PAMR {q['pamr_background_near_error']:.1f} % and {q['pamr_background_far_error']:.1f} %")
    print(f"dense map, between the object groups: {q['seen_named_unseen']:.1f} % of seen-object pixels named as an unseen "
          f"class, {q['unseen_named_seen']:.1f} % of unseen-object pixels named as a seen one")


if __name__ == "__main__":
    main()
