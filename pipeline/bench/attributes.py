"""How well the attribute models read held-out UTKFace faces, at full size and at 64 px.

- age: mean absolute error in years against the dataset's labels;
- gender: accuracy of P(female) > 0.5 against the labels;
- emotion: correlation of P(happy) with the landmark smile score (no emotion labels here);
- face rate: how often the detector found the face (else the fixed geometry was used);
- identity: descriptor distance between a face and its own 64 px copy;
- time per image, for the whole :func:`pipeline.faces.attributes.analyze`, and at 64 px also
  without the identity descriptor (scoring generated faces needs only the scores).

The 64 px copies are resized like the generator's training faces (Lanczos), so the numbers
at 64 px are what scoring generated faces can expect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import pearsonr, spearmanr

from ..errors import UserError
from ..faces.attributes import IDENTITY_SAME, FaceAttributes, analyze, identity_distance
from ..training.data import load_labels
from .align import split_files, spread

SMALL = 64


def _read(data: Path, files: list[str]) -> list[np.ndarray]:
    return [np.asarray(Image.open(data / f).convert("RGB")) for f in files]


def _shrink(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    return [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.LANCZOS)) for im in images]


def _timed(images: list[np.ndarray], batch_size: int, identity: bool = True) -> tuple[list[FaceAttributes], float]:
    t0 = time.perf_counter()
    attrs = analyze(images, batch_size=batch_size, identity=identity)
    return attrs, (time.perf_counter() - t0) / max(1, len(images))


def summarise(attrs: list[FaceAttributes], ages: np.ndarray, female: np.ndarray, seconds: float) -> dict:
    pred_age = np.array([a.age for a in attrs])
    p_female = np.array([a.p_female for a in attrs])
    happy = np.array([a.emotions["happy"] for a in attrs])
    smile = np.array([a.smile for a in attrs])
    adult = ages >= 18
    return {
        "age_mae": round(float(np.abs(pred_age - ages).mean()), 3),
        "age_mae_adults": round(float(np.abs(pred_age - ages)[adult].mean()), 3) if adult.any() else math.nan,
        "age_bias": round(float((pred_age - ages).mean()), 3),
        "gender_accuracy": round(float(((p_female > 0.5) == female).mean()), 4),
        "gender_accuracy_adults": round(float(((p_female > 0.5) == female)[adult].mean()), 4)
        if adult.any()
        else math.nan,
        "happy_smile_pearson": round(float(pearsonr(happy, smile)[0]), 3),
        "happy_smile_spearman": round(float(spearmanr(happy, smile)[0]), 3),
        "face_found_rate": round(float(np.mean([a.face_found for a in attrs])), 4),
        "seconds_per_image": round(seconds, 4),
    }


def evaluate(data: Path, n: int = 500, batch_size: int = 64, log: Callable[[str], None] = print) -> dict:
    """Attribute accuracy on ``n`` held-out labelled faces of ``data`` (UTKFace layout)."""
    labels = load_labels(data)
    if not labels:
        raise UserError(f"no labels.csv in {data}")
    _, heldout = split_files(data)
    files = spread([f for f in heldout if f in labels], n)
    if not files:
        raise UserError(f"no labelled held-out faces in {data}")
    ages = np.array([labels[f]["age"] for f in files], dtype=np.float64)
    female = np.array([labels[f]["gender"] == 1 for f in files])
    full = _read(data, files)
    log(f"{len(files)} held-out faces, {full[0].shape[1]} px")
    attrs_full, sec_full = _timed(full, batch_size)
    log(f"full size: {sec_full:.3f} s/image")
    small = _shrink(full, SMALL)
    attrs_small, sec_small = _timed(small, batch_size)
    log(f"{SMALL} px: {sec_small:.3f} s/image")
    _, sec_scores = _timed(small, batch_size, identity=False)
    log(f"{SMALL} px without identity: {sec_scores:.3f} s/image")
    id_dist = np.array([identity_distance(a, b) for a, b in zip(attrs_full, attrs_small)])
    return {
        "n": len(files),
        "files": "held-out split, spread evenly over the sorted names (all ages)",
        "full": {"size": int(full[0].shape[1]), **summarise(attrs_full, ages, female, sec_full)},
        f"px{SMALL}": {
            "size": SMALL,
            **summarise(attrs_small, ages, female, sec_small),
            "seconds_per_image_without_identity": round(sec_scores, 4),
        },
        f"full_vs_{SMALL}": {
            "identity_distance_mean": round(float(id_dist.mean()), 4),
            "same_identity_rate": round(float((id_dist < IDENTITY_SAME).mean()), 4),
            "age_mean_abs_change": round(
                float(np.mean([abs(a.age - b.age) for a, b in zip(attrs_full, attrs_small)])), 3
            ),
        },
    }
