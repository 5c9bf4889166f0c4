"""Does a teacher tower with a smaller receptive field give a dense map that localises? The shipped recipe, another tower.

    python benchmarks/tower_probe.py --out runs/tower-rf        # trains (about 45 min on 2 cores; resumable), then scores
    python benchmarks/tower_probe.py --out runs/tower-rf --split val --sizes 96 128

The embedded teacher's image tower is timm's ResNet-10-T. Its dense map is read at output stride 8 (dilated), where
one cell's receptive field spans 195 px of the input. The probe tower is the same network with stages 3 and 4 made of
1x1 convolutions at output stride 8 (BagNet's idea: depth without a wider view): 51 px, and every position is trained
at the stride it is read at (``receptive_field`` prints both). It is trained with the shipped teacher's recipe
(``pretrain_teacher``: same captions, steps, seed) and registered with timm here, so only this script builds it.

Both teachers are scored on a world split (choose on ``val``): tight-crop accuracy, MaskCLIP dense mIoU seen / unseen
(hIoU) for each input size at stride 8, where the background mistakes lie (within 8 px of an object or farther), and
per class the share of its pixels the map names right.
The answer is in the README ("The synthetic world").
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import timm
import torch
from bench_common import dense_table_header, scoring_world
from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from pipelines.bench.mission import demo_spec
from pipelines.data.atomic import save_json
from pipelines.world.pretrain import EMBEDDED_TEACHER_CFG
from pipelines.world.pretrain_run import pretrain_teacher
from pipelines.world.teacher import load_shipped_teacher, load_teacher_dir
from pipelines.world.zeroshot import crop_record, dense_quality

TOWER = "resnet10t_1x1_late"


def _one_by_one(stage: nn.Module) -> None:
    """A stage's 3x3 convolutions become 1x1 and its stride 1 (the avg-down shortcut's pool goes too)."""
    for block in stage:
        block.conv1 = nn.Conv2d(block.conv1.in_channels, block.conv1.out_channels, 1, bias=False)
        block.conv2 = nn.Conv2d(block.conv2.in_channels, block.conv2.out_channels, 1, bias=False)
        if block.downsample is not None:
            block.downsample[0] = nn.Identity()


@register_model
def resnet10t_1x1_late(pretrained: bool = False, output_stride: int | None = None, **kwargs) -> ResNet:
    """ResNet-10-T whose stages 3 and 4 are 1x1 convolutions: native output stride 8."""
    if output_stride not in (None, 8):  # teachers.dense asks for a stride-8 twin: the same network
        raise ValueError(f"{TOWER} has a fixed output stride of 8, got {output_stride}")
    kwargs = {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")}
    model = ResNet(block=BasicBlock, layers=(1, 1, 1, 1), stem_width=32, stem_type="deep_tiered", avg_down=True, **kwargs)
    _one_by_one(model.layer3)
    _one_by_one(model.layer4)
    model.pretrained_cfg = model.default_cfg = {"architecture": TOWER}
    return model


def receptive_field(trunk: nn.Module, size: int = 320) -> int:
    """Width (px) of the input that can reach the centre cell of ``trunk``'s feature map: the gradient of that cell
    on a copy whose weights are all positive (so no path cancels and every ReLU passes)."""
    probe = copy.deepcopy(trunk).eval()
    with torch.no_grad():
        for p in probe.parameters():
            p.fill_(0.01)
    x = torch.ones(1, 3, size, size, requires_grad=True)
    feats = probe.forward_features(x)
    feats[0, :, feats.shape[-2] // 2, feats.shape[-1] // 2].sum().backward()
    cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero().flatten()
    return int(cols.max() - cols.min() + 1)


def probe_cfg() -> dict:
    """The embedded teacher's open_clip config with the probe tower."""
    return {**EMBEDDED_TEACHER_CFG, "vision_cfg": {**EMBEDDED_TEACHER_CFG["vision_cfg"], "timm_model_name": TOWER}}


def scores(teacher, world: Path, split: str, sizes: list[int]) -> tuple[list[str], dict[str, float]]:
    """The table's cells, and the per-class pixel recall of the map at the first size."""
    tight = next(iter(crop_record(teacher, demo_spec(False, 0).classes, 40, 1 if split == "val" else 0).values()))
    cells, recall = [f"{tight['mean']:.1f} / {min(tight['per_class'].values()):.1f}"], {}
    for size in sizes:
        with torch.no_grad():
            d = dense_quality(teacher, world, split, size=(size, size), output_stride=8)
        cells.append(f"{float(d['mIoU_seen']):.1f} / {float(d['mIoU_unseen']):.1f} ({float(d['hIoU']):.1f}); "
                     f"{d['background_near_error']:.0f} % / {d['background_far_error']:.0f} %")
        recall = recall or {n: round(v, 1) for n, v in d["pixel_recall"].items()}
    return cells, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the probe teacher's directory (trained there unless it holds one)")
    parser.add_argument("--steps", type=int, default=2400, help="the shipped recipe's steps")
    parser.add_argument("--split", default="val")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 112, 128], help="teacher input px of the 96 px scenes")
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / "teacher.json").is_file():
        pretrain_teacher(out, steps=args.steps, model_name="ovdistill-world-r10t-1x1-late", model_cfg=probe_cfg())
        # the tower is registered by this script only: the record's command must be this script, not the CLI
        meta = json.loads((out / "teacher.json").read_text())
        save_json({**meta, "command": f"python benchmarks/tower_probe.py --out OUT --steps {args.steps}"}, out / "teacher.json")
    rows = {"shipped (ResNet-10-T, dilated to stride 8)": load_shipped_teacher()[0],
            f"probe ({TOWER}, {args.out})": load_teacher_dir(out)[0]}
    print("receptive field of one stride-8 cell (px): shipped", receptive_field(timm.create_model("resnet10t", output_stride=8)),
          "; probe", receptive_field(timm.create_model(TOWER)))
    with tempfile.TemporaryDirectory() as tmp:
        world = scoring_world(tmp)
        print(dense_table_header(args.split, args.sizes))
        recalls = {}
        for name, teacher in rows.items():
            cells, recalls[name] = scores(teacher, world, args.split, args.sizes)
            print(f"| {name} | " + " | ".join(cells) + " |")
        for name, recall in recalls.items():
            print(f"{name}: pixels named right at {args.sizes[0]} px, per class:", recall)


if __name__ == "__main__":
    main()
