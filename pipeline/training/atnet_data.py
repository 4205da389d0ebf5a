"""Synthetic lip-sync data for AT-net: espeak-ng speech with exact viseme targets.

Each utterance is a random sentence (:mod:`pipeline.training.sentences`) spoken by a
random English voice, speed and pitch. Its target is the co-articulated articulation
track of its phonemes (:mod:`pipeline.talk.visemes`), computed from the stored phoneme
timings when the data is loaded (so a change to the viseme table needs no new speech)
and kept as parameters so that any face shape can be articulated with it. The audio is stored as MFCC
hops (10 ms), clean and in augmented copies (noise, room echo, microphone colouring,
gain) to narrow the gap between the synthesiser and real recordings.

Face shapes come from dlib landmarks of training photos (the held-out split of
:mod:`pipeline.training.data` is never read).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from ..talk import visemes
from ..talk.audio import SAMPLE_RATE, envelope, frame_count, mfcc
from ..talk.mouth import ShapeModel, articulate, closed, normalise
from ..talk.speech import Phoneme, synthesize_many
from .sentences import utterance

TRAIN_VOICES = (
    "en-us", "en-us+f3", "en-us+m3", "en-us+f2", "en-gb", "en-gb+f4", "en-gb+m5", "en-gb-x-rp",
    "en-gb-scotland", "en-029", "en-us+m1", "en-gb+f1",
)  # fmt: skip
HELDOUT_VOICES = ("en-us+f5", "en-gb-x-rp+m7")  # only in the test split: unseen timbres
WPM_RANGE = (120, 220)
PITCH_RANGE = (25, 80)
AUGMENTED_COPIES = 2  # besides the clean copy


@dataclass
class Split:
    """Utterances of one split, concatenated: hop-level MFCCs and frame-level targets."""

    mfcc: list[np.ndarray]  # per copy (clean first): (total_hops, dims) float16
    levels: list[np.ndarray]  # per copy: (total_frames,) speech level per video frame (dB re. loudest)
    hop_offsets: np.ndarray  # (N + 1,)
    frame_offsets: np.ndarray  # (N + 1,)
    phonemes: list[list[list]]  # per utterance: [symbol, start, end]
    voices: list[str]
    texts: list[str]
    params: np.ndarray = field(init=False)  # (total_frames, 5) float32 targets

    def __post_init__(self) -> None:
        tracks = []
        for i, phonemes in enumerate(self.phonemes):
            n_frames = int(self.frame_offsets[i + 1] - self.frame_offsets[i])
            tracks.append(visemes.phoneme_track([Phoneme(*p) for p in phonemes], n_frames))
        self.params = np.concatenate(tracks).astype(np.float32) if tracks else np.zeros((0, 5), np.float32)

    def __len__(self) -> int:
        return len(self.voices)

    def utterance_mfcc(self, i: int, copy: int = 0) -> np.ndarray:
        return self.mfcc[copy][self.hop_offsets[i] : self.hop_offsets[i + 1]].astype(np.float32)

    def utterance_levels(self, i: int, copy: int = 0) -> np.ndarray:
        return self.levels[copy][self.frame_offsets[i] : self.frame_offsets[i + 1]]

    def utterance_params(self, i: int) -> np.ndarray:
        return self.params[self.frame_offsets[i] : self.frame_offsets[i + 1]]

    def save(self, path: Path) -> None:
        arrays = {f"mfcc{c}": m for c, m in enumerate(self.mfcc)} | {f"levels{c}": v for c, v in enumerate(self.levels)}
        np.savez(path, hop_offsets=self.hop_offsets, frame_offsets=self.frame_offsets, **arrays)
        meta = {"voices": self.voices, "texts": self.texts, "phonemes": self.phonemes}
        path.with_suffix(".json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path) -> Split:
        with np.load(path) as z:
            copies = sorted(k for k in z.files if k.startswith("mfcc"))
            meta = json.loads(path.with_suffix(".json").read_text())
            return cls(
                mfcc=[z[k] for k in copies], levels=[z[f"levels{k[4:]}"] for k in copies], hop_offsets=z["hop_offsets"], frame_offsets=z["frame_offsets"],
                phonemes=meta["phonemes"], voices=meta["voices"], texts=meta["texts"],
            )  # fmt: skip


def augment(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible recording of the same speech: room echo, microphone colouring, noise, gain."""
    out = wave.astype(np.float64)
    if rng.random() < 0.6:  # room: exponentially decaying noise impulse response (RT60 0.15-0.6 s)
        rt60 = rng.uniform(0.15, 0.6)
        t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
        ir[0] = 1.0 / rng.uniform(0.05, 0.3)  # direct path, 10-25 dB over the reverberation
        out = signal.fftconvolve(out, ir / np.abs(ir).sum() * 4)[: len(out)]
    if rng.random() < 0.7:  # microphone / channel: a random band-pass
        lo, hi = rng.uniform(60, 300), rng.uniform(3400, 7800)
        sos = signal.butter(2, [lo, hi], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        out = signal.sosfilt(sos, out)
    if rng.random() < 0.8:  # background noise: white, pink or brown, 5-35 dB SNR
        noise = rng.standard_normal(len(out))
        colour = rng.integers(3)
        if colour:
            spectrum = np.fft.rfft(noise) / np.maximum(np.arange(len(noise) // 2 + 1), 1) ** (0.5 * colour)
            noise = np.fft.irfft(spectrum, len(noise))
        snr_db = rng.uniform(5, 35)
        power = np.mean(out**2) + 1e-12
        out = out + noise * np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (snr_db / 10))
    out *= 10 ** (rng.uniform(-20, 6) / 20) * 0.5 / max(np.abs(out).max(), 1e-6)
    return np.clip(out, -1, 1).astype(np.float32)


def make_split(n: int, seed: int, voices: tuple[str, ...], log=print) -> Split:
    """``n`` random utterances, synthesised in batches, with clean and augmented MFCCs."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    copies: list[list[np.ndarray]] = [[] for _ in range(1 + AUGMENTED_COPIES)]
    levels: list[list[np.ndarray]] = [[] for _ in range(1 + AUGMENTED_COPIES)]
    phonemes, hop_counts, frame_counts, used_voices, texts = [], [], [], [], []
    start = time.time()
    for first in range(0, n, 50):
        requests = [
            {"text": utterance(rng), "voice": rng.choice(voices), "wpm": rng.randint(*WPM_RANGE),
             "pitch": rng.randint(*PITCH_RANGE)}
            for _ in range(min(50, n - first))
        ]  # fmt: skip
        for speech in synthesize_many(requests):
            n_frames = frame_count(len(speech.wave))
            phonemes.append([[p.symbol, round(p.start, 5), round(p.end, 5)] for p in speech.phonemes])
            for c in range(1 + AUGMENTED_COPIES):
                wave = augment(speech.wave, nprng) if c else speech.wave
                copies[c].append(mfcc(wave).astype(np.float16))
                levels[c].append(envelope(wave).astype(np.float32))
            hop_counts.append(len(copies[0][-1]))
            frame_counts.append(n_frames)
            used_voices.append(speech.voice)
            texts.append(speech.text)
        log(f"data: {first + len(requests)}/{n} utterances ({time.time() - start:.0f} s)")
    return Split(
        mfcc=[np.concatenate(c) for c in copies],
        levels=[np.concatenate(v) for v in levels],
        hop_offsets=np.concatenate([[0], np.cumsum(hop_counts)]),
        frame_offsets=np.concatenate([[0], np.cumsum(frame_counts)]),
        phonemes=phonemes,
        voices=used_voices,
        texts=texts,
    )


SPLITS = {  # name: (utterances, seed, voices)
    "train": (1600, 1, TRAIN_VOICES),
    "val": (120, 2, TRAIN_VOICES),
    "test": (200, 3, TRAIN_VOICES + HELDOUT_VOICES),
}


def load_or_make(cache_dir: Path, name: str, n: int | None = None, log=print) -> Split:
    count, seed, voices = SPLITS[name]
    count = n or count
    path = cache_dir / f"{name}_{count}_{seed}.npz"
    if path.exists():
        return Split.load(path)
    split = make_split(count, seed, voices, log)
    cache_dir.mkdir(parents=True, exist_ok=True)
    split.save(path)
    return split


def face_shapes(faces_dir: Path, count: int, cache: Path, log=print) -> np.ndarray:
    """(N, 68, 2) normalised landmarks of up to ``count`` training photos (detected once, cached)."""
    if cache.exists():
        return np.load(cache)
    from PIL import Image

    from ..faces.detection import detect_faces
    from .data import heldout_split, list_images

    train_files, _ = heldout_split(list_images(faces_dir))
    order = np.random.default_rng(0).permutation(len(train_files))[:count]
    shapes = []
    start = time.time()
    for k, i in enumerate(order):
        with Image.open(faces_dir / train_files[i]) as im:
            found = detect_faces(np.asarray(im.convert("RGB")), cnn_fallback=False)
        if found:
            shapes.append(normalise(found[0].landmarks)[0])
        if (k + 1) % 500 == 0:
            log(f"faces: {k + 1}/{len(order)} photos, {len(shapes)} with landmarks ({time.time() - start:.0f} s)")
    out = np.stack(shapes).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def random_articulations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 5) parameters: blends of two random visemes, covering the space between targets."""
    targets = np.stack([v.params for v in visemes.VISEMES.values()])
    a, b = rng.integers(len(targets), size=(2, n))
    mix = rng.uniform(0, 1, size=(n, 1))
    return mix * targets[a] + (1 - mix) * targets[b]


def fit_shape_model(shapes: np.ndarray, seed: int = 0) -> ShapeModel:
    """PCA over closed face shapes and the same shapes articulated (so both identity and speech are spanned)."""
    rng = np.random.default_rng(seed)
    rests = np.stack([closed(s) for s in shapes])
    moved = [articulate(rest, random_articulations(4, rng)) for rest in rests]
    return ShapeModel.fit(np.concatenate([rests, *moved]))
