"""``ovdistill proposals`` and ``ovdistill pseudo-label``: the offline steps between detection trainings.

Both take the same ``-c CONFIG.yaml`` (and overrides, ``--trainer.*`` included) as ``ovdistill fit`` —
the model, data and Trainer are built by LightningCLI — plus the checkpoint of a trained detector
(``--ckpt``), and run through ``Trainer.predict``: ``--trainer.devices 8`` uses 8 GPUs, each rank
labelling its shard, rank 0 merging the parts into one file:

    ovdistill proposals    -c configs/det/vild_text_ov_coco.yaml --ckpt RUN/last.ckpt --out proposals_train.pt
    ovdistill pseudo-label -c configs/det/vild_text_ov_coco.yaml --ckpt RUN/last.ckpt --out pseudo_train.json

``proposals`` stores the RPN's top-N boxes per training image with the teacher's region embeddings
(1x + 1.5x crops) for ViLD-image; ``pseudo-label`` writes novel-class pseudo boxes as a COCO JSON, from
the teacher over the detector's proposals (``--labeller teacher``, round one) or from the detector's
own detections (``--labeller detector``, later rounds). Outputs are written atomically.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path


def _build(rest: list[str], ckpt: str, split: str):
    """(module with the checkpoint loaded strictly, the split's dataset without flips, the Trainer)."""
    from pipelines.cli import lightning_cli
    from pipelines.offline.checkpoint import load_into, read_checkpoint

    read_checkpoint(ckpt)  # fail on a bad file before building models
    cli = lightning_cli(rest, run=False)
    module, dm, trainer = cli.model, cli.datamodule, cli.trainer
    if module.vocabulary is None:
        from distill.teacher_student import datamodule_vocabulary

        module._set_vocabulary(datamodule_vocabulary(dm, module.held_out))
    else:
        from distill.teacher_student import datamodule_vocabulary

        module.vocabulary.check_matches(datamodule_vocabulary(dm, module.held_out), "the model's vocabulary", "the datamodule's")
    load_into(module, ckpt)
    module.setup("predict")
    ds = dm.dataset(split)
    ds.flip = False
    return module, dm, ds, trainer


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint of a trained detector (`ovdistill fit`'s last.ckpt)")
    parser.add_argument("--out", required=True, help="file to write (atomically)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--batch-size", type=int, default=8, help="images per step on each device")
    return parser


def _parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def main_proposals(argv: list[str]) -> int:
    parser = _parser("ovdistill proposals", __doc__)
    parser.add_argument("--top-n", type=int, default=300, help="proposals kept per image (ViLD: 300)")
    parser.add_argument("--no-teacher-regions", action="store_true", help="store boxes only (teacher embeddings then come live)")
    args, rest = parser.parse_known_args(argv)
    from pipelines.data.proposals_file import file_fingerprint, pack_proposals, save_proposals
    from pipelines.offline.predict import run_pass
    from pipelines.offline.proposals import propose_batch

    module, _, ds, trainer = _build(rest, args.ckpt, args.split)
    teacher = None if args.no_teacher_regions else module.teacher
    scales = tuple(getattr(module.hparams, "region_scales", (1.0, 1.5)))

    def fn(m, images, targets):
        return propose_batch(m.student, teacher, images, targets, args.top_n, scales)

    out = Path(args.out)
    items = run_pass(trainer, module, ds, fn, args.batch_size, _parts_dir(out))
    if items is not None:
        props = pack_proposals(items, teacher, scales, file_fingerprint(ds.ann_file))
        print(f"wrote {save_proposals(props, out)}: {len(props['boxes'])} proposals on {len(items)} images")
    return 0


def main_pseudo(argv: list[str]) -> int:
    parser = _parser("ovdistill pseudo-label", __doc__)
    parser.add_argument("--labeller", choices=("teacher", "detector"), default="teacher")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum pseudo-box score")
    parser.add_argument("--top-k", type=int, default=5, help="pseudo boxes kept per image")
    parser.add_argument("--top-proposals", type=int, default=100, help="proposals the teacher labeller classifies per image")
    parser.add_argument("--gold-iou", type=float, default=0.5, help="a box overlapping a gold box this much is not relabelled")
    args, rest = parser.parse_known_args(argv)
    from pipelines.offline.predict import run_pass
    from pipelines.offline.pseudo_labels import (
        save_pseudo_labels,
        teacher_settings,
        to_coco,
    )

    module, dm, ds, trainer = _build(rest, args.ckpt, args.split)
    settings = teacher_settings(args.threshold, args.top_k, gold_iou=args.gold_iou, top_proposals=args.top_proposals)
    if args.labeller == "teacher":
        text = module.teacher.encode_text(module.class_names, module.hparams.templates)
        fn = partial(_teacher_fn, text=text, target=list(module.novel_ids), dataset=ds, settings=settings)
        labeller, round_ = getattr(module.teacher, "name", "teacher"), 1
    else:
        fn = partial(_detector_fn, dataset=ds, settings=settings)
        labeller = f"{type(module).__name__} {Path(args.ckpt).name}"
        round_ = int(getattr(dm, "pseudo_meta", {}).get("round", 1 if ds.pseudo else 0)) + 1
    out = Path(args.out)
    found = run_pass(trainer, module, ds, fn, args.batch_size, _parts_dir(out))
    if found is not None:
        coco = to_coco(ds, module.class_names, module.novel_names, found, labeller, settings, round_)
        print(f"wrote {save_pseudo_labels(coco, out)}: round {round_}, {len(coco['annotations'])} pseudo boxes on {len(coco['images'])} images")
    return 0


def _teacher_fn(module, images, targets, *, text, target, dataset, settings):
    from pipelines.offline.pseudo_labels import teacher_label_batch

    return teacher_label_batch(module.teacher, module.student, text.to(images[0].device), target, dataset, images, targets, settings)


def _detector_fn(module, images, targets, *, dataset, settings):
    from pipelines.offline.pseudo_labels import detector_label_batch

    return detector_label_batch(module, dataset, images, targets, settings)
