"""Novel AP50 of the demo's detectors against training steps, on the **val** split (why a method misses its bar).

    python benchmarks/det_curves.py [--steps 400] [--every 100] [--det-batch-size 8] [--proposer-steps 200]

The demo's world, seeds, teacher precision and val-chosen settings, read from ``run_det_methods``' and
``world_detector``'s defaults so the two cannot drift (learning rate, tau, ViLD-image weights, the pseudo-box
labeller), with one exception: the rate is held constant, because the demo's step decay at 90 % and 95 % of a budget
cannot be shown by one run scored along the way (each budget would need its own run). The proposer is ViLD-text
trained as the demo trains it (``--proposer-steps``, 200, step decay). Each method trains once for ``--steps`` and is
scored on val every ``--every`` steps. Prints one markdown table: method x steps -> val AP50 novel (base in brackets).
"""
from __future__ import annotations

import argparse
import inspect
import warnings

import lightning as L
from bench_common import demo_setting

from distill.det_modules import PseudoBoxDetector, ViLD
from pipelines.bench.detection import DET_LR_SCHEDULE, run_det_methods, world_detector
from pipelines.bench.mission import default_cache_dir
from pipelines.bench.trainer import bench_trainer
from pipelines.data.det_datamodule import WorldDetDataModule
from pipelines.data.proposals_file import load_proposals, save_proposals
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

    demo = {k: p.default for k, p in inspect.signature(run_det_methods).parameters.items()}
    lr, regions = demo["lr"], demo["image_regions"]

    def detector(**kw):
        return world_detector(teacher.embed_dim, args.seed, weights, **kw)

    L.seed_everything(args.seed, verbose=False)
    proposer = ViLD(teacher, detector(), lr=lr, lr_schedule=DET_LR_SCHEDULE)
    bench_trainer(args.proposer_steps, False).fit(proposer, dm)
    proposer = proposer.student.eval()
    train_set = dm.dataset("train")
    train_set.flip = False
    proposals = save_proposals(compute_proposals(proposer, train_set, top_n=regions, teacher=teacher), tmp / "proposals_train.pt")
    labels = teacher_pseudo_labels(
        teacher, proposer, train_set, dm.class_names, dm.novel, score_threshold=demo["pseudo_threshold"],
        gold_iou=demo["pseudo_gold_iou"], top_proposals=regions, refine=demo["pseudo_refine"],
        proposals=None if demo["pseudo_refine"] else load_proposals(proposals),
    )
    pseudo = save_pseudo_labels(labels, tmp / "pseudo_labels_train.json")
    with_props = WorldDetDataModule(str(world), batch_size=args.det_batch_size, proposals=str(proposals))
    with_pseudo = WorldDetDataModule(str(world), batch_size=args.det_batch_size, pseudo_labels=str(pseudo))
    vild = {"lr": lr, "lr_schedule": "constant", "image_regions": regions}
    runs = {
        "ViLD-text": (lambda: ViLD(teacher, detector(), lr=lr, lr_schedule="constant"), dm),
        "ViLD (text + image)": (lambda: ViLD(teacher, detector(), image_weight=demo["image_weight"], **vild), with_props),
        "ViLD-ensemble": (lambda: ViLD(teacher, detector(image_head=True), ensemble=True, image_weight=demo["ensemble_image_weight"], **vild),
                          with_props),
        "pseudo-box self-training": (lambda: PseudoBoxDetector(teacher, detector(), lr=lr, lr_schedule="constant"), with_pseudo),
    }
    table = {}
    for name, (build, data) in runs.items():
        L.seed_everything(args.seed, verbose=False)
        table[name] = curve(build(), data, args.steps, args.every)
        print(name, table[name], flush=True)
    steps = [s for s, _, _ in next(iter(table.values()))]
    print(f"\nVal AP50 novel (base) vs training steps (batch {args.det_batch_size}; constant AdamW {lr:g}; proposer trained "
          f"{args.proposer_steps}; the demo trains 200)\n")
    print("| method | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for name, points in table.items():
        print(f"| {name} | " + " | ".join(f"{n:.1f} ({b:.1f})" for _, b, n in points) + " |")


if __name__ == "__main__":
    main()
