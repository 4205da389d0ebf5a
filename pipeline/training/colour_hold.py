"""Edits that keep the face's colour: each attribute direction corrected on the generator's own faces.

The directions are fitted on encoded photos with the cheeks' luminance as a covariate, but a
covariate read with noise is held only in part, and the generator adds casts of its own: on
utkface-128, smile +3 sd lightened the face's centre by 18-23 levels of 255 and angry +3 sd
darkened and greened it by 20-24, where real photos change by about 1 level over 20 years of age.
Here each direction ``d`` is corrected within its own W+ rows by the steps that move the measured
colour most directly, the gradients ``U`` (one row per channel and region) of the regions' mean
colour with respect to a shift of those rows, averaged over faces, so that the change measured on
the decoded faces (``delta``, per standard deviation, from edits at ±2 sd) cancels:

    d' = d - U^T (U U^T)^-1 delta(d),

in a few rounds, the generator not being linear. Two regions are held: the cheeks, where the
skin tone is read (:func:`~pipeline.faces.face_geometry.skin_luminance`), always; and the face's
centre as a whole, unless holding it costs a direction more than :data:`KEEP` of its own effect,
in which case the skin tone alone is held. Age is left as fitted (:data:`AS_FITTED`).
The strength keeps its meaning: strength 1 of ``d'`` is one standard deviation of ``d`` plus the
correction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..faces.attributes import MEASURED_NAMES, analyze, scores
from ..faces.face_geometry import centre_box, cheek_mask
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..latent.prior import sample_wplus
from ..models.render import from_uint8, render
from .data import load_faces

Log = Callable[[str], None]
FIT_FACES = 64  # faces the corrections are fitted on
STRENGTH = 2.0  # colour changes and effects are read from edits at ± this many sd
ROUNDS = 3  # corrections measured and applied again (a cast of 7.6 levels per sd fell to under 0.01)
KEEP = 0.9  # the centre is also held when that keeps this share of the direction's effect
# Left as fitted: the age net reads an aged face's paling as age, and on photos the renderer already
# takes the cheeks' mean change out (``photo_render.skin_tone_change``). Held here as well, age +3 sd
# on 40 held-out photos read +15.1 years instead of +16.0, older on 37 instead of 38, one flipped.
AS_FITTED = ("age",)


@torch.no_grad()
def fit_codes(G, encoder, data_dir: Path, files: list[str] | None, n: int = FIT_FACES, seed: int = 0) -> torch.Tensor:
    """(n, n_latent, dim) codes to fit on: ``n`` of the photos ``files`` encoded (the faces the app
    edits start there), or ``n`` random faces of the generator when there is no encoder or no photos."""
    if encoder is None or not files:
        return sample_wplus(G, n, seed)
    chosen = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    faces = load_faces(data_dir, [files[i] for i in sorted(chosen)], G.config.resolution)
    return encoder.wplus(from_uint8(faces).to(G.device)).cpu()


def region_masks(G, codes: torch.Tensor) -> dict[str, np.ndarray]:
    """(res, res) float masks of the aligned frame, ``cheeks`` (the discs where the skin tone is read,
    placed by the landmarks of the decoded ``codes`` averaged) and ``centre`` (the face's centre)."""
    faces = render(G, codes)
    landmarks = np.stack([a.landmarks for a in analyze(faces, identity=False)]).mean(0)
    res = faces.shape[1]
    centre = np.zeros((res, res), np.float32)
    top, bottom, left, right = centre_box(res, res)
    centre[top:bottom, left:right] = 1
    return {"cheeks": cheek_mask((res, res), landmarks).astype(np.float32), "centre": centre}


def _colours(images: torch.Tensor | np.ndarray, masks: list[np.ndarray]) -> torch.Tensor:
    """(N, 3 * len(masks)) mean RGB (0..255) of each mask: ``images`` are generator tensors in
    [-1, 1] (N, 3, H, W) or uint8 (N, H, W, 3) renders."""
    if isinstance(images, np.ndarray):
        images = from_uint8(images)
    x = (images + 1) * 127.5
    out = [(x * (m := torch.from_numpy(mask))).sum((2, 3)) / m.sum() for mask in masks]
    return torch.cat(out, 1)


def colour_gradients(G, codes: torch.Tensor, rows: tuple[int, int], masks: list[np.ndarray]) -> torch.Tensor:
    """(3 * len(masks), style_dim): the change of each mean colour per unit shift of W+ ``rows``,
    averaged over ``codes``."""
    noise = [n[:1].expand(len(codes), -1, -1, -1) for n in G.noise_buffers()]
    grads = []
    for channel in range(3 * len(masks)):
        shift = torch.zeros(G.style_dim, requires_grad=True)
        w = codes.clone()
        w[:, rows[0] : rows[1]] += shift
        _colours(G.synthesis(w, noise=noise), masks)[:, channel].mean().backward()
        grads.append(shift.grad.detach().clone())
    return torch.stack(grads)


def _edited(G, codes: torch.Tensor, d: Direction, strength: float) -> np.ndarray:
    return render(G, apply_edits(codes, {d.name: d}, {d.name: strength}))


def colour_change(G, codes: torch.Tensor, d: Direction, masks: list[np.ndarray]) -> torch.Tensor:
    """Mean colour change of the regions per standard deviation of ``d`` (the ±STRENGTH edits' difference)."""
    plus, minus = (_colours(_edited(G, codes, d, s), masks) for s in (STRENGTH, -STRENGTH))
    return (plus - minus).mean(0) / (2 * STRENGTH)


def effect(G, codes: torch.Tensor, d: Direction) -> float:
    """Median change per sd of what ``d`` names, read on the decoded faces (NaN when not measured)."""
    if d.name not in MEASURED_NAMES:
        return float("nan")
    read = [[scores(a)[d.name] for a in analyze(_edited(G, codes, d, s), identity=False)] for s in (STRENGTH, -STRENGTH)]
    return float(np.nanmedian(np.subtract(*read)) / (2 * STRENGTH))


def held(G, codes: torch.Tensor, d: Direction, masks: list[np.ndarray]) -> tuple[Direction, list[float]]:
    """``d`` corrected so that the mean colours of ``masks`` stay (module notes), and the change per
    sd it had (``3 * len(masks)`` values)."""
    gradients = colour_gradients(G, codes, d.layers, masks)
    step = d.scale * d.vector
    before = None
    for _ in range(ROUNDS):
        current = replace(d, vector=step / step.norm(), scale=float(step.norm()))
        change = colour_change(G, codes, current, masks)
        before = change if before is None else before
        step = step - gradients.T @ torch.linalg.solve(gradients @ gradients.T, change)
    return replace(d, vector=step / step.norm(), scale=float(step.norm())), [round(float(v), 2) for v in before]


def hold_colour(G, directions: Mapping[str, Direction], codes: torch.Tensor, log: Log = print) -> tuple[dict[str, Direction], dict]:
    """``directions`` with every attribute direction (but :data:`AS_FITTED`) holding the skin tone, and the face's centre
    colour where that keeps :data:`KEEP` of its effect (module notes); and the report. ``codes``:
    (n, n_latent, dim) faces the corrections are fitted on (encoded photos, as the app edits)."""
    found = region_masks(G, codes)
    regions = {"skin": [found["cheeks"]], "skin+centre": [found["cheeks"], found["centre"]]}
    out, report = dict(directions), {}
    for name, d in directions.items():
        if d.kind != "attribute" or name in AS_FITTED:
            continue
        trials = {region: held(G, codes, d, masks) for region, masks in regions.items()}
        effects = {region: effect(G, codes, trial) for region, (trial, _) in trials.items()}
        full = effects["skin+centre"] / effects["skin"] if effects["skin"] else float("nan")
        region = "skin" if full < KEEP else "skin+centre"  # NaN (not measured): the centre too
        chosen, before = trials[region]
        report[name] = {"held": region, "change_per_sd_before": before,
                        "effect_per_sd": {k: round(v, 4) for k, v in effects.items()},
                        "effect_before": round(effect(G, codes, d), 4)}  # fmt: skip
        out[name] = replace(chosen, info={**d.info, "colour_held": region})
        log(f"colour: {name} holds the {region} colour (effect per sd {report[name]['effect_before']} -> "
            f"{effects[region]:.4f}; cheeks' RGB change per sd was {before[:3]})")
    return out, report
