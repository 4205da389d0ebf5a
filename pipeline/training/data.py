"""Training faces: a fixed held-out split and a decoded, resized in-memory cache.

Decoding 23k JPEGs every epoch would cost more CPU than the model; the faces are
decoded once per resolution into a uint8 array cached under ``runs/cache``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

HELDOUT_COUNT = 2000


def list_images(data_dir: Path) -> list[str]:
    files = sorted(p.name for p in data_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise UserError(f"no images found in {data_dir}")
    return files


def heldout_split(files: list[str], count: int = HELDOUT_COUNT) -> tuple[list[str], list[str]]:
    """Deterministic split by a hash of the file name: (train, heldout).

    Hashing (not list position) keeps the split stable if files are added.
    """
    ranked = sorted(files, key=lambda f: hashlib.sha1(f.encode()).hexdigest())
    heldout = sorted(ranked[:count])
    held = set(heldout)
    return [f for f in files if f not in held], heldout


def read_heldout(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def load_labels(data_dir: Path) -> dict[str, dict[str, int]]:
    path = data_dir / "labels.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {row["file"]: {k: int(v) for k, v in row.items() if k != "file"} for row in csv.DictReader(f)}


def utkface_label(name: str) -> tuple[int, int] | None:
    """(age, gender) from a UTKFace file name ``age_gender_race_date...`` (gender 0 male, 1 female)."""
    parts = name.split("_")
    if len(parts) >= 3 and parts[0].isdigit() and parts[1] in ("0", "1"):
        return int(parts[0]), int(parts[1])
    return None


def age_balance_weights(files: list[str], exponent: float, bin_years: int = 5, oldest_bin: int = 80) -> np.ndarray:
    """Sampling probabilities that flatten the age distribution: each face weighted by the count
    of its age bin to the power ``-exponent`` (0: uniform, 1: every bin drawn equally often).
    Faces whose name carries no age form a bin of their own."""
    bins = []
    for name in files:
        label = utkface_label(name)
        bins.append(-1 if label is None else min(label[0], oldest_bin) // bin_years)
    _, index, counts = np.unique(np.array(bins), return_inverse=True, return_counts=True)
    weights = counts[index].astype(np.float64) ** -exponent
    return weights / weights.sum()


def load_faces(data_dir: Path, files: list[str], resolution: int, cache_dir: Path | None = None) -> np.ndarray:
    """(N, res, res, 3) uint8 faces, each whole image resized (antialiased) to ``resolution``."""
    key = hashlib.sha1(("\n".join(files) + f"@{resolution}").encode()).hexdigest()[:12]
    cache = cache_dir / f"faces_{resolution}_{key}.npy" if cache_dir else None
    if cache and cache.exists():
        return np.load(cache, mmap_mode="r")
    out = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, name in enumerate(files):
        with Image.open(data_dir / name) as im:
            out[i] = np.asarray(im.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS))
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out)
    return out
