"""``lipsync``, ``train atnet`` and ``bench talk``: speech to mouth landmarks.

``lipsync`` turns typed text or an audio file into a mouth landmark track and a
preview video (a line drawing of the face with the sound), ahead of the face
rendering that will use the same track.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WEIGHTS_DIR = Path("weights/atnet")
DEFAULT_RUN_DIR = Path("runs/atnet")
NATURAL_CLIPS = sorted(Path("tests/data/audio").glob("cmu_arctic_*.wav"))


def register(sub, groups) -> None:
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

    b = groups["bench"].add_parser("talk", help="AT-net vs the rule-based baseline on held-out and natural speech")
    b.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR / "atnet.safetensors")
    b.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="data cache (test speech is made if missing)")
    b.add_argument("--natural", type=Path, nargs="*", default=NATURAL_CLIPS, help="recordings of natural speech")
    b.add_argument("--limit", type=int, default=None, help="evaluate only the first N test utterances")
    b.add_argument("--json", action="store_true", help="compact JSON")
    b.set_defaults(func=run_bench)


def run_lipsync(args: argparse.Namespace) -> int:
    import numpy as np

    from ..audio import SAMPLE_RATE
    from ..talk import load_talk_model, speech_track
    from ..video import sketch, write_video

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
    import numpy as np

    from ..mouth import closed
    from ..talk import load_talk_model
    from ..training.atnet_data import HELDOUT_VOICES, load_or_make
    from ..training.atnet_train import HELDOUT_FACES, evaluate_natural, evaluate_synthetic

    model = load_talk_model(args.weights)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    test = load_or_make(args.run_dir / "data", "test", None, log)
    faces_cache = args.run_dir / "data" / "faces_2500.npy"
    if faces_cache.exists():  # held-out face shapes when the training cache is here; else the mean face
        rests = np.stack([closed(s) for s in np.load(faces_cache)[-HELDOUT_FACES:]])
    else:
        rests = model.mean_face[None]
    indices = list(range(min(len(test), args.limit or len(test))))
    unseen = [i for i in indices if test.voices[i] in HELDOUT_VOICES]
    result = {
        "model": str(args.weights),
        "test_utterances": len(indices),
        "synthetic_clean": evaluate_synthetic(model, test, rests, copies=(0,), indices=indices),
        "synthetic_augmented": evaluate_synthetic(model, test, rests, copies=(1, 2), indices=indices),
        f"synthetic_unseen_voices_{len(unseen)}": evaluate_synthetic(model, test, rests, copies=(0,), indices=unseen),
        "natural": evaluate_natural(model, list(args.natural)) if args.natural else None,
        "natural_clips": [p.name for p in args.natural],
        "units": "errors and openings in inter-ocular distances (IOD)",
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
