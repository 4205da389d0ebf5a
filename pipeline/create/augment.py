"""Augmentation sets: from one face, N labelled variants across age, pose and expression.

Each variant moves the face by random strengths along the age and pose directions and
one expression direction. Its label row holds the requested strengths, the value each
edit was expected to reach (from the change per standard deviation measured when the
direction was found) and what the classifiers read on the variant. The set is written as
a zip of PNGs (each tagged as AI-edited) with ``labels.csv``.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import provenance
from ..errors import UserError
from ..faces import attributes
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..latent.target_edit import expected_slope
from ..models.generator import Generator
from ..models.render import render

POSE_AXES = ("age", "yaw", "pitch")
EXPRESSION_AXES = ("happy", "smile", "surprise", "sad", "angry", "neutral", "mouth_open")
SPREAD = 2.0  # strengths drawn uniformly from [-SPREAD, SPREAD] standard deviations
MAX_VARIANTS = 500
CLEAR_CHANGE = 0.5  # standard deviations: weaker edits are left out of the label agreement

Measure = Callable[[Sequence[np.ndarray]], list]
# W+ codes -> (their images, one attributes.scores dict each): rendering and reading elsewhere (the Ray engine).
Renderer = Callable[[torch.Tensor], tuple[np.ndarray, list[dict[str, float]]]]


@dataclass
class Variant:
    strengths: dict[str, float]  # requested, standard deviations
    expected: dict[str, float]  # the value each edit should reach, where its slope is known
    measured: dict[str, float]  # the classifiers' reading (attributes.SCORE_NAMES)
    image: np.ndarray


def plan(directions: Mapping[str, Direction], n: int, seed: int = 0, spread: float = SPREAD) -> list[dict[str, float]]:
    """``n`` random edits: every pose axis the model has, plus one of its expression axes each."""
    if not 1 <= int(n) <= MAX_VARIANTS:
        raise UserError(f"ask for between 1 and {MAX_VARIANTS} variants, not {n}")
    axes = [a for a in POSE_AXES if a in directions]
    expressions = [a for a in EXPRESSION_AXES if a in directions]
    if not axes and not expressions:
        raise UserError(f"this model has none of the directions variants are made along ({', '.join(POSE_AXES + EXPRESSION_AXES)})")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        edit = {a: round(float(rng.uniform(-spread, spread)), 2) for a in axes}
        if expressions:
            edit[str(rng.choice(expressions))] = round(float(rng.uniform(-spread, spread)), 2)
        out.append(edit)
    return out


def make_variants(G: Generator, wplus: torch.Tensor, directions: Mapping[str, Direction], n: int, seed: int = 0,
                  measure: Measure | None = None, batch: int = 32,
                  renderer: Renderer | None = None) -> tuple[list[Variant], dict[str, float]]:  # fmt: skip
    """The variants of the face ``wplus`` (1, n_latent, dim) and the unedited face's reading
    (``renderer``: where the faces are rendered and read, by default here)."""
    measure = measure or (lambda images: attributes.analyze(images, identity=False))
    edits = plan(directions, n, seed)
    codes = torch.cat([apply_edits(wplus, directions, e) for e in edits])
    if renderer is not None:
        images, readings = renderer(torch.cat([wplus, codes]))
    else:
        images = render(G, torch.cat([wplus, codes]), batch=batch)
        readings = [attributes.scores(a) for a in measure(list(images))]
    base = readings[0]
    variants = []
    for edit, image, reading in zip(edits, images[1:], readings[1:]):
        expected = {}
        for name, strength in edit.items():
            slope = expected_slope(directions[name], G.n_latent, name)
            if slope is not None:
                expected[name] = round(base[name] + slope * strength, 4)
        variants.append(Variant(edit, expected, reading, image))
    return variants, base


def label_agreement(variants: Sequence[Variant], base: Mapping[str, float]) -> dict[str, float]:
    """Per axis, the share of clear edits (|strength| >= CLEAR_CHANGE) whose reading moved the
    requested way from the unedited face; ``all`` pools the axes."""
    hits: dict[str, list[bool]] = {}
    for v in variants:
        for name, strength in v.strengths.items():
            if abs(strength) >= CLEAR_CHANGE:
                hits.setdefault(name, []).append(np.sign(v.measured[name] - base[name]) == np.sign(strength))
    out = {k: round(float(np.mean(h)), 3) for k, h in sorted(hits.items())}
    pooled = [x for h in hits.values() for x in h]
    out["all"] = round(float(np.mean(pooled)), 3) if pooled else float("nan")
    return out


def png_bytes(image: np.ndarray, model: str | None) -> bytes:
    """A PNG carrying the provenance (and the visible mark when it is on)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(provenance.maybe_mark(image))).save(buffer, "PNG", **provenance.save_options("x.png", model))
    return buffer.getvalue()


def write_zip(path: str | Path, variants: Sequence[Variant], base: Mapping[str, float], original: np.ndarray | None = None,
              model: str | None = None) -> Path:  # fmt: skip
    """``path``: variant_0000.png ... and labels.csv (one row per variant; ``original.png`` unlabelled)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = sorted({a for v in variants for a in v.strengths}, key=lambda a: (POSE_AXES + EXPRESSION_AXES).index(a))
    columns = ["file", *[f"{a}_strength" for a in axes], *[f"{a}_expected" for a in axes],
               *[f"{s}_measured" for s in attributes.SCORE_NAMES], *[f"{s}_original" for s in attributes.SCORE_NAMES]]  # fmt: skip
    table = io.StringIO()
    writer = csv.DictWriter(table, columns)
    writer.writeheader()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        if original is not None:
            archive.writestr("original.png", png_bytes(original, model))
        for i, v in enumerate(variants):
            name = f"variant_{i:04d}.png"
            archive.writestr(name, png_bytes(v.image, model))
            row = {"file": name}
            row.update({f"{a}_strength": v.strengths.get(a, 0.0) for a in axes})
            row.update({f"{a}_expected": v.expected.get(a, "") for a in axes})
            row.update({f"{s}_measured": round(v.measured[s], 4) for s in attributes.SCORE_NAMES})
            row.update({f"{s}_original": round(base[s], 4) for s in attributes.SCORE_NAMES})
            writer.writerow(row)
        archive.writestr("labels.csv", table.getvalue())
        archive.writestr("README.txt", f"{len(variants)} variants of one face, {provenance.statement(model)}.\n"
                         "labels.csv: requested strengths (standard deviations), the value each edit was expected to reach, "
                         "and the attributes measured on each variant and on the original.\n")  # fmt: skip
    return path
