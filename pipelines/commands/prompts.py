"""``ovdistill prompts -c CONFIG.yaml --out FILE``: learn prompt context on base classes (CoOp / DetPro) and write
the prompt file every method's ``prompts:`` option reads (library: ``distill.prompt_modules``)."""
from __future__ import annotations

import argparse
import math


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import lightning_cli

    parser = argparse.ArgumentParser(prog="ovdistill prompts", description=__doc__)
    parser.add_argument("--out", required=True, help="prompt file to write (safetensors)")
    args, rest = parser.parse_known_args(argv)
    cli = lightning_cli(rest, run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    result = cli.trainer.validate(cli.model, cli.datamodule, verbose=False)
    if cli.trainer.is_global_zero:
        path = cli.model.export(args.out)
        shown = "  ".join(f"{k} {v:.1f}" for k, v in (result[0] if result else {}).items() if not math.isnan(v))
        print(f"wrote {path}  (val crop accuracy: {shown or 'n/a'})")
    return 0
