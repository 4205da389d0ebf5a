"""``train generator`` and ``export generator``: the embedded model's training."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_precision_arg

DEFAULT_OUT = Path("weights/utkface-64")


def register(sub, groups) -> None:
    p = groups["train"].add_parser("generator", help="train the embedded generator + encoder (resumable)")
    p.add_argument("--data", type=Path, required=True, help="folder of training faces (UTKFace aligned crops)")
    p.add_argument("--recipe", default="ae-w", help="training recipe (see pipeline/training/generator_train.py)")
    p.add_argument("--run-dir", type=Path, default=None, help="full training state (default runs/<recipe>)")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--max-cpu-minutes", type=float, default=None, help="stop after this much CPU time in total")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="where to train: cpu, or cuda where PyTorch sees a GPU")
    add_precision_arg(p)
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--export", type=Path, default=None, help="after training, write the shippable model here")
    p.add_argument("--compact-state", type=Path, default=DEFAULT_OUT / "train_state.safetensors",
                   help="committed half-precision training state used to resume on a fresh clone")  # fmt: skip
    p.add_argument("--snapshot-every", type=int, default=None,
                   help="also keep a compact state every this many images (RUN_DIR/snapshots), to benchmark each")  # fmt: skip
    p.add_argument("--edit-directions", type=Path, default=None,
                   help="directions file fitted on this model's W: the critic's edited codes move along these "
                        "(default: the ones kept in the training state)")  # fmt: skip
    p.set_defaults(func=run_train)

    p = groups["train"].add_parser("prior", help="fit a model's random-face prior to its encoded training faces")
    p.add_argument("--data", type=Path, required=True, help="folder of the model's training faces (UTKFace aligned crops)")
    p.add_argument("--model", default=None, help="registry model (default: the default model)")
    p.add_argument("--weights", type=Path, default=None, help="a model folder instead of a registry model")
    p.add_argument("--out", type=Path, default=None, help="prior file (default: the model's, see the registry)")
    p.add_argument("--n", type=int, default=None, help="training faces encoded (never the held-out ones; default 4000)")
    p.add_argument("--components", type=int, default=None, help="mixture components (default: one per 4 faces, at most 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_train_prior)
    register_bench(groups)


def run_train(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..training.generator_train import RECIPES, export, recipe_with, train
    from ..training.sharp import trainer_for

    if args.recipe not in RECIPES:
        raise UserError(f"unknown recipe {args.recipe!r}; choose from {', '.join(RECIPES)}")
    if not args.data.is_dir():
        raise UserError(f"training data folder not found: {args.data}")
    if args.edit_directions is not None and not args.edit_directions.is_file():
        raise UserError(f"directions file not found: {args.edit_directions}")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise UserError(f"--snapshot-every must be a positive number of images, not {args.snapshot_every}")
    if args.device != "cpu" and not _device_available(args.device):
        raise UserError(f"device {args.device!r} is not available to PyTorch here (train with --device cpu)")
    recipe = recipe_with(args.recipe, batch=args.batch)
    run_dir = args.run_dir or Path("runs") / args.recipe
    trainer = train(
        args.data, recipe, run_dir, max_images=args.max_images, max_minutes=args.max_minutes, max_cpu_minutes=args.max_cpu_minutes,
        resume=not args.fresh, compact_state=args.compact_state, threads=args.threads,
        trainer_class=trainer_for(recipe), edit_directions=args.edit_directions, device=args.device,
        precision=args.precision, snapshot_every=args.snapshot_every,
    )  # fmt: skip
    if args.export:
        export(trainer, args.data, args.export)
        trainer.save_compact(args.export / "train_state.safetensors")
        print(f"exported to {args.export}")
    return 0


def run_train_prior(args: argparse.Namespace) -> int:
    import json

    from ..errors import UserError
    from ..models.registry import companion_path
    from ..studio.models import read_model
    from ..training.data import load_faces
    from ..training.prior_fit import FACES, chosen_faces, fit_to_faces
    from .invert import heldout_and_train_files

    if not args.data.is_dir():
        raise UserError(f"training data folder not found: {args.data}")
    if args.n is not None and args.n < 1:
        raise UserError("--n must be a positive number of faces")
    model = read_model(args.model, args.weights)
    if model.encoder is None:
        raise UserError(f"model {model.name} has no encoder: a prior is fitted to encoded faces")
    train_files, held = heldout_and_train_files(args.data, model.folder)
    if not train_files:
        raise UserError(f"no training faces in {args.data} ({len(held)} images, all held out for evaluation)")
    chosen = chosen_faces(len(train_files), args.n or FACES, args.seed)
    faces = load_faces(args.data, [train_files[i] for i in chosen], model.generator.config.resolution)
    prior = fit_to_faces(model.encoder, faces, args.components, args.seed)
    prior.info["model"] = model.name
    out = prior.save(args.out or companion_path(model.name, "prior", model.weights_dir))
    print(json.dumps({"prior": str(out), **prior.info}))
    return 0


def _device_available(device: str) -> bool:
    import torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError):
        return False
    return True


def register_bench(groups) -> None:
    p = groups["bench"].add_parser("generator", help="quality of a generator: face rate, KID, reconstruction (JSON)")
    p.add_argument(
        "--data", type=Path, required=True, help="the training data folder (held-out faces are read from it)"
    )
    p.add_argument("--weights", type=Path, default=DEFAULT_OUT, help="model folder with generator/encoder safetensors")
    p.add_argument("--n-kid", type=int, default=2000)
    p.add_argument("--n-faces", type=int, default=500)
    p.add_argument("--n-recon", type=int, default=200)
    p.add_argument("--n-edit", type=int, default=100, help="held-out faces moved ±3σ along each attribute direction")
    p.add_argument("--json", action="store_true")
    p.add_argument("--card", action="store_true", help="write the numbers into the model folder's MODEL_CARD.md")
    p.add_argument("--comparison", type=Path, default=None, help="JSON of a recipe comparison to include in the card")
    p.set_defaults(func=run_bench)

    p = groups["bench"].add_parser("generator-speed", help="fast vs straightforward generator path: images/s (JSON)")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass")
    p.add_argument("--train-batch", type=int, default=16, help="images per training step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: all cores)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_speed_bench)


def run_speed_bench(args: argparse.Namespace) -> int:
    import json

    from ..bench.generator_speed import generator_speed

    result = generator_speed(args.batch, args.train_batch, args.repeats, args.threads)
    text = json.dumps(result, indent=None if args.json else 2)
    print(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..bench.evaluate import evaluate
    from ..latent.prior import model_prior
    from ..models.checkpoints import load_native
    from ..models.encoder import load_encoder

    G = load_native(args.weights / "generator.safetensors")
    enc_path = args.weights / "encoder.safetensors"
    E = load_encoder(enc_path, G) if enc_path.exists() else None
    directions = None
    if (args.weights / "directions.safetensors").exists() and args.n_edit:
        from ..latent.directions import load_directions

        found = load_directions(args.weights / "directions.safetensors", G.style_dim, G.n_latent)
        directions = {k: d for k, d in found.items() if d.kind == "attribute"}
    prior = model_prior(args.weights.name, G, args.weights)  # the folder's prior.safetensors, if it has one
    result = evaluate(G, E, args.data, n_kid=args.n_kid, n_faces=args.n_faces, n_recon=args.n_recon,
                      log=lambda m: print(m, file=sys.stderr), directions=directions, n_edit=args.n_edit,
                      prior=prior)  # fmt: skip
    info = args.weights / "training.json"
    if info.exists():
        train = json.loads(info.read_text())["train"]
        result["images_seen"] = train["images_seen"]
        result["train_cpu_hours"] = round(train["cpu_seconds"] / 3600, 3)
        result["train_images_per_second"] = round(train["images_seen"] / max(1, train["wall_seconds"]), 2)
    print(json.dumps(result, indent=2 if not args.json else None))
    if args.card:
        from ..training.model_card import write_model_card

        comparison = json.loads(args.comparison.read_text()) if args.comparison else None
        (args.weights / "bench.json").write_text(json.dumps(result, indent=2))
        write_model_card(args.weights, result, comparison)
    return 0
