"""``models``: the registry's models and whether each can be loaded here."""

from __future__ import annotations

import argparse


def register(sub, groups) -> None:
    p = sub.add_parser("models", help="list the models and their state (local, cached, downloadable, offline)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..models.registry import default_model, list_models

    default = default_model().name
    rows = [
        {"name": e.name, "default": e.name == default, "status": e.status, "resolution": e.resolution,
         "alignment": e.alignment, "format": e.format, "reason": e.reason, "title": e.title, "license": e.license}
        for e in list_models()
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        mark = "*" if r["default"] else " "
        print(f"{mark} {r['name']:<14} {r['status']:<12} {r['resolution']:>5}px  {r['title']}" + (f"  ({r['reason']})" if r["reason"] else ""))
    return 0
