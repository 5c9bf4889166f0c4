"""Regenerate the README's demo tables from a demo's own ``results.md`` (tables, command, wall time, machine):

    ovdistill demo && python benchmarks/readme_results.py [--results ovdistill-demo/results.md] [--readme README.md]

Replaces the block between ``<!-- demo-results:begin -->`` and ``<!-- demo-results:end -->``; the rest of the
README (the discussion of the numbers) is left to its authors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.bench.report import splice_results
from pipelines.data.atomic import save_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="ovdistill-demo/results.md")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    readme = Path(args.readme)
    save_text(splice_results(readme.read_text(), Path(args.results).read_text()), readme)
    print(f"{readme}: demo results from {args.results}")


if __name__ == "__main__":
    main()
