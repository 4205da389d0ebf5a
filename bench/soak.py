"""Concurrent sessions through the web app's API: ``python bench/soak.py [--sessions 8] [--minutes 2] [--out bench/soak.json]``.

The same as ``python -m pipeline bench soak``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.commands import soak_bench  # noqa: E402
from pipeline.errors import UserError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    soak_bench.register(sub, {"bench": sub})
    try:
        args = parser.parse_args(["soak", *sys.argv[1:]])
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
