"""``attributes`` and ``bench attributes``: age, gender, emotion, expression, pose and identity of faces."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub, groups) -> None:
    p = sub.add_parser("attributes", help="score aligned face crops: age, gender, emotion, smile, pose (JSON)")
    p.add_argument("images", type=Path, nargs="+", help="aligned face crops (any size)")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_attributes)

    p = groups["bench"].add_parser("attributes", help="age MAE, gender accuracy, emotion vs smile on UTKFace (JSON)")
    p.add_argument("--data", type=Path, required=True, help="UTKFace folder with labels.csv")
    p.add_argument("--n", type=int, default=500, help="held-out faces to measure")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench)


def run_attributes(args: argparse.Namespace) -> int:
    from ..faces.attributes import analyze
    from ..faces.images import load_image

    attrs = analyze([load_image(path) for path in args.images], identity=False)
    result = [{"image": str(path), **a.to_dict()} for path, a in zip(args.images, attrs)]
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from ..bench.attributes import evaluate
    from ..errors import UserError

    if not args.data.is_dir():
        raise UserError(f"data folder not found: {args.data}")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate(args.data, n=args.n, batch_size=args.batch, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
