"""Visemes: what the mouth looks like for each speech sound, and how sounds blend over time.

The table is written in the articulation parameters of :mod:`pipeline.talk.mouth` (opening
in IOD units, spread, rounding, lip tuck, lip press), one row per viseme class of the
common 14-class scheme (the MPEG-4 / Oculus set with ``nn`` folded into ``DD``).
espeak-ng's English phoneme mnemonics map onto the classes; diphthongs glide between
two classes.

Co-articulation follows Cohen and Massaro's dominance model: every phoneme pulls the
mouth towards its viseme with a weight (its dominance) that is flat over the phoneme
and decays exponentially outside it (over its ``reach``); the mouth at any instant is
the dominance-weighted mean of the targets. So h and k take the shape of their
neighbours and lip rounding starts before a rounded vowel. Sounds that must be seen
(m, b, p closing the lips; f, v tucking the lower lip) dominate strongly with a short
reach, and the frames inside them show their target fully, as viewers notice a
missing lip closure at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import FPS
from .mouth import PARAMS


@dataclass(frozen=True)
class Viseme:
    open: float  # inner lip gap, IOD
    spread: float  # relative width change
    round: float  # 0..1
    tuck: float  # 0..1
    press: float  # 0..1
    dominance: float  # relative pull on the mouth (1 = an ordinary vowel)
    reach: float  # seconds: the pull falls by 1/e this far outside the sound (rounding reaches far, closure not)
    must_reach: bool  # a visible event (lip closure, lip tuck): the frames inside the sound show it fully
    example: str

    @property
    def params(self) -> np.ndarray:
        return np.array([getattr(self, p) for p in PARAMS])


# fmt: off
VISEMES: dict[str, Viseme] = {
    #              open  spread round tuck press  dominance reach  must_reach example
    "sil": Viseme(0.00,  0.00, 0.0, 0.0, 0.0,  1.0, 0.06, False, "pause: lips lightly closed"),
    "PP":  Viseme(0.00,  0.00, 0.0, 0.0, 1.0,  3.0, 0.03, True,  "m, b, p: lips pressed shut"),
    "FF":  Viseme(0.03,  0.05, 0.0, 1.0, 0.0,  3.0, 0.03, True,  "f, v: lower lip under the upper teeth"),
    "TH":  Viseme(0.08,  0.05, 0.0, 0.0, 0.0,  1.5, 0.04, False, "th: tongue between the teeth"),
    "DD":  Viseme(0.10,  0.05, 0.0, 0.0, 0.0,  0.5, 0.04, False, "t, d, n, l: tongue tip up, jaw half closed"),
    "kk":  Viseme(0.12,  0.00, 0.0, 0.0, 0.0,  0.3, 0.04, False, "k, g, ng, h: back of the tongue; lips free"),
    "CH":  Viseme(0.07, -0.10, 0.6, 0.0, 0.0,  2.0, 0.06, False, "ch, j, sh, zh: lips pushed forward"),
    "SS":  Viseme(0.04,  0.15, 0.0, 0.0, 0.0,  1.5, 0.04, False, "s, z: teeth together, lips spread"),
    "RR":  Viseme(0.08, -0.10, 0.5, 0.0, 0.0,  1.2, 0.06, False, "r: lips slightly rounded"),
    "aa":  Viseme(0.30,  0.05, 0.0, 0.0, 0.0,  1.0, 0.05, False, "father, cup: jaw wide open"),
    "E":   Viseme(0.19,  0.12, 0.0, 0.0, 0.0,  1.0, 0.05, False, "bed, bird, about: half open"),
    "I":   Viseme(0.10,  0.22, 0.0, 0.0, 0.0,  1.0, 0.05, False, "see, sit, yes: spread, nearly closed"),
    "O":   Viseme(0.22, -0.15, 0.7, 0.0, 0.0,  1.2, 0.07, False, "hot, law, go: open and rounded"),
    "U":   Viseme(0.07, -0.25, 1.0, 0.0, 0.0,  1.5, 0.08, False, "food, put, we: tightly rounded"),
}
# fmt: on

# espeak-ng English phoneme mnemonics -> viseme classes (two classes: a glide from the first to the second).
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    # consonants
    "p": ("PP",), "b": ("PP",), "m": ("PP",),
    "f": ("FF",), "v": ("FF",),
    "T": ("TH",), "D": ("TH",),
    "t": ("DD",), "d": ("DD",), "n": ("DD",), "l": ("DD",), "t#": ("DD",), "t2": ("DD",), "d#": ("DD",),
    "n-": ("DD",), "l/": ("DD",), "@L": ("E", "DD"),
    "k": ("kk",), "g": ("kk",), "N": ("kk",), "h": ("kk",), "x": ("kk",), "?": ("kk",),
    "tS": ("CH",), "dZ": ("CH",), "S": ("CH",), "Z": ("CH",),
    "s": ("SS",), "z": ("SS",),
    "r": ("RR",), "r-": ("RR",), "R": ("RR",), "3": ("RR",),
    "w": ("U",), "j": ("I",),
    # vowels
    "a": ("aa",), "aa": ("aa",), "A:": ("aa",), "A@": ("aa", "RR"), "V": ("aa",), "A": ("aa",),
    "E": ("E",), "e": ("E",), "e@": ("E", "E"), "@": ("E",), "@2": ("E",), "@5": ("E",), "@-": ("E",),
    "a#": ("E",), "3:": ("E",), "a2": ("E",),
    "i": ("I",), "i:": ("I",), "I": ("I",), "I2": ("I",), "I#": ("I",), "i@": ("I", "E"), "i@3": ("I", "E"),
    "0": ("O",), "O:": ("O",), "O@": ("O", "RR"), "O2": ("O",), "o@": ("O", "RR"), "O": ("O",),
    "u:": ("U",), "U": ("U",), "U@": ("U", "E"), "u": ("U",),
    # diphthongs
    "aI": ("aa", "I"), "aI@": ("aa", "I"), "aI3": ("aa", "I"), "aU": ("aa", "U"), "aU@": ("aa", "U"),
    "eI": ("E", "I"), "oU": ("O", "U"), "OI": ("O", "I"),
}  # fmt: skip
PAUSES = {"_", "_:", "_!", "_^_", ";", ""}

MIN_PLATEAU_SECONDS = 1.0 / FPS  # a phoneme's full pull lasts at least one video frame


def viseme_classes(symbol: str) -> tuple[str, ...]:
    """The viseme class(es) of an espeak-ng phoneme; unknown symbols fall back by their first letter."""
    if symbol in PHONEME_VISEMES:
        return PHONEME_VISEMES[symbol]
    if symbol in PAUSES or symbol.startswith("_"):
        return ("sil",)
    stripped = symbol.rstrip("0123456789#-:;")
    if stripped in PHONEME_VISEMES:
        return PHONEME_VISEMES[stripped]
    if stripped[:1] in PHONEME_VISEMES:
        return PHONEME_VISEMES[stripped[:1]]
    return ("kk",)  # a weak, neutral consonant: takes the shape of its neighbours


@dataclass(frozen=True)
class Segment:
    viseme: str
    start: float
    end: float


def segments(phonemes) -> list[Segment]:
    """Timed phonemes (objects with ``symbol``, ``start``, ``end``) -> timed viseme segments."""
    out = []
    for ph in phonemes:
        classes = viseme_classes(ph.symbol)
        step = (ph.end - ph.start) / len(classes)
        for i, name in enumerate(classes):
            out.append(Segment(name, ph.start + i * step, ph.start + (i + 1) * step))
    return out


def parameter_track(segs: list[Segment], n_frames: int, fps: int = FPS) -> np.ndarray:
    """(n_frames, 5) articulation parameters at the centre of each video frame, co-articulated.

    Before the first and after the last segment the mouth rests (``sil``).
    """
    times = (np.arange(n_frames) + 0.5) / fps
    lead = Segment("sil", -10.0, segs[0].start if segs else 0.0)
    tail = Segment("sil", segs[-1].end if segs else 0.0, 1e9)
    weights, targets = [], []
    for seg in [lead, *segs, tail]:
        viseme = VISEMES[seg.viseme]
        centre = (seg.start + seg.end) / 2
        half = max((seg.end - seg.start) / 2, MIN_PLATEAU_SECONDS / 2)
        distance = np.maximum(np.abs(times - centre) - half, 0.0)
        weights.append(viseme.dominance * np.exp(-distance / viseme.reach))
        targets.append(viseme.params)
    w = np.stack(weights)  # (segments, frames)
    track = (w.T @ np.stack(targets)) / w.sum(axis=0)[:, None]
    for seg in segs:
        viseme = VISEMES[seg.viseme]
        if viseme.must_reach:
            centre = (seg.start + seg.end) / 2
            half = max((seg.end - seg.start) / 2, MIN_PLATEAU_SECONDS / 2)
            track[np.abs(times - centre) <= half] = viseme.params
    return track


def phoneme_track(phonemes, n_frames: int, fps: int = FPS) -> np.ndarray:
    """Timed phonemes -> (n_frames, 5) co-articulated articulation parameters."""
    return parameter_track(segments(phonemes), n_frames, fps)
