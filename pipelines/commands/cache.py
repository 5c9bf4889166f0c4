"""``ovdistill cache``: compute the teacher's dense maps of a segmentation training split once, for the
dense methods (``LSegDenseDistill``, ``MaskCLIPPlus``) to read instead of running the teacher:

    ovdistill cache -c configs/seg/world.yaml -c configs/seg/method/maskclip_plus.yaml --out data/world_teacher_cache
    ovdistill fit   -c configs/seg/world.yaml -c configs/seg/method/maskclip_plus.yaml -c configs/seg/cached.yaml

The teacher and its preprocessing (``teacher_mode``, ``teacher_size``, ``teacher_stride``) come from the same
``-c`` files as ``fit``; so do ``--trainer.*`` flags (``--trainer.devices 8``, ``--trainer.num_nodes 2`` under
torchrun / srun), each rank building its own shards. Killed or failed builds finish when run again; a
cache of another teacher or preprocessing in ``--out`` is refused unless ``--rebuild``.
"""
from __future__ import annotations

import argparse
import json


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill cache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="cache directory (index.json + shard-*.safetensors)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="the data module's split to cache")
    parser.add_argument("--shard-size", type=int, default=64, help="images per shard file")
    parser.add_argument("--batch-size", type=int, default=16, help="images per teacher forward")
    parser.add_argument("--no-flips", action="store_true", help="skip the mirror-image maps (then train without h-flips)")
    parser.add_argument("--rebuild", action="store_true", help="replace a cache of another key in --out")
    args, rest = parser.parse_known_args(argv)
    from pipelines.cache.dense import DenseCacheJob, build_dense_cache
    from pipelines.cli import lightning_cli

    cli = lightning_cli(rest, run=False, logger=False)
    module, dm, trainer = cli.model, cli.datamodule, cli.trainer
    if not getattr(module, "uses_dense_teacher", False) or module.student is None:
        raise SystemExit(f"ovdistill cache: {type(module).__name__} does not train from the teacher's dense maps; "
                         "use a dense method config (configs/seg/method/dense_distill.yaml or maskclip_plus.yaml)")
    hp = module.hparams
    job = DenseCacheJob(module.teacher, dm.dataset(args.split), args.out, hp.teacher_mode, hp.teacher_size, hp.teacher_stride,
                        flips=not args.no_flips, shard_size=args.shard_size, batch_size=args.batch_size)
    try:
        summary = build_dense_cache(job, trainer, rebuild=args.rebuild)
    except (ValueError, OSError, RuntimeError) as err:
        raise SystemExit(f"ovdistill cache: {err}") from None
    if summary is not None:
        rate = summary["images"] / max(summary["seconds"], 1e-9)
        print(f"[cache] {summary['index']}: {summary['images']} images in {summary['shards']} shards "
              f"({summary['computed_here']} computed by rank 0, world size {summary['world_size']}, {rate:.1f} images/s)")
        print(json.dumps({"key": job.key, "digest": job.digest}))
    return 0
