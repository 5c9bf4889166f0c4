"""``ovdistill proposals``: a base-trained RPN's top-N boxes per training image with the teacher's region embeddings
(1x + 1.5x crops, or pooled from one dense forward per image: ``--model.init_args.region_teacher dense``) for
ViLD-image, through ``Trainer.predict`` (each rank its shard, rank 0 merges):

    ovdistill proposals -c configs/det/real.yaml -c configs/det/data/ov_coco.yaml -c configs/det/method/vild_text.yaml \
        --ckpt RUN/checkpoints/last.ckpt --out data/coco/proposals_train.pt [--trainer.devices 8]
"""
from __future__ import annotations

from pathlib import Path

from .offline_common import build_offline, offline_parser, parts_dir


def main(argv: list[str]) -> int:
    parser = offline_parser("ovdistill proposals", __doc__)
    parser.add_argument("--top-n", type=int, default=300, help="proposals kept per image (ViLD: 300)")
    parser.add_argument("--no-teacher-regions", action="store_true", help="store boxes only (teacher embeddings then come live)")
    args, rest = parser.parse_known_args(argv)
    from pipelines.data.proposals_file import file_fingerprint, pack_proposals, save_proposals
    from pipelines.offline.predict import run_pass
    from pipelines.offline.proposals import propose_batch

    module, _, ds, trainer = build_offline(rest, args.ckpt, args.split)
    teacher = None if args.no_teacher_regions else module.teacher
    hp = module.hparams
    scales = tuple(getattr(hp, "region_scales", (1.0, 1.5)))

    def fn(m, images, targets):
        return propose_batch(m.student, teacher, images, targets, args.top_n, scales, hp.region_teacher, hp.region_stride)

    out = Path(args.out)
    items = run_pass(trainer, module, ds, fn, args.batch_size, parts_dir(out))
    if items is not None:
        props = pack_proposals(items, teacher, scales, file_fingerprint(ds.ann_file), hp.region_teacher)
        print(f"wrote {save_proposals(props, out)}: {len(props['boxes'])} proposals on {len(items)} images")
    return 0
