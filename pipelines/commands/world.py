"""``ovdistill world --out DIR``: generate the synthetic open-vocabulary world."""
from __future__ import annotations

import argparse
import sys

from pipelines.world import SHAPES, SceneConfig, WorldExistsError, WorldSpec, write_world
from pipelines.world.spec import DEFAULT_NOVEL, DEFAULT_SPLITS


def spec_arguments(parser: argparse.ArgumentParser) -> None:
    """World-spec options; their defaults give the demo's world (same files, same fingerprint), so a table from
    ``ovdistill fit`` on ``data/world`` is read from the same test images as the demo's."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendering (the same seed and options give the same files)")
    parser.add_argument("--train", type=int, default=DEFAULT_SPLITS["train"], help="training images")
    parser.add_argument("--val", type=int, default=DEFAULT_SPLITS["val"], help="validation images")
    parser.add_argument("--test", type=int, default=DEFAULT_SPLITS["test"], help="test images")
    parser.add_argument("--image-size", type=int, default=96, help="square image side in px (object sizes scale with it)")
    parser.add_argument("--max-objects", type=int, default=4, help="most objects per scene")
    parser.add_argument("--classes", nargs="+", default=list(SHAPES), help=f"shape classes (from {', '.join(SHAPES)})")
    parser.add_argument("--novel", nargs="+", default=list(DEFAULT_NOVEL), help="classes whose labels students never get")


def spec_from_args(args: argparse.Namespace) -> WorldSpec:
    scale = args.image_size / 96
    scene = SceneConfig(args.image_size, 1, args.max_objects, 9.0 * scale, 24.0 * scale)
    splits = {"train": args.train, "val": args.val, "test": args.test}
    return WorldSpec(seed=args.seed, classes=tuple(args.classes), novel=tuple(args.novel), splits=splits, scene=scene)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovdistill world", description=__doc__)
    parser.add_argument("--out", required=True, help="output directory (created; must be empty or hold this world)")
    parser.add_argument("--overwrite", action="store_true", help="replace whatever --out holds")
    spec_arguments(parser)
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
        root = write_world(spec, args.out, overwrite=args.overwrite)
    except (WorldExistsError, ValueError) as err:
        print(f"ovdistill world: error: {err}", file=sys.stderr)
        return 2
    print(f"world {spec.fingerprint()} at {root}: {spec.splits} images; base={list(spec.base)} novel={list(spec.novel)}")
    return 0
