"""``python -m pipeline``: one subcommand per step (align, invert, edit, talk, ...).

Each module in ``pipeline/commands`` registers its subcommands; groups such as
``train`` and ``bench`` collect targets from several modules. A :class:`UserError`
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# Modules under pipeline/commands, in the order their commands are listed.
COMMAND_MODULES = ["sample", "models", "align", "invert", "directions", "generator", "attributes", "talk", "creative", "distributed", "app_bench"]
GROUPS = {
    "train": "train a model (generator, encoder, ...)",
    "bench": "measure speed and quality, printing JSON",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Face-editing studio on StyleGAN2.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = {}
    for name, help_text in GROUPS.items():
        group = sub.add_parser(name, help=help_text)
        groups[name] = group.add_subparsers(dest="target", metavar="TARGET", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(f"pipeline.commands.{module}").register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
