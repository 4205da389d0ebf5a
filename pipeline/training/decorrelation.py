"""Measured leakage and edits decorrelated by it.

The leakage matrix holds, for each direction at +2 standard deviations, the change of every
measured attribute (in that attribute's standard deviations over real faces) and the identity
distance, median over faces (half the (+2) - (-2) difference, robust to a face that fails to
read). A direction fitted to keep an attribute can still move it on the generator's own faces
(its fit saw encoded photos): the sad direction opened the eyes by 0.9 sd and tilted the head.
Such a direction is corrected with the held attributes' own directions, the amounts solved from
the matrix so that, to first order, the held attributes' changes cancel:

    d' = d - sum_h a_h h,   with   sum_h a_h M[h, j] = M[d, j]   for every held j.

Strength 1 of ``d'`` is one standard deviation of ``d`` with ``-a_h`` of each ``h``; the
corrections are recorded in the direction's details. Only directions whose median leakage
exceeds :data:`LEAK_GOAL` are corrected: the correction also removes part of what an attribute
is read by (an aged face's narrower eyes), so clean directions are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..faces.attributes import MEASURED_NAMES, analyze, identity_distance, scores
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..models.render import render

STRENGTH = 2.0
COLUMNS = (*MEASURED_NAMES, "identity")
LEAK_GOAL = 0.25  # median off-diagonal leakage, in standard deviations
FIT_SEED = 1  # random faces the corrections are fitted on (the benchmark reads seed 0)
FIT_FACES = 24

Log = Callable[[str], None]
Editor = Callable[[Mapping[str, float]], np.ndarray]  # strengths -> the edited face as the user sees it


def attribute_names(directions: Mapping[str, Direction]) -> list[str]:
    return [k for k, d in directions.items() if d.kind == "attribute" and k in MEASURED_NAMES]


def effects(base: np.ndarray, editor: Editor, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per direction, the (+2) - (-2) change / 2 of every column for one face (raw units)."""
    jobs = [(name, sign) for name in names for sign in (STRENGTH, -STRENGTH)]
    images = [base] + [editor({name: sign}) for name, sign in jobs]
    attrs = analyze(images)
    read = [scores(a) for a in attrs]
    out: dict[str, np.ndarray] = {}
    for i, (name, sign) in enumerate(jobs):
        row = np.array(
            [read[i + 1][c] - read[0][c] for c in MEASURED_NAMES] + [identity_distance(attrs[i + 1], attrs[0])]
        )
        out[name] = out.get(name, 0) + np.r_[row[:-1] * np.sign(sign) / 2, row[-1] / 2]
    return {"_base": np.array([read[0][c] for c in MEASURED_NAMES]), **out}


def matrix(
    per_face: list[dict[str, np.ndarray]], names: Sequence[str], spread: Mapping[str, float] | None = None
) -> dict:
    """Medians over faces; attribute changes in standard deviations, of real faces where the
    directions' search recorded them (``spread``), else of the unedited faces here."""
    own = np.nanstd(np.stack([f["_base"] for f in per_face]), 0)
    spread = np.array([spread[c] if spread and c in spread else v for c, v in zip(MEASURED_NAMES, own)])
    spread = np.where(spread > 1e-9, spread, 1.0)
    out = {}
    for name in names:
        rows = np.stack([f[name] for f in per_face])
        rows[:, :-1] /= spread
        med = np.nanmedian(rows, 0)
        out[name] = {c: round(float(v), 3) for c, v in zip(COLUMNS, med)}
    return out


def median_leak(table: dict, name: str) -> float:
    """The median absolute change, over the attributes a direction does not name."""
    return float(np.median([abs(v) for c, v in table[name].items() if c not in (name, "identity")]))


def code_editor(G, code: torch.Tensor, directions: Mapping[str, Direction], noise=None) -> Editor:
    """Edits as the app makes them by default (each direction keeping what it was fitted to keep)."""

    def edit(strengths: Mapping[str, float]) -> np.ndarray:
        return render(G, apply_edits(code, directions, strengths), noise)[0]

    return edit


def random_faces(G, directions: Mapping[str, Direction], n: int, seed: int, log: Log,
                 spread: Mapping[str, float] | None = None) -> dict:  # fmt: skip
    """The matrix on ``n`` of the generator's own faces (W codes from ``seed``)."""
    names = attribute_names(directions)
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        codes = G.mapping(z).unsqueeze(1).repeat(1, G.n_latent, 1)
    per_face = []
    for i in range(n):
        code = codes[i : i + 1]
        per_face.append(effects(render(G, code)[0], code_editor(G, code, directions), names))
        log(f"leakage: random face {i + 1}/{n}")
    return matrix(per_face, names, spread)


def decorrelate(directions: Mapping[str, Direction], table: dict, held: Callable[[str], Sequence[str]],
                goal: float = LEAK_GOAL) -> dict[str, Direction]:  # fmt: skip
    """``directions`` with each one whose median leakage in ``table`` exceeds ``goal`` corrected
    by the directions of what it holds (``held(name)``), so that those stay put (module notes)."""
    out = dict(directions)
    for name in table:
        d = directions[name]
        keep = [h for h in held(name) if h in table and h in directions and h != name and directions[h].layers == d.layers]
        before = median_leak(table, name)
        if before <= goal or not keep:
            continue
        moves = np.array([[table[h][j] for j in keep] for h in keep])  # direction h -> attribute j
        amounts = np.linalg.lstsq(moves.T, np.array([table[name][j] for j in keep]), rcond=None)[0]
        step = d.scale * d.vector - sum(float(a) * directions[h].scale * directions[h].vector for a, h in zip(amounts, keep))
        info = {**d.info, "corrected_by": {h: round(float(-a), 4) for a, h in zip(amounts, keep)},
                "median_leak_before": round(before, 3)}  # fmt: skip
        out[name] = replace(d, vector=step / step.norm(), scale=float(step.norm()), info=info)
    return out
