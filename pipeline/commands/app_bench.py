"""``bench app`` and ``bench soak``: the web app through its API (:mod:`pipeline.bench.app`, :mod:`pipeline.bench.soak`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def register(sub, groups) -> None:
    p = groups["bench"].add_parser("app", help="the web app through its API: step times and peak memory (JSON)")
    p.add_argument("--weights", type=Path, default=None, help="a local model folder instead of the default model")
    p.add_argument("--photo", type=Path, default=ROOT / "assets" / "astronaut.png")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps to time")
    p.add_argument("--no-talk", action="store_true", help="skip the video")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench)

    p = groups["bench"].add_parser("soak", help="concurrent sessions through the app's API: errors, cross-talk, memory (JSON)")
    p.add_argument("--sessions", type=int, default=8, help="concurrent sessions, each on a different face")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--weights", type=Path, default=None, help="a local model folder instead of the default model")
    p.add_argument("--data", type=Path, default=None, help="a folder of face photos (default: the test faces)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_soak)


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.app import bench_app
    from ..errors import UserError

    if not args.photo.is_file():
        raise UserError(f"photo not found: {args.photo}")
    result = bench_app(args.weights, args.photo, args.steps, talk=not args.no_talk)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def run_soak(args: argparse.Namespace) -> int:
    from ..bench.soak import bench_soak
    from ..errors import UserError

    if not 1 <= args.sessions <= 64:
        raise UserError("--sessions must be between 1 and 64")
    if not 0 < args.minutes <= 120:
        raise UserError("--minutes must be between 0 and 120")
    if args.data is not None and not args.data.is_dir():
        raise UserError(f"--data must be a folder of face photos: {args.data}")
    result = bench_soak(args.weights, args.data, args.sessions, args.minutes)
    text = json.dumps(result, indent=None if args.json else 2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0
