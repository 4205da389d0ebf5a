"""Resource limits, each set by an environment variable (read when used, so tests and a
running server can change them).

A public demo is fed anything by anyone: these bound what one request may cost. Every
limit is listed in README.md ("Limits").
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class Limit:
    env: str
    default: float
    what: str
    integer: bool = False

    def value(self) -> float:
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"{self.env} must be a number, not {raw!r}") from None
        if not value > 0 or value == float("inf"):
            raise UserError(f"{self.env} must be a positive number, not {raw!r}")
        if self.integer and value != int(value):
            raise UserError(f"{self.env} must be a whole number, not {raw!r}")
        return int(value) if self.integer else value


UPLOAD_MB = Limit("STUDIO_MAX_UPLOAD_MB", 25.0, "size of an uploaded file, MB")
MEGAPIXELS = Limit("STUDIO_MAX_MEGAPIXELS", 40.0, "pixels of an uploaded image, millions (checked before decoding)")
STEPS = Limit("STUDIO_MAX_STEPS", 1000, "optimisation steps per run", integer=True)
AUDIO_SECONDS = Limit("STUDIO_MAX_AUDIO_SECONDS", 20.0, "length of an uploaded recording, seconds")
PROMPT_CHARS = Limit("STUDIO_MAX_PROMPT_CHARS", 300, "characters of text to speak", integer=True)
CONCURRENT_JOBS = Limit("STUDIO_CONCURRENT_JOBS", 4, "requests the app works on at once (the rest queue)", integer=True)
SESSION_MINUTES = Limit("STUDIO_SESSION_MINUTES", 60.0, "idle time after which a session's photo, codes and files are deleted")
BATCH_PHOTOS = Limit("STUDIO_MAX_BATCH_PHOTOS", 20, "photos in one batch request of the app", integer=True)
ALL = (UPLOAD_MB, MEGAPIXELS, STEPS, AUDIO_SECONDS, PROMPT_CHARS, CONCURRENT_JOBS, SESSION_MINUTES, BATCH_PHOTOS)


def upload_bytes() -> int:
    return int(UPLOAD_MB.value() * 1024 * 1024)


def max_pixels() -> int:
    return int(MEGAPIXELS.value() * 1e6)


def max_steps() -> int:
    return int(STEPS.value())


def audio_seconds() -> float:
    return float(AUDIO_SECONDS.value())


def prompt_chars() -> int:
    return int(PROMPT_CHARS.value())


def concurrent_jobs() -> int:
    return int(CONCURRENT_JOBS.value())


def session_seconds() -> float:
    return SESSION_MINUTES.value() * 60


def batch_photos() -> int:
    return int(BATCH_PHOTOS.value())


def cap_memory_arenas(arenas: int = 2) -> None:
    """For a long-running server: glibc gives busy threads heaps of their own ("arenas") and keeps
    their freed memory, so a web server's resident memory creeps up with every worker thread that
    ever ran (bench soak: +25% in four minutes, still rising; with two arenas it levels off).
    Call before the server starts; a no-op off glibc or when MALLOC_ARENA_MAX is already set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass
