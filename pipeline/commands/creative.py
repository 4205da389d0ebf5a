"""``mix``, ``transfer``, ``augment``, ``showcase``, ``batch`` and ``bench creative``; the target and
region options of ``edit`` are carried out here too.

A face is given as a latent file (from invert or the app), a photo (its largest face is
aligned and encoded) or ``seed:N`` (a random face of the model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .distributed import add_engine_args, check_engine_args
from .invert import add_model_args, load_model, load_model_directions, set_threads

SEED_PREFIX = "seed:"


def register(sub, groups) -> None:
    p = sub.add_parser("mix", help="mix two faces: interpolate in W+ and take layer groups from the second")
    p.add_argument("a", help="face A: latent file, photo or seed:N")
    p.add_argument("b", help="face B: latent file, photo or seed:N")
    add_model_args(p)
    p.add_argument("--amount", type=float, default=0.5, help="interpolation, 0: A, 1: B (default 0.5)")
    p.add_argument("--layers", action="append", default=[], choices=("coarse", "middle", "fine"),
                   help="take these W+ rows wholly from B (coarse: pose and shape; middle: features; fine: colour)")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, required=True, help="mixed face (PNG)")
    p.add_argument("--latent-out", type=Path, default=None, help="also write the mixed code here")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_mix)

    p = sub.add_parser("transfer", help="give face A the expression of face B (emotion, smile, mouth directions only)")
    p.add_argument("a", help="face A (keeps its identity): latent file, photo or seed:N")
    p.add_argument("b", help="face B (gives its expression): latent file, photo or seed:N")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None, help="directions file (default: the model's)")
    p.add_argument("--mode", choices=("replace", "add"), default="replace",
                   help="replace A's expression by B's (default), or add B's (B minus the average face) to it")  # fmt: skip
    p.add_argument("--strength", type=float, default=1.0, help="how much of B's expression (default 1)")
    p.add_argument("-o", "--out", type=Path, required=True, help="result face (PNG)")
    p.add_argument("--latent-out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_transfer)

    p = sub.add_parser("augment", help="N labelled variants of one face across age, pose and expression (zip + CSV)")
    p.add_argument("face", help="latent file, photo or seed:N")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None)
    p.add_argument("--n", type=int, default=32, help="variants (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, required=True, help="zip file")
    p.add_argument("--threads", type=int, default=None)
    add_engine_args(p)
    p.set_defaults(func=run_augment)

    p = sub.add_parser("showcase", help="demo exports: a sweep along directions (GIF, MP4), before/after, contact sheet")
    p.add_argument("face", help="latent file, photo or seed:N")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None)
    p.add_argument("--sweep", action="append", default=[], metavar="NAME",
                   help="direction(s) swept together (repeatable; default: age)")  # fmt: skip
    p.add_argument("--range", type=float, nargs=2, default=(-2.0, 2.0), metavar=("FROM", "TO"),
                   help="sweep strengths in standard deviations (default -2 2)")  # fmt: skip
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--fps", type=int, default=12)
    p.add_argument("--sheet", action="append", default=[], metavar="NAME",
                   help="rows of the contact sheet (repeatable; default: the first four directions)")  # fmt: skip
    p.add_argument("--after", action="append", default=[], metavar="NAME=STRENGTH",
                   help="the edit shown in the before/after (default: the sweep's end)")  # fmt: skip
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for sweep.gif, sweep.mp4, before_after.png, sheet.png")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_showcase)

    p = sub.add_parser("batch", help="edit every photo in a folder (align, encode, edit, paste back); resumable")
    p.add_argument("folder", type=Path, help="folder of photos")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None)
    p.add_argument("--edit", "--set", dest="edit", action="append", default=[], metavar="NAME=STRENGTH",
                   help="an edit in standard deviations, e.g. age=+2 (repeatable)")  # fmt: skip
    p.add_argument("--steps", type=int, default=0, help="optimisation steps after the encoder (default 0: encoder only)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (edited photos, faces/, report.csv)")
    p.add_argument("--threads", type=int, default=None)
    add_engine_args(p)
    p.set_defaults(func=run_batch)

    p = groups["bench"].add_parser("creative", help="one number per creative feature (JSON) and a contact sheet")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None)
    p.add_argument("--faces", type=int, default=20, help="random faces for the target-edit measure")
    p.add_argument("--photos", type=Path, default=Path("tests/data/faces"), help="photos for the batch measure")
    p.add_argument("--out", type=Path, default=Path("bench/creative.json"))
    p.add_argument("--sheet", type=Path, default=Path("bench/creative_sheet.png"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench)


# --------------------------------------------------------------------------- faces


@dataclass
class FaceCode:
    """A face to work on: its W+ code, noise, the generator that renders it, and where it came from."""

    wplus: object  # torch.Tensor (1, n_latent, dim)
    noise: list | None
    generator: object  # the model's generator, or the face's tuned copy
    photo: object | None = None  # np.ndarray: the photo the face was found in
    aligned: object | None = None  # AlignedFace


def load_face(source: str, m) -> FaceCode:
    """``source``: a latent file, a photo, or ``seed:N``."""
    from ..create.batch import align_and_encode
    from ..errors import UserError
    from ..faces.images import load_image
    from ..latent.directions import TRUNCATION
    from ..latent.files import load_latent_for
    from ..latent.prior import model_prior, sample_wplus

    G = m.generator
    if source.startswith(SEED_PREFIX):
        try:
            seed = int(source[len(SEED_PREFIX) :])
        except ValueError:
            raise UserError(f"{source!r}: write seed:N with a whole number N") from None
        return FaceCode(sample_wplus(G, 1, seed, TRUNCATION, model_prior(m.name, G, m.weights_dir)).cpu(), None, G)
    path = Path(source)
    if path.suffix == ".safetensors":
        latent = load_latent_for(path, G, m.name)
        if latent.latent.shape[0] != 1:
            raise UserError(f"{path.name} holds {latent.latent.shape[0]} codes; give a file with one face")
        if latent.generator:
            from ..models.checkpoints import load_native

            G = load_native(path.parent / latent.generator).to(G.device).eval()  # the face's tuned generator
        return FaceCode(latent.wplus(G.n_latent), latent.noise, G)
    if m.alignment == "unknown":
        raise UserError(f"model {m.name}'s alignment template is unknown: give a latent file instead of a photo")
    photo = load_image(path)
    aligned, wplus, noise, _ = align_and_encode(G, m.encoder, m.alignment, photo)
    return FaceCode(wplus, noise, G, photo, aligned)


def render_face(face: FaceCode, wplus):
    from ..models.render import render_one

    return render_one(face.generator, wplus, face.noise)


def attrs_of(images: list, identity: bool = True) -> list:
    from ..faces.attributes import analyze

    return analyze(images, identity=identity)


def write_latent_if_asked(args: argparse.Namespace, result: dict, wplus, m) -> None:
    """``--latent-out``: the result's W+ code as a latent file, named in the printed result."""
    if args.latent_out is None:
        return
    from ..latent.files import Latent, save_latent

    save_latent(args.latent_out, Latent(wplus.cpu(), m.name, "wplus", m.alignment))
    result["latent"] = str(args.latent_out)


def emit(result: dict) -> int:
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- commands


def run_mix(args: argparse.Namespace) -> int:
    from ..faces.attributes import identity_distance
    from ..faces.images import save_image
    from ..latent.mixing import check_groups, mix_codes

    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    check_groups(args.layers, m.generator.n_latent)  # a bad group fails before the faces are encoded
    a, b = load_face(args.a, m), load_face(args.b, m)
    mixed = mix_codes(a.wplus, b.wplus, args.amount, args.layers)
    image = render_face(a, mixed)
    save_image(image, args.out, model=m.name)
    result = {"out": str(args.out), "amount": args.amount, "layers": args.layers}
    fa, fb, fm = attrs_of([render_face(a, a.wplus), render_face(b, b.wplus), image])
    result["identity_distance"] = {"a": round(identity_distance(fm, fa), 3), "b": round(identity_distance(fm, fb), 3)}
    write_latent_if_asked(args, result, mixed, m)
    return emit(result)


def run_transfer(args: argparse.Namespace) -> int:
    from ..faces.attributes import identity_distance
    from ..faces.images import save_image
    from ..latent.expression import transfer_expression

    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    directions = load_model_directions(m, args.directions)
    a, b = load_face(args.a, m), load_face(args.b, m)
    moved = transfer_expression(a.wplus, b.wplus, directions, m.generator.mean_w().cpu(), args.mode, args.strength)
    image = render_face(a, moved)
    save_image(image, args.out, model=m.name)
    fa, fb, fr = attrs_of([render_face(a, a.wplus), render_face(b, b.wplus), image])
    top = lambda f: max(f.emotions, key=f.emotions.get)  # noqa: E731
    result = {"out": str(args.out), "mode": args.mode, "emotion": {"a": top(fa), "b": top(fb), "result": top(fr)},
              "smile": {"a": round(fa.smile, 3), "b": round(fb.smile, 3), "result": round(fr.smile, 3)},
              "identity_distance_to_a": round(identity_distance(fr, fa), 3)}  # fmt: skip
    write_latent_if_asked(args, result, moved, m)
    return emit(result)


def run_augment(args: argparse.Namespace) -> int:
    from ..create.augment import label_agreement, make_variants, write_zip
    from ..errors import UserError

    check_engine_args(args)
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    directions = load_model_directions(m, args.directions)
    face = load_face(args.face, m)
    renderer = None
    if args.engine == "ray":
        if face.generator is not m.generator:
            raise UserError("this latent file has its own tuned generator: use --engine local for it")
        from ..create.ray_engine import ray_cluster
        from .distributed import ray_renderer

        renderer = ray_renderer(args)
    started = time.monotonic()
    if renderer is None:
        variants, base = make_variants(face.generator, face.wplus, directions, args.n, args.seed)
    else:
        with ray_cluster(args.ray_address):
            variants, base = make_variants(face.generator, face.wplus, directions, args.n, args.seed, renderer=renderer)
    path = write_zip(args.out, variants, base, render_face(face, face.wplus), m.name)
    seconds = time.monotonic() - started
    return emit({"out": str(path), "variants": len(variants), "images_per_second": round(len(variants) / seconds, 2),
                 "label_agreement": label_agreement(variants, base)})  # fmt: skip


def run_showcase(args: argparse.Namespace) -> int:
    from ..create.showcase import export_showcase
    from ..latent.edit import parse_strength

    set_threads(args.threads)
    after = dict(parse_strength(s) for s in args.after)
    m = load_model(args.model, args.weights)
    directions = load_model_directions(m, args.directions)
    face = load_face(args.face, m)
    started = time.monotonic()
    files = export_showcase(face.generator, face.wplus, directions, args.out, args.sweep or ["age"], tuple(args.range),
                            args.frames, args.fps, args.sheet, after, m.name, face.noise)  # fmt: skip
    return emit({**{k: str(v) for k, v in files.items()}, "seconds": round(time.monotonic() - started, 2)})


def run_batch(args: argparse.Namespace) -> int:
    from ..create import batch
    from ..errors import UserError
    from ..latent.edit import parse_strength

    strengths = dict(parse_strength(s) for s in args.edit)
    if not strengths:
        raise UserError("give at least one --edit NAME=STRENGTH, e.g. --edit age=+2")
    if args.steps < 0:
        raise UserError("--steps must be 0 or more")
    check_engine_args(args)
    if not args.folder.is_dir():
        raise UserError(f"not a folder: {args.folder}")
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    if m.alignment == "unknown":
        raise UserError(f"model {m.name}'s alignment template is unknown: give --model with --weights")
    directions = load_model_directions(m, args.directions)
    unknown = [n for n in strengths if n not in directions]
    if unknown:
        raise UserError(f"unknown edit direction {unknown[0]!r}; this model has {', '.join(directions)}")
    editor = batch.Editor(m.generator, m.encoder, m.alignment, directions, strengths, m.name, args.steps)
    if args.engine == "ray":
        from .distributed import batch_on_ray

        rows = batch_on_ray(args, strengths)
    else:
        rows = batch.run_batch(args.folder, args.out, editor)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    failed = {r.file: r.reason for r in rows if r.status == "failed"}
    return emit({"out": str(args.out), "report": str(args.out / "report.csv"), "counts": counts, "failed": failed,
                 "engine": args.engine})  # fmt: skip


# --------------------------------------------------------------------------- bench


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.creative import bench_creative
    from ..errors import UserError

    if args.faces < 1:
        raise UserError("--faces must be at least 1")
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    directions = load_model_directions(m, args.directions)
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) if args.photos.is_dir() else []
    result = bench_creative(m.generator, directions, m.name, m.encoder, m.alignment, photos, n_faces=args.faces,
                            sheet=args.sheet, log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
