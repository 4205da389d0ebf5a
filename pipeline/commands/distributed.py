"""``--engine ray`` for ``batch``, ``augment`` and ``directions``, and ``bench batch``.

The in-process engine stays the default (no start-up cost for small jobs); ``--engine ray``
starts a local Ray on this machine's cores, or joins the cluster at ``--ray-address``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .invert import add_model_args, set_threads

ENGINES = ("local", "ray")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process (default); ray: Ray workers, each loading the model once")  # fmt: skip
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers, one CPU each (default 2)")


def check_engine_args(args: argparse.Namespace) -> None:
    """Bad engine options fail before any model loads."""
    from ..errors import UserError

    if args.engine == "ray" and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.ray_address and args.engine != "ray":
        raise UserError("--ray-address goes with --engine ray")


def register(sub, groups) -> None:
    p = groups["bench"].add_parser("batch", help="photos per second: in-process, and Ray with 1 and 2 workers (JSON)")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None)
    p.add_argument("--photos", type=Path, default=Path("tests/data/utkface_mini"), help="folder of photos")
    p.add_argument("--n", type=int, default=16, help="photos used from the folder (default 16)")
    p.add_argument("--edit", default="age=+1", metavar="NAME=STRENGTH", help="the edit made (default age=+1)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: a local one)")
    p.add_argument("--out", type=Path, default=Path("bench/batch.json"), help="the JSON is also written here")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench_batch)


def batch_on_ray(args: argparse.Namespace, strengths: dict[str, float]) -> list:
    """The report rows of ``batch --engine ray``."""
    from ..create.ray_engine import ray_cluster, run_ray_batch
    from ..errors import UserError
    from ..studio.workers import EditorLoader, ModelSpec

    if not any(strengths.values()):
        raise UserError("give at least one non-zero edit, e.g. --edit age=+2")
    loader = EditorLoader(ModelSpec.of(args.model, args.weights, args.directions), tuple(strengths.items()), args.steps)
    with ray_cluster(args.ray_address):
        return run_ray_batch(args.folder, args.out, loader, args.workers)


def ray_renderer(args: argparse.Namespace, batch: int = 32):
    """``augment --engine ray``: the variants rendered and read on Ray workers."""
    from ..create.ray_engine import score_codes, score_rows
    from ..studio.workers import GeneratorLoader, ModelSpec

    loader = GeneratorLoader(ModelSpec.of(args.model, args.weights))

    def renderer(codes):
        scores, images = score_codes(loader, codes, args.workers, batch, keep_images=True, label="augment")
        return images, score_rows(scores)

    return renderer


def ray_labeller(args: argparse.Namespace, batch: int):
    """``directions --engine ray``: the sampled codes rendered and scored on Ray workers."""
    from ..create.ray_engine import score_codes
    from ..studio.workers import GeneratorLoader, ModelSpec

    loader = GeneratorLoader(ModelSpec.of(args.model, args.weights))
    return lambda wplus: score_codes(loader, wplus, args.workers, batch)[0]


def run_bench_batch(args: argparse.Namespace) -> int:
    from ..bench.batch_scaling import bench_batch
    from ..errors import UserError
    from ..latent.edit import parse_strength

    name, strength = parse_strength(args.edit)
    if args.n < 1:
        raise UserError("--n must be at least 1")
    if not args.photos.is_dir():
        raise UserError(f"not a folder: {args.photos}")
    set_threads(1)  # every engine on the same footing: one thread per worker
    result = bench_batch(args.photos, args.model, args.weights, args.directions, {name: strength}, args.n,
                         args.ray_address, log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
