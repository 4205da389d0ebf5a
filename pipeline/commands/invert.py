"""``invert``, ``train encoder`` and ``bench inversion``: from an aligned face to its latent code."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from . import add_precision_arg


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="registry model (default: the default model)")
    p.add_argument("--weights", type=Path, default=None,
                   help="model folder (generator.safetensors, encoder.safetensors) instead of the registry's")  # fmt: skip


def register(sub, groups) -> None:
    register_bench_photo(groups)
    p = sub.add_parser("invert", help="find the latent code of a face: aligns, encodes, optimises")
    p.add_argument("image", type=Path,
                   help="photo (the face is found and aligned) or a face written by align (its transform JSON beside it)")  # fmt: skip
    add_model_args(p)
    p.add_argument("--face", type=int, default=0, help="which face in a photo, 0 = largest (see align --list-faces)")
    p.add_argument("--aligned", action="store_true", help="the image is already an aligned face: skip the face search")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: 100; baseline 1000)")
    p.add_argument("--space", choices=("w", "wplus", "w+"), default=None, help="latent space (default: w+; baseline w)")
    p.add_argument("--noise", action="store_true", help="also optimise the noise maps")
    p.add_argument("--pti", "--tune", action="store_true", help="pivotal tuning: also fine-tune a copy of the generator")
    p.add_argument("--baseline", action="store_true", help="the StyleGAN2-ADA projector's settings (slow reference)")
    p.add_argument("--init", type=Path, default=None, help="start from this latent file (e.g. to refine it)")
    p.add_argument("--pti-steps", type=int, default=None, help="pivotal tuning steps (default: 60)")
    p.add_argument("-o", "--out", type=Path, required=True, help="latent file (.safetensors)")
    p.add_argument("--preview", type=Path, default=None, help="the reconstruction PNG (default: --out with .png)")
    p.add_argument("--json", action="store_true",
                   help="one JSON line: LPIPS, PSNR, identity distance (same person below 0.6), steps, seconds")  # fmt: skip
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_invert)

    p = groups["train"].add_parser("encoder", help="fine-tune the model's encoder against its generator (resumable)")
    p.add_argument("--data", type=Path, required=True, help="training faces folder (UTKFace aligned crops)")
    add_model_args(p)
    p.add_argument("--out", type=Path, default=None, help="folder for encoder.safetensors (default: the model folder)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/encoder"), help="training state, for resuming")
    p.add_argument("--max-minutes", type=float, default=10.0)
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=200, help="held-out faces measured before and after")
    p.add_argument("--refine-steps", type=int, default=0,
                   help="train a refiner instead, the encoder kept: this many corrections of its guess, each from the "
                        "photo and the photo minus what the guess draws (refiner.safetensors; a model that has one "
                        "goes on training it)")  # fmt: skip
    p.add_argument("--calibrated", action="store_true",
                   help="train against the calibrated LPIPS the benchmarks read, not equally weighted features")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--threads", type=int, default=None)
    add_precision_arg(p)
    p.set_defaults(func=run_train_encoder)

    p = groups["bench"].add_parser("inversion", help="projector baseline vs ours on held-out faces (JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="training data folder: the model's held-out faces are read from it")
    src.add_argument("--images", type=Path, help="folder of aligned faces")
    add_model_args(p)
    p.add_argument("--n", type=int, default=20, help="number of faces")
    p.add_argument("--steps", type=int, default=None, help="our steps (default: the default settings)")
    p.add_argument("--no-baseline", action="store_true", help="skip the (slow) baseline")
    p.add_argument("--pti", action="store_true", help="also measure pivotal tuning")
    p.add_argument("--grid", type=Path, default=None, help="PNG: input | encoder | baseline | ours (| PTI) per face")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench)


# --------------------------------------------------------------------------- model


def load_model(model: str | None, weights: Path | None):
    """The generator and encoder of a registry model, or of a model folder (``--weights``):
    :func:`pipeline.studio.models.read_model`."""
    from ..studio.models import read_model

    return read_model(model, weights)


def directions_path(model, explicit: Path | None) -> Path:
    from ..studio.models import directions_path

    return directions_path(model, explicit)


def load_model_directions(model, explicit: Path | None):
    """The model's edit directions (``explicit``: another file): :func:`pipeline.studio.models.load_model_directions`."""
    from ..studio.models import load_model_directions

    return load_model_directions(model, explicit)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- invert


def aligned_input(path: Path, image, template: str, size: int, face_index: int, aligned: bool):
    """(aligned face, transform dict or None): the face of a photo, cut out as the model expects.

    A face written by ``align`` (its transform JSON beside it) or ``--aligned`` is used as it is.
    """
    from ..errors import UserError
    from ..faces.align import AlignedFace, align_face
    from ..faces.detection import find_faces, select_face
    from .align import read_transform

    sidecar = path.with_suffix(".json")
    if aligned or sidecar.is_file():
        if image.shape[0] != image.shape[1]:
            raise UserError(f"{path.name} is {image.shape[1]}x{image.shape[0]}: an aligned face is square")
        if not sidecar.is_file():
            return image, None
        transform = read_transform(sidecar)
        AlignedFace.from_dict(transform)  # a clear message now rather than at paste-back
        return image, transform
    if template == "unknown":
        raise UserError("the model's alignment template is unknown: run align --template NAME first, or pass --aligned")
    found = align_face(image, select_face(find_faces(image), face_index), template, size, face_index=face_index)
    return found.image, {"source": path.name, **found.to_dict()}


def run_invert(args: argparse.Namespace) -> int:
    import hashlib

    from ..bench.inversion import Scorer, identity_function
    from ..errors import UserError
    from ..faces.attributes import IDENTITY_SAME
    from ..faces.images import load_image, save_image
    from ..latent.files import load_latent_for, save_latent
    from ..latent.inversion import BASELINE, DEFAULTS, invert, prepare_target
    from ..models.checkpoints import save_native
    from ..models.render import to_uint8

    if args.out.suffix != ".safetensors":
        raise UserError(f"--out must be a .safetensors file, not {args.out.name}")
    if args.steps is not None and args.steps < 0:
        raise UserError("--steps must be >= 0")
    image = load_image(args.image)  # fails fast, before the model loads
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    face, transform = aligned_input(args.image, image, m.alignment, m.generator.config.resolution, args.face, args.aligned)
    init = None
    if args.init is not None:
        start = load_latent_for(args.init, m.generator, m.name)
        if start.latent.shape[0] != 1:
            raise UserError(f"{args.init.name} holds {start.latent.shape[0]} codes; invert starts from one")
        init = start.latent

    def progress(step: int, loss: float, preview) -> None:
        print(f"step {step}: loss {loss:.4f}", file=sys.stderr)

    settings = BASELINE if args.baseline else DEFAULTS
    if args.pti_steps is not None:
        settings = replace(settings, pti_steps=args.pti_steps)
    space = "wplus" if args.space == "w+" else args.space
    result = invert(m.generator, face, m.encoder, init=init, steps=args.steps, space=space, settings=settings,
                    optimize_noise=True if args.noise else None, pti=args.pti, callback=progress, preview_every=25)  # fmt: skip
    latent = result.latent(m.name, m.alignment)
    latent.transform = transform
    latent.source_sha256 = hashlib.sha256(args.image.read_bytes()).hexdigest()
    if result.generator is not None:
        # The tuned copy sits next to the latent, never over the shipped weights.
        tuned = save_native(result.generator, args.out.parent, args.out.stem + ".pti")
        latent.generator = tuned.name
    save_latent(args.out, latent)
    reconstruction = to_uint8(result.image[0])
    preview = args.preview or args.out.with_suffix(".png")
    save_image(reconstruction, preview, model=m.name)

    target = to_uint8(prepare_target(face, m.generator.config.resolution)[0])  # what the optimiser matched
    quality = Scorer(target, identity_function()).score(reconstruction)
    report = {"latent": str(args.out), "preview": str(preview), "model": m.name, "space": result.space,
              "aligned_here": transform is not None and not args.image.with_suffix(".json").is_file(),
              "lpips": round(quality["lpips"], 4), "psnr": round(quality["psnr"], 2),
              "identity_distance": None if quality["identity"] is None else round(quality["identity"], 3),
              "steps": result.steps, "pti_steps": result.pti_steps, "seconds": round(result.seconds, 2),
              "stopped": result.stopped, "loss": round(result.history[-1]["loss"], 5)}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        identity = report["identity_distance"]
        verdict = "" if identity is None else f", identity distance {identity} ({'same' if identity < IDENTITY_SAME else 'not the same'} person)"
        print(f"{args.out} ({result.space}, {result.steps} steps, {report['seconds']} s): "
              f"LPIPS {report['lpips']}, PSNR {report['psnr']} dB{verdict}; reconstruction {preview}")  # fmt: skip
    return 0


# --------------------------------------------------------------------------- train encoder


def heldout_and_train_files(data: Path, folder: Path | None) -> tuple[list[str], list[str]]:
    """(train, held-out) file names: the model folder's heldout.txt, else the fixed split."""
    from ..training.data import heldout_split, list_images, read_heldout

    files = list_images(data)
    if folder is not None and (folder / "heldout.txt").is_file():
        held = read_heldout(folder / "heldout.txt")
        held_set = set(held)
        return [f for f in files if f not in held_set], [f for f in held if f in set(files)]
    return heldout_split(files)


def evenly_spaced(items: list, n: int) -> list:
    import numpy as np

    if n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def run_train_encoder(args: argparse.Namespace) -> int:
    from ..bench.inversion import identity_function
    from ..errors import UserError
    from ..models.encoder import with_refiner
    from ..training.data import load_faces
    from ..training.encoder_train import EncoderRecipe, file_digest, train_encoder, write_encoder

    if not args.data.is_dir():
        raise UserError(f"training data folder not found: {args.data}")
    if args.refine_steps < 0:
        raise UserError("--refine-steps must be 0 or more")
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    if m.encoder is None:
        raise UserError(f"model {m.name} has no encoder.safetensors to fine-tune")
    encoder = with_refiner(m.encoder, m.generator, args.refine_steps) if args.refine_steps else m.encoder
    out = args.out or m.folder
    if out is None:
        raise UserError("give --out: the model folder is unknown")
    train_files, held = heldout_and_train_files(args.data, m.folder)
    res = m.generator.config.resolution
    train_faces = load_faces(args.data, train_files, res, cache_dir=args.run_dir.parent / "cache")
    eval_faces = load_faces(args.data, evenly_spaced(held, args.n_eval), res)
    gen_file = (m.folder / "generator.safetensors") if m.folder else None
    digest = file_digest(gen_file) if gen_file and gen_file.is_file() else m.name
    E, info = train_encoder(m.generator, encoder, train_faces, eval_faces, args.run_dir, digest,
                            max_minutes=args.max_minutes, max_images=args.max_images, resume=not args.fresh,
                            recipe=EncoderRecipe(calibrated=args.calibrated),
                            identity=identity_function(), precision=args.precision,
                            log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    path = write_encoder(E, info, out)
    print(json.dumps({"encoder": str(path), "before": info["heldout_before"], "after": info["heldout_after"]}))
    return 0


# --------------------------------------------------------------------------- bench


def run_bench(args: argparse.Namespace) -> int:
    import numpy as np

    from ..bench.inversion import bench_faces
    from ..errors import UserError
    from ..faces.images import load_image
    from ..latent.inversion import DEFAULTS
    from ..training.data import load_faces

    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    res = m.generator.config.resolution
    if args.data is not None:
        if not args.data.is_dir():
            raise UserError(f"data folder not found: {args.data}")
        _, held = heldout_and_train_files(args.data, m.folder)
        names = evenly_spaced(held, args.n)
        faces = np.array(load_faces(args.data, names, res))  # a writable copy
    else:
        if not args.images.is_dir():
            raise UserError(f"image folder not found: {args.images}")
        paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})[: args.n]
        if not paths:
            raise UserError(f"no images in {args.images}")
        names = [p.name for p in paths]
        faces = [load_image(p) for p in paths]
    ours = DEFAULTS if args.steps is None else replace(DEFAULTS, steps=args.steps)
    from ..latent.inversion import BASELINE

    result = bench_faces(m.generator, m.encoder, faces, names, ours=ours, baseline=None if args.no_baseline else BASELINE,
                         pti=args.pti, grid=args.grid, log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    result["model"] = m.name
    import torch

    result["threads"] = torch.get_num_threads()
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


# --------------------------------------------------------------------------- bench photo


def register_bench_photo(groups) -> None:
    p = groups["bench"].add_parser(
        "photo", help="edits at the photo's resolution: zero-edit PSNR, sharpness, edit kept, ghosting, speed (JSON)"
    )
    p.add_argument("photos", type=Path, nargs="*", help="photos (default: held-out UTKFace photos from --data)")
    p.add_argument("--data", type=Path, default=Path("../shared/data/utkface"), help="UTKFace folder for the held-out photos")
    p.add_argument("--n", type=int, default=40, help="held-out photos when none are given (a dozen hides failures)")
    p.add_argument("--n-young", type=int, default=8, help="held-out photos aged 20-30 made 60 (edit to target; 0: none)")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps of each inversion")
    p.add_argument("--model", default=None, help="registry model (default: the default model)")
    p.add_argument("--out", type=Path, default=Path("bench/photo.json"), help="the JSON is also written here")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_bench_photo)


def run_bench_photo(args: argparse.Namespace) -> int:
    from ..bench.photo import bench_photo
    from ..errors import UserError
    from ..studio import Studio
    from ..studio.models import default_model, weights_dir
    set_threads(args.threads)
    photos = list(args.photos)
    if not photos:
        if not args.data.is_dir():
            raise UserError(f"give photos, or a UTKFace folder with --data (not found: {args.data})")
        _, held = heldout_and_train_files(args.data, weights_dir(args.model or default_model()))
        photos = [args.data / f for f in evenly_spaced(held, args.n)]
        ages = {f: f.split("_")[0] for f in held}
        young = [args.data / f for f in evenly_spaced([f for f in held if ages[f].isdigit() and 20 <= int(ages[f]) <= 30], args.n_young)]
    else:
        young = []
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        raise UserError(f"photo not found: {missing[0]}")
    result = bench_photo(Studio(args.model), photos, args.steps, log=lambda s: print(s, file=sys.stderr),
                         young=young if args.n_young else [])  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shown = {k: result[k] for k in ("photos", "summary", "speed", "goals")}
    if "age_60" in result:
        shown["age_60"] = {k: v for k, v in result["age_60"].items() if k != "per_photo"}
    print(json.dumps(shown, indent=2))
    return 0
