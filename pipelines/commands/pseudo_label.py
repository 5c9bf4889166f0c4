"""``ovdistill pseudo-label``: novel-class pseudo boxes as a COCO JSON (ground-truth category ids, round and labeller in
``info.ovdistill``), from the teacher over a base detector's proposals, moved by its box regression (``--labeller teacher``,
round one; ``--no-refine`` labels the raw proposals) or from a
trained detector's own detections (``--labeller detector``, later rounds), through ``Trainer.predict``:

    ovdistill pseudo-label -c configs/det/real.yaml -c configs/det/data/ov_coco.yaml -c configs/det/method/vild_text.yaml \
        --ckpt RUN/checkpoints/last.ckpt --out data/coco/pseudo_labels_train.json
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from .offline_common import build_offline, offline_parser, parts_dir


def main(argv: list[str]) -> int:
    parser = offline_parser("ovdistill pseudo-label", __doc__)
    parser.add_argument("--labeller", choices=("teacher", "detector"), default="teacher",
                        help="teacher: the teacher classifies the detector's proposals (round one); detector: the detector's own "
                             "novel detections (later rounds)")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum pseudo-box score")
    parser.add_argument("--top-k", type=int, default=5, help="pseudo boxes kept per image")
    parser.add_argument("--top-proposals", type=int, default=100, help="proposals the teacher labeller classifies per image")
    parser.add_argument("--gold-iou", type=float, default=0.5, help="a box overlapping a gold box this much is not relabelled")
    parser.add_argument("--proposals", default=None,
                        help="teacher labeller: read boxes and teacher region embeddings from this `ovdistill proposals` file "
                             "(no proposer or teacher forward)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="teacher labeller: move proposals by the detector's class-agnostic box regression before the "
                             "teacher labels them (default: on, off with --proposals, whose stored boxes are labelled as stored)")
    args, rest = parser.parse_known_args(argv)
    refine = args.refine if args.refine is not None else not args.proposals
    if refine and args.proposals:
        parser.error("--refine moves and re-embeds the proposals: it cannot read them from --proposals (drop one of the two)")
    from pipelines.offline.predict import run_pass
    from pipelines.offline.pseudo_labels import (
        save_pseudo_labels,
        teacher_settings,
        to_coco,
    )

    module, dm, ds, trainer = build_offline(rest, args.ckpt, args.split)
    settings = teacher_settings(args.threshold, args.top_k, gold_iou=args.gold_iou, top_proposals=args.top_proposals,
                                refine=refine and args.labeller == "teacher")
    out = Path(args.out)
    if args.proposals and args.labeller == "teacher":
        if trainer.global_rank == 0:
            coco = _from_proposals(module, ds, args.proposals, settings)
            print(f"wrote {save_pseudo_labels(coco, out)}: round 1 from {args.proposals}, {len(coco['annotations'])} pseudo boxes")
        return 0
    if args.labeller == "teacher":
        text = module.text  # the method's class embeddings: its templates, or its learned prompt file
        fn = partial(_teacher_fn, text=text, target=list(module.novel_ids), dataset=ds, settings=settings)
        labeller, round_ = getattr(module.teacher, "name", "teacher"), 1
    else:
        fn = partial(_detector_fn, dataset=ds, settings=settings)
        labeller = f"{type(module).__name__} {Path(args.ckpt).name}"
        round_ = int(getattr(dm, "pseudo_meta", {}).get("round", 1 if ds.pseudo else 0)) + 1
    found = run_pass(trainer, module, ds, fn, args.batch_size, parts_dir(out))
    if found is not None:
        coco = to_coco(ds, module.class_names, module.novel_names, found, labeller, settings, round_)
        print(f"wrote {save_pseudo_labels(coco, out)}: round {round_}, {len(coco['annotations'])} pseudo boxes on {len(coco['images'])} images")
    return 0


def _from_proposals(module, ds, path: str, settings: dict) -> dict:
    """Round one from a proposals file: its boxes, objectness and teacher region embeddings, checked against this
    dataset, teacher and region teacher."""
    from distill.det_modules import check_region_teacher
    from pipelines.data.det_datamodule import check_proposals
    from pipelines.data.proposals_file import load_proposals
    from pipelines.offline.pseudo_labels import teacher_pseudo_labels

    table = load_proposals(path)
    check_proposals(table["meta"], table["proposals"], ds)
    check_region_teacher(table["meta"], module.teacher, module.hparams.region_teacher)
    missing = [i for i in ds.ids if i not in table["proposals"]]
    if missing:
        raise SystemExit(f"ovdistill pseudo-label: {path} has no proposals for {len(missing)} images of the split, e.g. {missing[:5]}")
    s = settings
    return teacher_pseudo_labels(
        module.teacher, None, ds, module.class_names, module.novel_names, top_proposals=s["top_proposals"],
        score_threshold=s["score_threshold"], top_k=s["top_k"], nms_iou=s["nms_iou"], gold_iou=s["gold_iou"], scale=s["scale"],
        proposals=table, text=module.text, refine=False,
    )


def _teacher_fn(module, images, targets, *, text, target, dataset, settings):
    from pipelines.offline.pseudo_labels import teacher_label_batch

    return teacher_label_batch(module.teacher, module.student, text.to(images[0].device), target, dataset, images, targets, settings)


def _detector_fn(module, images, targets, *, dataset, settings):
    from pipelines.offline.pseudo_labels import detector_label_batch

    return detector_label_batch(module, dataset, images, targets, settings)
