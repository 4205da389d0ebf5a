"""``sample``: a grid of random faces from a model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model / --checkpoint, shared by every command that renders faces."""
    p.add_argument("--model", default=None, help="registry model name (default: the default model)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a local checkpoint instead (rosinality .pt or native .safetensors)")  # fmt: skip


def model_from_arguments(args: argparse.Namespace):
    from ..models.registry import add_checkpoint, get_model, load_generator

    entry = add_checkpoint(args.checkpoint) if args.checkpoint else get_model(args.model)
    return entry, load_generator(entry)


def register(sub, groups) -> None:
    p = sub.add_parser("sample", help="write a grid of random faces")
    add_model_arguments(p)
    p.add_argument("-n", "--n", type=int, default=16, help="number of faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=0.7, help="1 = no truncation; lower = closer to the nearest mode of the model's prior")
    p.add_argument("-o", "--out", type=Path, required=True, help="PNG file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    import torch

    from ..errors import UserError
    from ..faces.imaging import save_grid
    from ..latent.prior import model_prior, sample_wplus

    if not 1 <= args.n <= 256:
        raise UserError("--n must be between 1 and 256")
    if not 0 < args.truncation <= 1:
        raise UserError("--truncation must be in (0, 1]")
    entry, G = model_from_arguments(args)
    prior = model_prior(entry.name, G) if not args.checkpoint else None
    with torch.no_grad():
        codes = sample_wplus(G, args.n, args.seed, args.truncation, prior)
        images = G.synthesis(codes, noise=G.make_noise(args.n, seed=args.seed), randomize_noise=False)
    path = save_grid(images, args.out, nrow=math.ceil(math.sqrt(args.n)), model=entry.name)
    print(f"wrote {path} ({args.n} faces from {entry.name}, {'its mixture prior' if prior else 'its Gaussian prior'})")
    return 0
