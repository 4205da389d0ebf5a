"""Text to speech with espeak-ng, with the start and end time of every phoneme.

The phoneme timings come from the synthesiser itself (libespeak-ng's phoneme
events, see :mod:`pipeline.talk.espeak_worker`), so they are exact, not estimated: this is
what turns synthetic speech into lip-sync training data, and what drives the mouth
directly when a video is made from typed text.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import limits
from ..errors import UserError
from .audio import SAMPLE_RATE, to_mono_16k

DEFAULT_VOICE = "en-us"
# English voices with a few of espeak-ng's voice variants (f = female, m = male timbres).
VOICES = (
    "en-us", "en-us+f3", "en-us+m3", "en-us+f2", "en-gb", "en-gb+f4", "en-gb+m5",
    "en-gb-x-rp", "en-gb-scotland", "en-029",
)  # fmt: skip
WPM_RANGE = (80, 400)  # espeak-ng speaking rates that stay intelligible
PITCH_RANGE = (0, 99)
TIMEOUT_SECONDS = 30.0
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,40}(\+[A-Za-z0-9_\-]{1,20})?$")


@dataclass(frozen=True)
class Phoneme:
    """One espeak-ng phoneme (its ASCII mnemonic, e.g. ``p``, ``aI``, ``_:`` for a pause)."""

    symbol: str
    start: float  # seconds
    end: float


@dataclass
class Speech:
    text: str
    voice: str
    wave: np.ndarray  # (samples,) float32 at SAMPLE_RATE
    phonemes: list[Phoneme]

    @property
    def seconds(self) -> float:
        return len(self.wave) / SAMPLE_RATE

    def save(self, path: str | Path) -> Path:
        sf.write(str(path), self.wave, SAMPLE_RATE, subtype="PCM_16")
        return Path(path)


def clean_prompt(text: str) -> str:
    """The prompt with control characters removed and whitespace collapsed; refused if empty or too long."""
    if not isinstance(text, str):
        raise UserError("the prompt must be text")
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise UserError("the prompt is empty: type something to say")
    limit = limits.prompt_chars()
    if len(text) > limit:
        raise UserError(f"the prompt is {len(text)} characters long; the limit is {limit}")
    return text


def check_voice(voice: str, wpm: int, pitch: int) -> None:
    if not isinstance(voice, str) or not _VOICE_NAME.match(voice):
        raise UserError(f"invalid voice name {voice!r} (e.g. {', '.join(VOICES[:3])})")
    if not WPM_RANGE[0] <= int(wpm) <= WPM_RANGE[1]:
        raise UserError(f"speed must be {WPM_RANGE[0]}-{WPM_RANGE[1]} words per minute, not {wpm}")
    if not PITCH_RANGE[0] <= int(pitch) <= PITCH_RANGE[1]:
        raise UserError(f"pitch must be {PITCH_RANGE[0]}-{PITCH_RANGE[1]}, not {pitch}")


def _phonemes(events: list[list], samples: int, sr: int) -> list[Phoneme]:
    """Start events -> phonemes with ends; zero-length ones (markers) dropped."""
    out = []
    for i, (symbol, start) in enumerate(events):
        end = events[i + 1][1] if i + 1 < len(events) else samples
        if end > start:
            out.append(Phoneme(symbol, start / sr, end / sr))
    return out


def _run_worker(jobs: list[dict], timeout: float) -> list[dict]:
    worker = Path(__file__).with_name("espeak_worker.py")
    # -I: isolated mode, so nothing from the environment or working folder is imported.
    cmd = [sys.executable, "-I", str(worker)]
    try:
        out = subprocess.run(cmd, input=json.dumps(jobs).encode("utf-8"), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"speech synthesis took longer than {timeout:g} s") from None
    results = [json.loads(line) for line in out.stdout.decode("utf-8").splitlines() if line.strip()]
    if results and "fatal" in results[0]:
        raise UserError(
            f"espeak-ng is not available: {results[0]['fatal']} (on Debian/Ubuntu: apt-get install espeak-ng)"
        )
    if len(results) != len(jobs):
        detail = out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        raise UserError(f"speech synthesis failed: {detail[0][:200]}")
    return results


def synthesize_many(requests: list[dict], timeout: float = TIMEOUT_SECONDS) -> list[Speech]:
    """Several utterances in one worker process; each request has ``text``, optional ``voice``, ``wpm``, ``pitch``."""
    jobs = []
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        for i, req in enumerate(requests):
            voice, wpm, pitch = req.get("voice", DEFAULT_VOICE), int(req.get("wpm", 160)), int(req.get("pitch", 50))
            check_voice(voice, wpm, pitch)
            text = clean_prompt(req["text"])
            jobs.append({"text": text, "voice": voice, "wpm": wpm, "pitch": pitch, "wav": str(Path(tmp) / f"{i}.wav")})
        results = _run_worker(jobs, timeout * max(1, len(jobs) / 20))
        speeches = []
        for job, result in zip(jobs, results):
            if "error" in result:
                raise UserError(f"speech synthesis failed: {result['error']}")
            raw, sr = sf.read(job["wav"], dtype="float32")
            phonemes = _phonemes(result["phonemes"], result["samples"], result["sample_rate"])
            speeches.append(Speech(text=job["text"], voice=job["voice"], wave=to_mono_16k(raw, sr), phonemes=phonemes))
    return speeches


def synthesize(text: str, voice: str = DEFAULT_VOICE, wpm: int = 160, pitch: int = 50) -> Speech:
    """Speak ``text`` (at most STUDIO_MAX_PROMPT_CHARS characters) with espeak-ng.

    ``voice`` is an espeak-ng voice or language, optionally with a variant
    (``en-us+f3``); ``wpm`` the speaking rate; ``pitch`` 0-99 (50 is the voice's own).
    """
    speech = synthesize_many([{"text": text, "voice": voice, "wpm": wpm, "pitch": pitch}])[0]
    if not len(speech.wave):
        raise UserError("the prompt produced no speech (nothing pronounceable in it)")
    return speech
