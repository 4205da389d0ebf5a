"""``talk``, ``lipsync``, ``train atnet``, ``train talkmap`` and ``bench talk``: speech to a talking face.

``talk`` makes the video: a face (latent file or photo) saying typed text or lip-syncing
a recording. ``lipsync`` stops at the mouth landmark track and previews it as a line
drawing with the sound. ``train talkmap`` fits, once per model, the map from landmark
changes to latent offsets that ``talk`` renders with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WEIGHTS_DIR = Path("weights/atnet")
DEFAULT_RUN_DIR = Path("runs/atnet")
NATURAL_CLIPS = sorted(Path("tests/data/audio").glob("cmu_arctic_*.wav"))


LATENT_SUFFIXES = {".safetensors"}


def register(sub, groups) -> None:
    p = sub.add_parser("talk", help="a face (latent file or photo) saying text or lip-syncing audio -> MP4 with sound")
    p.add_argument(
        "face", type=Path, help="latent file (.safetensors, from invert) or a photo (aligned and encoded here)"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="text to say (espeak-ng), up to 300 characters")
    source.add_argument("--audio", type=Path, help="speech recording (wav, mp3, ogg, flac, m4a)")
    p.add_argument("-o", "--out", type=Path, required=True, help="video file (.mp4)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice, e.g. en-us, en-gb+f3")
    p.add_argument("--wpm", type=int, default=160, help="speaking rate, words per minute")
    p.add_argument("--pitch", type=int, default=50, help="0-99")
    p.add_argument("--method", choices=["atnet", "phonemes", "baseline"], default=None,
                   help="mouth track: atnet (default for audio), phonemes (default for text), baseline")  # fmt: skip
    p.add_argument("--model", default=None, help="registry model (default: the default model)")
    p.add_argument("--face-index", type=int, default=0, help="photo input: which face, 0 = largest")
    p.add_argument("--paste-back", type=Path, default=None, help="put the talking face back into this photo")
    p.add_argument("--transform", type=Path, default=None,
                   help="transform JSON written by align, for --paste-back (else the face is found again)")  # fmt: skip
    p.add_argument("--no-blinks", action="store_true", help="keep the eyes still")
    p.add_argument("--no-head-motion", action="store_true", help="keep the head still (default: a slight sway)")
    p.add_argument("--keep-expression", action="store_true",
                   help="keep the face's smile while talking (default: the mouth relaxes)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="blink and head-motion timing")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR / "atnet.safetensors", help="AT-net weights")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run_talk)

    p = sub.add_parser("lipsync", help="text or speech audio -> mouth landmark track and a preview video")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="text to speak with espeak-ng")
    source.add_argument("--audio", type=Path, help="speech recording (wav, mp3, ogg, flac, m4a)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice, e.g. en-us, en-gb+f3")
    p.add_argument("--wpm", type=int, default=160, help="speaking rate, words per minute")
    p.add_argument("--pitch", type=int, default=50, help="0-99")
    p.add_argument("--method", choices=["atnet", "phonemes", "baseline"], default=None,
                   help="atnet (default for audio), phonemes (default for text: the exact espeak-ng timings), baseline")  # fmt: skip
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR / "atnet.safetensors")
    p.add_argument("--out", type=Path, default=Path("outputs/lipsync.mp4"), help="preview video (MP4)")
    p.add_argument("--landmarks", type=Path, default=None, help="also save the track (.npz: landmarks, fps, wave)")
    p.set_defaults(func=run_lipsync)

    t = groups["train"].add_parser("atnet", help="train AT-net on synthetic speech (resumable)")
    t.add_argument("--faces", type=Path, default=Path("../shared/data/utkface"),
                   help="training face photos, for mouth and jaw shapes (UTKFace aligned crops)")  # fmt: skip
    t.add_argument("--minutes", type=float, default=None, help="training time (default 15)")
    t.add_argument("--hours", type=float, default=None)
    t.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS_DIR, help="where the shippable weights go")
    t.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="data cache and training state")
    t.add_argument("--utterances", type=int, default=None, help="training utterances (default 1600)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    t.set_defaults(func=run_train)

    m = groups["train"].add_parser("talkmap", help="fit a model's map from mouth and eye landmarks to latent offsets")
    m.add_argument("--model", default=None, help="registry model (default: the default model)")
    m.add_argument("--out", type=Path, default=None, help="talk map file (default: the model's, see the registry)")
    m.add_argument("--faces", type=int, default=300, help="random faces for the directions")
    m.add_argument("--trial-faces", type=int, default=16, help="faces for choosing the W+ rows")
    m.add_argument("--calibration-faces", type=int, default=64, help="faces for calibrating the strengths")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=1)
    m.set_defaults(func=run_train_talkmap)

    b = groups["bench"].add_parser("talk", help="talking videos of held-out photos, measured on the MP4's frames")
    b.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR / "atnet.safetensors")
    b.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="data cache (test speech is made if missing)")
    b.add_argument("--natural", type=Path, nargs="*", default=NATURAL_CLIPS, help="recordings of natural speech")
    b.add_argument("--limit", type=int, default=None, help="evaluate only the first N test utterances")
    b.add_argument("--json", action="store_true", help="compact JSON")
    b.add_argument("--model", default=None, help="face model for the video measurements (default: the default model)")
    b.add_argument("--data", type=Path, default=Path("../shared/data/utkface"), help="UTKFace folder (held-out photos)")
    b.add_argument("--photos", type=Path, nargs="*", default=None, help="photos to use instead of held-out ones")
    b.add_argument("-n", type=int, default=8, help="held-out photos")
    b.add_argument("--video-only", action="store_true", help="skip the landmark measurements on the test speech")
    b.add_argument("--threads", type=int, default=1, help="CPU threads for the generator")
    b.add_argument("--out", type=Path, default=Path("bench/talk.json"), help="also write the result here")
    b.add_argument("--strip", type=Path, default=Path("bench/talk_frames.png"),
                   help="frames of the first photo's clips as a PNG (rows: text, its mouth close-up, natural speech, close-up)")  # fmt: skip
    b.set_defaults(func=run_bench)


def _face_code(args: argparse.Namespace, model):
    """(W+ code, noise maps, generator, photo and alignment for paste-back or None) of the input face."""
    import numpy as np
    import torch

    from ..errors import UserError
    from ..faces.align import align_face
    from ..faces.detection import find_faces, select_face
    from ..faces.images import load_image
    from ..latent.files import load_latent_for
    from ..models.render import from_uint8

    G = model.generator
    if args.face.suffix.lower() in LATENT_SUFFIXES:
        latent = load_latent_for(args.face, G, model.name)
        if latent.latent.shape[0] != 1:
            raise UserError(f"{args.face.name} holds {latent.latent.shape[0]} codes; a video shows one face")
        if latent.generator:  # a pivotally tuned generator saved beside the code
            from ..models.checkpoints import load_native

            tuned = args.face.parent / latent.generator
            if not tuned.is_file():
                raise UserError(f"{args.face.name} needs its tuned generator {tuned.name}, which is missing")
            G = load_native(tuned).eval().requires_grad_(False)
        return latent.wplus(G.n_latent), latent.noise, G, None
    photo = load_image(args.face)
    if model.encoder is None:
        raise UserError(f"model {model.name} has no encoder: run invert on the aligned face and pass the latent file")
    faces = find_faces(photo)
    aligned = align_face(photo, select_face(faces, args.face_index), model.template, model.resolution,
                         face_index=args.face_index)  # fmt: skip
    with torch.no_grad():
        wplus = model.encoder.wplus(from_uint8(np.array(aligned.image))[None].to(G.device)).cpu()
    return wplus, None, G, (photo, aligned)


def _paste_target(args: argparse.Namespace, model, from_photo):
    """(photo, alignment) for --paste-back, or None."""
    from ..faces.align import AlignedFace, align_face
    from ..faces.detection import find_faces, select_face
    from ..faces.images import load_image
    from ..latent.files import load_latent
    from .align import read_transform

    if args.paste_back is None:
        return None
    if args.transform is not None:
        aligned = AlignedFace.from_dict(read_transform(args.transform))
        return load_image(args.paste_back), aligned
    if from_photo is not None and args.paste_back.resolve() == args.face.resolve():
        return from_photo
    if from_photo is None:  # a latent file: invert stored how its face was cut out of the photo
        stored = load_latent(args.face).transform
        if stored is not None:
            return load_image(args.paste_back), AlignedFace.from_dict(stored)
    photo = load_image(args.paste_back)
    face = select_face(find_faces(photo), args.face_index)
    return photo, align_face(photo, face, model.template, model.resolution, face_index=args.face_index)


def run_talk(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UserError
    from ..studio.models import default_model, load_model, weights_dir
    from ..talk.atnet import load_talk_model
    from ..talk.speech import clean_prompt
    from ..talk.talking_head import REFIT_COMMAND, load_model_talk_map, talk_map_path, talk_video
    from ..talk.video import probe

    if args.out.suffix.lower() != ".mp4":
        raise UserError(f"--out must be an .mp4 file, not {args.out.name}")
    if args.text is not None:
        args.text = clean_prompt(args.text)  # refuse a bad prompt before any model loads
    if not args.face.is_file():
        raise UserError(f"face not found: {args.face} (give a latent file or a photo)")
    if args.transform is not None and args.paste_back is None:
        raise UserError("--transform goes with --paste-back PHOTO")
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.model or default_model()
    if not talk_map_path(name, weights_dir(name)).is_file():  # before loading (or downloading) the model
        raise UserError(f"model {name} has no talk map yet; fit it with `{REFIT_COMMAND.format(name=name)}`")
    model = load_model(name)
    talk_map = load_model_talk_map(model.name, model.generator, model.weights_dir)
    wplus, noise, G, from_photo = _face_code(args, model)
    paste = _paste_target(args, model, from_photo)
    speech_model = (
        load_talk_model(args.weights) if (args.method or ("atnet" if args.audio else "")) == "atnet" else None
    )
    result = talk_video(G, wplus, talk_map, args.out, text=args.text, audio=args.audio, voice=args.voice,
                        wpm=args.wpm, pitch=args.pitch, method=args.method, noise=noise, photo=paste or from_photo,
                        paste=paste is not None, blinks=not args.no_blinks, head_motion=not args.no_head_motion,
                        keep_expression=args.keep_expression, seed=args.seed, model_name=model.name,
                        speech_model=speech_model)  # fmt: skip
    info = probe(result.path)
    print(json.dumps({"video": str(result.path), "frames": len(result.frames), "seconds": round(result.seconds, 3),
                      "video_seconds": info["duration"], "method": result.method, "model": model.name,
                      "timings": result.timings}))  # fmt: skip
    return 0


def run_train_talkmap(args: argparse.Namespace) -> int:
    import torch

    from ..studio.models import load_model
    from ..talk.talking_head import talk_map_path
    from ..training.talk_map import fit_talk_map

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    out = args.out or talk_map_path(model.name, model.weights_dir)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    talk_map = fit_talk_map(model.generator, faces=args.faces, trial_faces=args.trial_faces,
                            calibration_faces=args.calibration_faces, seed=args.seed, log=log)  # fmt: skip
    talk_map.info["model"] = model.name
    talk_map.save(out)
    print(json.dumps({"talk_map": str(out), "layers": talk_map.layers, **talk_map.info}))
    return 0


def run_lipsync(args: argparse.Namespace) -> int:
    import numpy as np

    from ..talk.atnet import load_talk_model, speech_track
    from ..talk.audio import SAMPLE_RATE
    from ..talk.video import sketch, write_video

    model = load_talk_model(args.weights)
    track = speech_track(
        text=args.text, audio=args.audio, voice=args.voice, wpm=args.wpm, pitch=args.pitch,
        method=args.method, model=model,
    )  # fmt: skip
    write_video(sketch(track.landmarks), track.wave, SAMPLE_RATE, args.out, metadata={"model": f"atnet-{track.method}"})
    if args.landmarks:
        args.landmarks.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.landmarks, landmarks=track.landmarks.astype(np.float32), fps=25, wave=track.wave,
                 sample_rate=SAMPLE_RATE)  # fmt: skip
    print(f"{len(track.landmarks)} frames ({len(track.wave) / SAMPLE_RATE:.1f} s, {track.method}) -> {args.out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UserError
    from ..training.atnet_train import TrainConfig, Trainer, export

    if not args.faces.is_dir():
        raise UserError(f"face photos folder not found: {args.faces}")
    torch.set_num_threads(args.threads)
    minutes = args.minutes if args.minutes is not None else (args.hours * 60 if args.hours else 15.0)
    if args.fresh and (args.run_dir / "state.pt").exists():
        (args.run_dir / "state.pt").unlink()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    trainer = Trainer(args.run_dir, args.faces, TrainConfig(), log=log, n_train=args.utterances)
    if trainer.load():
        log(f"resumed at step {trainer.step} ({trainer.seconds / 60:.1f} min trained)")
    trainer.run(minutes)
    path = export(trainer, args.out)
    (args.run_dir / "history.json").write_text(json.dumps(trainer.history, indent=1))
    log(f"exported {path}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from ..bench.talking_head import GOALS, bench_end_to_end, bench_video
    from ..errors import UserError
    from ..studio import Studio
    from ..studio.models import default_model, weights_dir
    from ..talk.atnet import load_talk_model
    from .invert import evenly_spaced, heldout_and_train_files

    torch.set_num_threads(args.threads)
    photos = list(args.photos or [])
    if not photos:
        if not args.data.is_dir():
            raise UserError(f"give --photos, or a UTKFace folder with --data (not found: {args.data})")
        _, held = heldout_and_train_files(args.data, weights_dir(args.model or default_model()))
        photos = [args.data / f for f in evenly_spaced(held, args.n)]
    model = load_talk_model(args.weights)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = {"model": str(args.weights)}
    if not args.video_only:
        result["landmarks"] = bench_landmarks(args, model, log)
    studio = Studio(args.model)
    video = bench_video(studio, photos, list(args.natural), model, strip_path=args.strip, log=log)
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end = bench_end_to_end(studio, photos[0], model, Path(tmp) / "clip.mp4")
    result["video"] = {"face_model": studio.model.name, **video, "end_to_end": end_to_end, "goals": GOALS}
    text = json.dumps(result, indent=None if args.json else 2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


def bench_landmarks(args: argparse.Namespace, model, log) -> dict:
    """AT-net and the baseline against the viseme ground truth of held-out synthetic speech, and on natural speech."""
    import numpy as np

    from ..talk.mouth import closed
    from ..training.atnet_data import HELDOUT_VOICES, load_or_make
    from ..training.atnet_train import HELDOUT_FACES, evaluate_natural, evaluate_synthetic

    test = load_or_make(args.run_dir / "data", "test", None, log)
    faces_cache = args.run_dir / "data" / "faces_2500.npy"
    if faces_cache.exists():  # held-out face shapes when the training cache is here; else the mean face
        rests = np.stack([closed(s) for s in np.load(faces_cache)[-HELDOUT_FACES:]])
    else:
        rests = model.mean_face[None]
    indices = list(range(min(len(test), args.limit or len(test))))
    unseen = [i for i in indices if test.voices[i] in HELDOUT_VOICES]
    return {
        "test_utterances": len(indices),
        "synthetic_clean": evaluate_synthetic(model, test, rests, copies=(0,), indices=indices),
        "synthetic_augmented": evaluate_synthetic(model, test, rests, copies=(1, 2), indices=indices),
        f"synthetic_unseen_voices_{len(unseen)}": evaluate_synthetic(model, test, rests, copies=(0,), indices=unseen),
        "natural": evaluate_natural(model, list(args.natural)) if args.natural else None,
        "natural_clips": [p.name for p in args.natural],
        "units": "errors and openings in inter-ocular distances (IOD)",
    }
