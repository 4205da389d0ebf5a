"""``directions``, ``edit`` and ``bench edit``: finding edit directions and applying them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .distributed import add_engine_args, check_engine_args
from .invert import (
    add_model_args,
    directions_path,
    heldout_and_train_files,
    load_model,
    load_model_directions,
    set_threads,
)

DEFAULT_DATA = Path("../shared/data/utkface")


def register(sub, groups) -> None:
    p = sub.add_parser(
        "directions", help="find a model's edit directions (SVMs on labelled samples, SeFa) and save them"
    )
    add_model_args(p)
    p.add_argument("--n", type=int, default=None, help="faces to sample and label (default: 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="labelled UTKFace photos for the real-photo route (skipped when absent)")  # fmt: skip
    p.add_argument("--n-real", type=int, default=None, help="photos encoded for the real-photo route (default: 3000)")
    p.add_argument("--method", choices=("covariates", "svm"), default=None,
                   help="covariates: regressions of labelled photos' codes on each attribute and what it must keep "
                        "(default when the model has an encoder and --data exists); svm: InterFaceGAN on labelled samples")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="directions file (default: the model's, from the registry)")
    p.add_argument("--refit-by-gradient", default=None, metavar="EMOTION,...",
                   help="instead of a new search: refit these emotions of the model's directions by the emotion net's "
                        "gradient, each kept where it raises its emotion more (e.g. fear,sad,surprise,disgust; --n: faces whose "
                        "gradients are averaged, default 160)")  # fmt: skip
    p.add_argument("--hold-colour", action="store_true",
                   help="instead of a new search: correct the model's attribute directions so that the skin tone (and, "
                        "where that keeps 90%% of the effect, the face's colour) stays (--n: faces fitted on, default 64)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None)
    add_engine_args(p)
    p.set_defaults(func=run_directions)

    p = sub.add_parser("edit", help="move a latent code along edit directions and render it")
    p.add_argument("latent", type=Path, help="latent file written by invert (or the app)")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None, help="directions file (default: the model's)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=STRENGTH",
                   help="an edit in standard deviations, e.g. age=+2 (repeatable)")  # fmt: skip
    p.add_argument("--condition", action="append", default=[], metavar="NAME",
                   help="keep this attribute unchanged: project its direction out of the edits (repeatable)")  # fmt: skip
    p.add_argument("--layers", action="append", default=[], metavar="NAME=FIRST:END",
                   help="W+ rows one edit moves (FIRST:END, or coarse / middle / fine); default: the direction's own")  # fmt: skip
    p.add_argument("--target", action="append", default=[], metavar="NAME=VALUE",
                   help="step along NAME's direction until the classifiers read VALUE, e.g. age=60 or happy=0.9 (repeatable)")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=None,
                   help="how close a target must be read (default: 3 years, 3 degrees, 0.05 for probabilities)")  # fmt: skip
    p.add_argument("--identity-limit", type=float, default=None,
                   help="refuse a target that makes the face read as another person (identity distance, default 0.6)")  # fmt: skip
    p.add_argument("--region", default=None, choices=("eyes", "brows", "mouth", "nose", "face", "hair"),
                   help="keep the edit to this part of the face (a soft landmark mask; hair: all outside the face)")  # fmt: skip
    p.add_argument("--list", action="store_true", help="print the model's directions as JSON and stop")
    p.add_argument("-o", "--out", type=Path, default=None, help="edited face (PNG)")
    p.add_argument("--latent-out", type=Path, default=None, help="also write the edited latent code here")
    p.add_argument("--paste-back", type=Path, default=None, help="original photo to blend the edited face into")
    p.add_argument("--transform", type=Path, default=None, help="transform JSON written by align (with --paste-back)")
    p.add_argument("--composite", type=Path, default=None, help="pasted-back photo (default: --out with -composite)")
    p.set_defaults(func=run_edit)

    p = groups["bench"].add_parser("edit", help="edit strength, identity and leakage per direction (JSON, grid PNG)")
    add_model_args(p)
    p.add_argument("--directions", type=Path, default=None, help="directions file (default: the model's)")
    p.add_argument("--n", type=int, default=200, help="random faces to edit")
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="UTKFace photos: held-out faces are encoded and edited"
    )
    p.add_argument("--n-real", type=int, default=50, help="held-out photos to edit (0: none)")
    p.add_argument("--grid", type=Path, default=None,
                   help="PNG: rows attributes, columns strengths (default: beside --out, named after it)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench/edit.json"),
                   help="the JSON is also written here; the pictures beside it take its name's tail "
                        "(bench/edit_utkface-128.json: edit_grid_utkface-128.png, leakage_random_utkface-128.png)")  # fmt: skip
    p.add_argument("--leakage-photos", type=int, default=8,
                   help="held-out photos edited at photo resolution for the leakage matrix (0: none)")  # fmt: skip
    p.add_argument("--leakage-random", type=int, default=48, help="random faces for the leakage matrix (0: none)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.add_argument(
        "--card", action="store_true", help="write the search and these numbers to DIRECTIONS.md beside the directions"
    )
    p.set_defaults(func=run_bench)


# --------------------------------------------------------------------------- directions


def run_directions(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..latent.directions import save_directions
    from ..training.directions import Search, find_directions

    if args.refit_by_gradient is not None and args.hold_colour:
        raise UserError("--refit-by-gradient and --hold-colour are separate steps: run one, then the other")
    if args.refit_by_gradient is not None:
        return run_refit_by_gradient(args)
    if args.hold_colour:
        return run_hold_colour(args)
    search = Search()
    if args.n is not None:
        if args.n < 100:
            raise UserError("--n must be at least 100 (the SVMs train on the top and bottom fifths)")
        search.n = args.n
    if args.n_real is not None:
        search.n_real = args.n_real
    search.seed = args.seed
    check_engine_args(args)
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    out = directions_path(m, args.out)
    train_files = None
    if m.encoder is not None and search.n_real > 0 and args.data.is_dir():
        train_files, _ = heldout_and_train_files(args.data, m.folder)
    elif search.n_real > 0:
        print("real-photo route skipped: " + ("the model has no encoder" if m.encoder is None else f"{args.data} not found"),
              file=sys.stderr)  # fmt: skip
    started = time.monotonic()
    method = args.method or ("covariates" if train_files and args.engine != "ray" else "svm")
    if method == "covariates" and args.engine == "ray":
        raise UserError("--engine ray distributes the svm method's sampling and labelling; covariates run here (--engine local)")
    if method == "covariates":
        from ..training.covariate_directions import search_with_covariates

        if not train_files:
            raise UserError("--method covariates needs the model's encoder and labelled photos (--data)")
        n_photos = search.n_real if args.n_real is not None else 5000
        directions, report = search_with_covariates(m.generator, m.encoder, args.data, train_files, n_photos,
                                                    seed=search.seed, log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    elif args.engine == "ray":  # sampling and labelling on Ray workers; the fits stay here
        from ..create.ray_engine import ray_cluster
        from .distributed import ray_labeller

        with ray_cluster(args.ray_address):
            directions, report = find_directions(m.generator, search, m.encoder, args.data, train_files,
                                                 label=ray_labeller(args, search.batch))  # fmt: skip
    else:
        directions, report = find_directions(m.generator, search, m.encoder, args.data, train_files)
    report["model"] = m.name
    save_directions(out, directions, m.name, report)
    summary = {
        "directions": str(out), "model": m.name, "n": search.n, "seconds": round(time.monotonic() - started, 1),
        "shipped": {k: {"kind": d.kind, "layers": list(d.layers), "accuracy": d.info.get("accuracy")} for k, d in directions.items()},
        "method": method, "fits": report["fits"], "real_route": report.get("real_route"), "engine": args.engine,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


def run_refit_by_gradient(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..latent.directions import read_report, save_directions
    from ..models.mini_xception import EMOTIONS
    from ..training.gradient_directions import FIT_FACES, refit_by_gradient

    names = [n.strip() for n in args.refit_by_gradient.split(",") if n.strip()]
    wrong = [n for n in names if n not in EMOTIONS]
    if not names or wrong:
        raise UserError(f"--refit-by-gradient takes emotions ({', '.join(EMOTIONS)}), not {', '.join(wrong) or 'nothing'}")
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    current = load_model_directions(m, None)
    missing = [n for n in names if n not in current]
    if missing:
        raise UserError(f"model {m.name} has no {', '.join(missing)} direction to refit; find its directions first")
    started = time.monotonic()
    search = read_report(directions_path(m, None))
    directions, report = refit_by_gradient(m.generator, current, names, args.seed, args.n or FIT_FACES,
                                           search.get("attribute_sd"), log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    out = directions_path(m, args.out)
    stored = {**search, "gradient_refit": report}
    for name, fit in report.items():  # a replaced direction no longer carries the regression's correction
        if fit["kept"] != "regression":
            stored.get("decorrelated", {}).pop(name, None)
    save_directions(out, directions, m.name, stored)
    print(json.dumps({"directions": str(out), "model": m.name, "refit": report,
                      "seconds": round(time.monotonic() - started, 1)}, indent=2))  # fmt: skip
    return 0


def run_hold_colour(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..latent.directions import read_report, save_directions
    from ..training.colour_hold import FIT_FACES, fit_codes, hold_colour

    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    current = load_model_directions(m, None)
    if not any(d.kind == "attribute" for d in current.values()):
        raise UserError(f"model {m.name} has no attribute directions to correct; find its directions first")
    n = args.n or FIT_FACES
    if n < 8:
        raise UserError("--n must be at least 8 faces")
    train_files = heldout_and_train_files(args.data, m.folder)[0] if m.encoder is not None and args.data.is_dir() else None
    codes = fit_codes(m.generator, m.encoder, args.data, train_files, n, args.seed)
    started = time.monotonic()
    directions, report = hold_colour(m.generator, current, codes, log=lambda line: print(line, file=sys.stderr))
    out = directions_path(m, args.out)
    save_directions(out, directions, m.name, {**read_report(directions_path(m, None)), "colour_held": report})
    print(json.dumps({"directions": str(out), "model": m.name, "faces": "encoded photos" if train_files else "random",
                      "held": report, "seconds": round(time.monotonic() - started, 1)}, indent=2))  # fmt: skip
    return 0


# --------------------------------------------------------------------------- edit


def run_edit(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..faces.images import load_image, save_image
    from ..latent.directions import Direction
    from ..latent.edit import edit_latent, parse_layers, parse_strength
    from ..latent.files import load_latent_for, save_latent

    if not args.list and args.out is None:
        raise UserError("give --out for the edited face (or --list)")
    if args.transform is not None and args.paste_back is None:
        raise UserError("--transform goes with --paste-back PHOTO")
    from ..latent.target_edit import parse_target

    strengths = dict(parse_strength(s) for s in args.set)  # bad input fails before the model loads
    targets = [parse_target(t) for t in args.target]
    photo = load_image(args.paste_back) if args.paste_back is not None else None
    m = load_model(args.model, args.weights)
    G = m.generator
    directions: dict[str, Direction] = load_model_directions(m, args.directions)
    if args.list:
        print(json.dumps({k: {"kind": d.kind, "layers": list(d.layers), "scale": round(d.scale, 4), **d.info}
                          for k, d in directions.items()}, indent=2))  # fmt: skip
        return 0
    if not strengths and not targets:
        raise UserError(f"give at least one --set NAME=STRENGTH or --target NAME=VALUE; this model has {', '.join(directions)}")
    layers = dict(parse_layers(s, G.n_latent) for s in args.layers)
    latent = load_latent_for(args.latent, G, m.name)
    if (targets or args.region) and latent.latent.shape[0] != 1:
        raise UserError(f"--target and --region work on one face; {args.latent.name} holds {latent.latent.shape[0]}")
    edited = edit_latent(latent, G.n_latent, directions, strengths, args.condition, layers) if strengths else latent
    if latent.generator:
        from ..models.checkpoints import load_native

        G = load_native(args.latent.parent / latent.generator).to(G.device).eval()  # the face's tuned generator
    from dataclasses import replace

    from ..faces.attributes import IDENTITY_SAME
    from ..latent.regions import localize
    from ..latent.target_edit import reach_targets
    from ..models.render import render

    reports = []
    if targets:
        moved, reached = reach_targets(G, edited.wplus(G.n_latent), edited.noise, directions, targets, args.tolerance,
                                       IDENTITY_SAME if args.identity_limit is None else args.identity_limit, args.condition)  # fmt: skip
        edited = replace(edited, latent=moved, space="wplus")
        reports = [{"name": r.name, "target": r.target, "reached": r.reached, "value": round(r.value, 3),
                    "strength": round(r.strength, 3), "steps": r.steps, "identity_distance": round(r.identity_distance, 3),
                    "message": r.message} for r in reached]  # fmt: skip
    image = render(G, edited.wplus(G.n_latent), edited.noise)
    if args.region:
        unedited = render(G, latent.wplus(G.n_latent), edited.noise)
        image = localize(unedited[0], image[0], args.region)[None]
    faces = list(image)
    paths = (
        [args.out]
        if len(faces) == 1
        else [args.out.with_name(f"{args.out.stem}-{i}{args.out.suffix}") for i in range(len(faces))]
    )
    for face, path in zip(faces, paths):
        save_image(face, path)
    result = {"out": [str(p) for p in paths], "space": edited.space, "edits": strengths, "conditioning": args.condition}
    if reports:
        result["targets"] = reports
    if args.region:
        result["region"] = args.region
    if args.latent_out is not None:
        save_latent(args.latent_out, edited)
        result["latent"] = str(args.latent_out)
    if photo is not None:
        reference = render(G, latent.wplus(G.n_latent)[:1], edited.noise)[0]
        composite, face_path = paste(photo, faces[0], args, m.alignment, latent.transform, reference)
        result["composite"], result["face"] = str(composite), str(face_path)
    print(json.dumps(result))
    missed = [r["message"] for r in reports if not r["reached"]]
    for message in missed:  # the closest face is written all the same
        print(f"error: {message}", file=sys.stderr)
    return 2 if missed else 0


def paste(photo, face, args: argparse.Namespace, template: str, stored: dict | None = None,
          reference=None) -> tuple[Path, Path]:  # fmt: skip
    """The edit rendered into the photo at its resolution (the change from ``reference``, the
    unedited render, to ``face``), in the frame of ``--transform``, else of the transform
    ``invert`` stored in the latent, else of the photo's largest face. Writes the composite and
    the edited face at the photo's resolution; returns both paths."""
    from ..errors import UserError
    from ..faces.align import AlignedFace, alignment_matrix
    from ..faces.detection import find_faces, select_face
    from ..faces.images import save_image
    from ..faces.photo_render import render_on_photo
    from .align import read_transform

    if args.transform is not None:
        aligned = AlignedFace.from_dict(read_transform(args.transform))
    elif stored is not None:
        aligned = AlignedFace.from_dict(stored)
    else:
        if template == "unknown":
            raise UserError(
                "without --transform the model's alignment template is needed; give --transform T.json from align"
            )
        found = select_face(find_faces(photo), 0)
        size = face.shape[1]
        aligned = AlignedFace(image=face, matrix=alignment_matrix(found.landmarks, template, size), template=template,
                              size=size, face=found, source_size=(photo.shape[1], photo.shape[0]), face_index=0)  # fmt: skip
    out = args.composite or args.out.with_name(f"{args.out.stem}-composite{args.out.suffix}")
    rendered = render_on_photo(photo, aligned, face if reference is None else reference, face)
    save_image(rendered.photo, out)
    face_out = out.with_name(f"{args.out.stem}-face{out.suffix}")
    save_image(rendered.face, face_out)
    return out, face_out


# --------------------------------------------------------------------------- bench


def picture_tag(out: Path) -> str:
    """What tells one run's pictures from another's: the tail of the JSON's name after "edit"
    (bench/edit_utkface-128.json -> "_utkface-128"; bench/edit.json -> "")."""
    tail = out.stem.removeprefix("edit")
    return tail if not tail or tail[0] in "_-" else f"_{tail}"


def run_bench(args: argparse.Namespace) -> int:
    from ..bench.edit import bench_edits
    from ..errors import UserError
    from ..training.data import load_faces
    from .invert import evenly_spaced

    if args.n < 2:
        raise UserError("--n must be at least 2")
    set_threads(args.threads)
    m = load_model(args.model, args.weights)
    directions = load_model_directions(m, args.directions)
    path = directions_path(m, args.directions)
    real = None
    if args.n_real > 0:
        if m.encoder is None:
            raise UserError(f"model {m.name} has no encoder for the held-out photos; give --n-real 0")
        if not args.data.is_dir():
            raise UserError(f"data folder not found: {args.data} (or give --n-real 0)")
        _, held = heldout_and_train_files(args.data, m.folder)
        real = load_faces(args.data, evenly_spaced(held, args.n_real), m.generator.config.resolution)
    tag = picture_tag(args.out)
    grid = args.grid or args.out.with_name(f"edit_grid{tag}.png")
    result = bench_edits(m.generator, directions, args.n, m.encoder, real, grid=grid,
                         log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    result["model"] = m.name
    if args.leakage_photos or args.leakage_random:
        from ..bench.leakage import bench_leakage

        photos = []  # the photos go through the studio, which serves registry models
        if args.leakage_photos and args.n_real > 0 and args.weights is None and args.data.is_dir():
            _, held = heldout_and_train_files(args.data, m.folder)
            photos = [args.data / f for f in evenly_spaced(held, args.leakage_photos)]
        from ..latent.directions import read_report

        spread = read_report(path).get("attribute_sd") if path.is_file() else None
        result["leakage"] = bench_leakage(m, directions, photos, args.leakage_random, args.out.parent, tag, spread=spread,
                                          log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.card:
        from ..bench.edit import card_text
        from ..latent.directions import read_report

        card = path.parent / "DIRECTIONS.md"
        card.write_text(card_text(read_report(path), result))
        print(f"wrote {card}", file=sys.stderr)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
