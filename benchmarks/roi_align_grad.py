"""RoIAlign's CPU gradient: torchvision's backward against the detector's separable one (``students.roi_pool``),
alone and inside a world detector's training step.

    python benchmarks/roi_align_grad.py [--steps 8]

Rows: one level's backward at the world detector's size (8 images x 64 channels, a 24 x 24 map, 1,024 boxes
of 4-44 px: at 96 px every box pools from the finest level) and at a real detector's (2 images x 256 channels,
a 200 x 272 map of an 800 x 1,088 image, 1,024 boxes of 16-112 px), then a ViLD-text training step on a
generated world (batch 8, forward + backward + AdamW) with either pooler. Torch threads as the process has them.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings

import torch
from bench_common import seconds, table
from torchvision.ops import MultiScaleRoIAlign, roi_align

from students.roi_pool import roi_align_separable_grad


def backward_seconds(fn, images: int, channels: int, h: int, w: int, scale: float, box: tuple[float, float]) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, channels, h, w, generator=g, requires_grad=True)
    wh = torch.rand(1024, 2, generator=g) * (box[1] - box[0]) + box[0]
    xy = torch.rand(1024, 2, generator=g) * (torch.tensor([w, h]) / scale - wh)
    rois = torch.cat([torch.randint(0, images, (1024, 1), generator=g).float(), xy, xy + wh], 1)
    out = fn(x, rois, 7, scale, 2, False)
    grad = torch.randn(out.shape, generator=g)
    return seconds(lambda: torch.autograd.grad(out, x, grad, retain_graph=True))


def detector_step_seconds(world: str, pooler: str, steps: int) -> float:
    from distill.det_modules import ViLD
    from pipelines.bench.detection import world_detector
    from pipelines.data.det_datamodule import WorldDetDataModule
    from pipelines.world.teacher import load_shipped_teacher

    teacher = load_shipped_teacher("cpu")[0]
    dm = WorldDetDataModule(world, batch_size=8)
    dm.setup("fit")
    module = ViLD(teacher, world_detector(teacher.embed_dim, 0), class_names=dm.class_names, novel=dm.novel)
    if pooler == "torchvision":
        module.student.roi_heads.box_roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    module.setup("fit")
    module.train()
    module.log_dict = lambda *a, **k: None  # no trainer here: the step's own logging is not what is timed
    batches = iter(dm.train_dataloader())
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)

    def step():
        loss = module.training_step(next(batches), 0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return seconds(step, repeats=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    rows = []
    shapes = [("world level, 8 x 64 x 24 x 24", (8, 64, 24, 24, 0.25, (4.0, 44.0))),
              ("real P2, 2 x 256 x 200 x 272", (2, 256, 200, 272, 0.25, (16.0, 112.0)))]
    for name, shape in shapes:
        ref = backward_seconds(roi_align, *shape)
        mine = backward_seconds(roi_align_separable_grad, *shape)
        rows.append([f"backward, {name}", f"{ref * 1e3:.1f} ms", f"{mine * 1e3:.1f} ms", f"{ref / mine:.1f}x"])
    from pipelines.world import write_world
    from pipelines.world.spec import WorldSpec

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        write_world(WorldSpec(seed=0, splits={"train": 16 * (args.steps + 1), "val": 1, "test": 1}), tmp, progress=False)
        ref, mine = (detector_step_seconds(tmp, p, args.steps) for p in ("torchvision", "separable"))
    rows.append(["world ViLD-text training step, batch 8", f"{ref:.3f} s", f"{mine:.3f} s", f"{ref / mine:.2f}x"])
    print(table(["what", "torchvision", "separable gradient", "speed-up"], rows))


if __name__ == "__main__":
    main()
