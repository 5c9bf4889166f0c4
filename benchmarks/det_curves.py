"""Novel AP50 of the demo's detectors against training steps, on the **val** split (why a method misses its bar).

    python benchmarks/det_curves.py [--steps 400] [--every 100] [--det-batch-size 8] [--proposer-steps 200]

The demo's world, seeds and teacher precision, and the settings the README's curves were measured with: a constant
learning rate, tau 0.05, ViLD-image weight 0.5, the default pseudo-box labeller. (The demo now decays its rate at 90 %
and 95 % of its steps, ViLD's schedule, which one run scored along the way cannot show: each budget would need its own
run.) The proposer is ViLD-text after ``--proposer-steps`` (200, as the demo trains it). Each method trains once for
``--steps`` and is scored on val every ``--every`` steps. Prints one markdown table: method x steps -> val AP50
novel (base in brackets).
"""
from __future__ import annotations

import argparse
import warnings

import lightning as L
from bench_common import demo_setting

from distill.det_modules import PseudoBoxDetector, ViLD
from pipelines.bench.detection import world_detector
from pipelines.bench.mission import default_cache_dir
from pipelines.bench.trainer import bench_trainer
from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.proposals_file import save_proposals
from pipelines.offline.proposals import compute_proposals
from pipelines.offline.pseudo_labels import save_pseudo_labels, teacher_pseudo_labels


class ValCurve(L.Callback):
    """Collects (step, val AP50 base, val AP50 novel) at every validation run."""

    def __init__(self):
        self.points: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer, pl_module):
        m = trainer.callback_metrics
        if "val/AP50_novel" in m:
            self.points.append((trainer.global_step, float(m["val/AP50_base"]), float(m["val/AP50_novel"])))


def curve(module, dm, steps: int, every: int) -> list[tuple[int, float, float]]:
    points = ValCurve()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=every, check_val_every_n_epoch=None, callbacks=[points],
    )
    trainer.fit(module, dm)
    return points.points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--det-batch-size", type=int, default=8)
    parser.add_argument("--proposer-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    world, teacher, trunk = demo_setting(args.seed, "det-curves")
    weights, tmp = trunk["timm"], default_cache_dir() / "det-curves"
    dm = WorldDetDataModule(str(world), batch_size=args.det_batch_size)

    def detector(**kw):
        return world_detector(teacher.embed_dim, args.seed, weights, tau=0.05, **kw)

    L.seed_everything(args.seed, verbose=False)
    proposer = ViLD(teacher, detector(), lr=1e-3, lr_schedule="constant")
    bench_trainer(args.proposer_steps, False).fit(proposer, dm)
    proposer = proposer.student.eval()
    train_set = dm.dataset("train")
    train_set.flip = False
    proposals = save_proposals(compute_proposals(proposer, train_set, top_n=32, teacher=teacher), tmp / "proposals_train.pt")
    pseudo = save_pseudo_labels(teacher_pseudo_labels(teacher, proposer, train_set, dm.class_names, dm.novel, top_proposals=32),
                                tmp / "pseudo_labels_train.json")
    with_props = WorldDetDataModule(str(world), batch_size=args.det_batch_size, proposals=str(proposals))
    with_pseudo = WorldDetDataModule(str(world), batch_size=args.det_batch_size, pseudo_labels=str(pseudo))
    runs = {
        "ViLD-text": (lambda: ViLD(teacher, detector(), lr=1e-3, lr_schedule="constant"), dm),
        "ViLD (text + image)": (lambda: ViLD(teacher, detector(), lr=1e-3, lr_schedule="constant", image_weight=0.5, image_regions=32), with_props),
        "ViLD-ensemble": (lambda: ViLD(teacher, detector(image_head=True), lr=1e-3, lr_schedule="constant", image_weight=0.5, image_regions=32, ensemble=True),
                          with_props),
        "pseudo-box self-training": (lambda: PseudoBoxDetector(teacher, detector(), lr=1e-3, lr_schedule="constant"), with_pseudo),
    }
    table = {}
    for name, (build, data) in runs.items():
        L.seed_everything(args.seed, verbose=False)
        table[name] = curve(build(), data, args.steps, args.every)
        print(name, table[name], flush=True)
    steps = [s for s, _, _ in next(iter(table.values()))]
    print(f"\nVal AP50 novel (base) vs training steps (batch {args.det_batch_size}; proposer trained {args.proposer_steps}; "
          "the demo trains 200)\n")
    print("| method | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for name, points in table.items():
        print(f"| {name} | " + " | ".join(f"{n:.1f} ({b:.1f})" for _, b, n in points) + " |")


if __name__ == "__main__":
    main()
