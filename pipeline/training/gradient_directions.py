"""Directions from a classifier's gradient, for what the labelled photos hardly show.

FER2013's fear, sadness, surprise and disgust read under 3% on the generator's random faces and
on most UTKFace photos: a regression of the photos' codes on those probabilities finds little to
fit, and its directions raise them by a few hundredths at +2 sd. The emotion net itself says
which way each face must move to read more so: the gradient of its log-probability through the
generator, taken at many random faces (each face's gradient of unit length, so no face
dominates) and averaged. That raw gradient points where W hardly varies (a spread of ~4 along it
against 7-12 for the regression's directions): 2 sd along it is a short move, which keeps the
person but raises the emotion little. Weighted by W's covariance (to the power 1/2 or 1: the most
gain per standard deviation moved) it follows the axes faces vary along, and a standard deviation
goes further. What a direction must keep (age, gender, pose, eyes) is projected out as for every
other direction, and the three candidates are judged against the regression by the numbers: on
random faces it was not fitted on, the emotion raised at +2 sd, the person kept as well and
nothing else moved more (:func:`refit_by_gradient`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import dlib
import numpy as np
import torch
import torch.nn.functional as F

from ..faces import attributes
from ..faces.attributes import MEASURED_NAMES
from ..faces.face_geometry import LUMA_WEIGHTS
from ..latent.directions import Direction, random_w, sample_w
from ..latent.edit import orthogonalize
from ..models.generator import Generator
from ..models.mini_xception import EMOTIONS
from ..models.render import render
from .decorrelation import CORRECT_ABOVE, LEAK_GOAL, STRENGTH, code_editor, effects, matrix, median_leak

Log = Callable[[str], None]
FIT_FACES = 160  # random faces whose gradients are averaged
CHECK_FACES = 48  # other random faces on which old and new directions are compared
IDENTITY_SLACK = 0.05  # a gradient direction may change the person this much more (median dlib distance)


def _chip_grid(image: np.ndarray, size: int) -> torch.Tensor:
    """(1, chip, chip, 2) sampling grid of the emotion chip that ``attributes.analyze`` cuts from
    ``image`` (dlib's face chip on the 5 landmarks), in ``F.grid_sample``'s coordinates of a
    ``size``-px render."""
    located = attributes.locate(image)
    chip = attributes.EMOTION_CHIP
    details = dlib.get_face_chip_details(located.shape5, size=chip, padding=attributes.EMOTION_PADDING)
    rect, angle = details.rect, details.angle
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    source = (corners - centre) @ rotation.T + centre  # work pixels of chip (0,0), (n-1,0), (n-1,n-1)
    target = np.array([[0, 0], [chip - 1, 0], [chip - 1, chip - 1]], dtype=np.float64)
    to_work = np.linalg.solve(np.column_stack([target, np.ones(3)]), source)  # (3, 2): chip -> work
    u, v = np.meshgrid(np.arange(chip), np.arange(chip))
    work = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1) @ to_work
    pixels = work / located.scale  # work pixels -> render pixels
    grid = (pixels + 0.5) / size * 2 - 1
    return torch.from_numpy(grid.reshape(1, chip, chip, 2)).float()


def emotion_log_probability(G: Generator, wplus: torch.Tensor, grid: torch.Tensor, emotion: str,
                            noise: list[torch.Tensor]) -> torch.Tensor:  # fmt: skip
    """log P(emotion) of the face ``wplus`` renders, differentiable in ``wplus``."""
    image = G.synthesis(wplus, noise=noise)  # (1, 3, H, W) in [-1, 1]
    chip = F.grid_sample(image, grid.to(image.device), mode="bilinear", padding_mode="border", align_corners=False)
    grey = (chip.permute(0, 2, 3, 1) @ torch.as_tensor(LUMA_WEIGHTS, dtype=chip.dtype, device=chip.device))[:, None]
    logits = attributes.emotion_net()(grey.clamp(-1, 1))
    return torch.log_softmax(logits, dim=1)[0, EMOTIONS.index(emotion)]


def mean_gradient(G: Generator, emotion: str, layers: tuple[int, int], n: int = FIT_FACES, seed: int = 0) -> torch.Tensor:
    """(style_dim,) unit vector: the mean over ``n`` random faces of the unit gradient of
    log P(emotion) with respect to the W of ``layers``' rows."""
    noise = [m.to(G.device) for m in G.noise_buffers()]
    total = torch.zeros(G.style_dim)
    lo, hi = layers
    for i in range(n):
        with torch.no_grad():
            w = random_w(G, seed + i)
        image = render(G, w[:, None].repeat(1, G.n_latent, 1), noise)[0]
        grid = _chip_grid(image, G.config.resolution)
        moved = w.clone().requires_grad_(True)
        wplus = torch.cat([w[:, None].repeat(1, lo, 1), moved[:, None].repeat(1, hi - lo, 1),
                           w[:, None].repeat(1, G.n_latent - hi, 1)], 1)  # fmt: skip
        (grad,) = torch.autograd.grad(emotion_log_probability(G, wplus, grid, emotion, noise), moved)
        total += (grad[0] / grad[0].norm().clamp_min(1e-12)).cpu()
    return total / total.norm()


def weighted_by_spread(gradient: torch.Tensor, covariance: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradient as it is, and weighted by W's covariance to the power 1/2 and 1 (unit vectors):
    from the steepest way per unit of W moved to the steepest per standard deviation moved."""
    values, vectors = torch.linalg.eigh(covariance)
    root = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    out = {"raw": gradient, "whitened": root @ gradient, "natural": covariance @ gradient}
    return {k: v / v.norm() for k, v in out.items()}


def judge(G: Generator, directions: Mapping[str, Direction], name: str, codes: torch.Tensor, faces: np.ndarray,
          spread: Mapping[str, float] | None) -> dict[str, float]:  # fmt: skip
    """How ``name``'s direction does on the faces ``codes`` (rendered: ``faces``), as the leakage
    matrix reads it (half of +2 sd minus -2 sd, medians over the faces): its emotion's change
    (probability, mean), what else it moves (median leakage, sd) and the identity distance."""
    per_face = [effects(face, code_editor(G, code[None], directions), [name]) for code, face in zip(codes, faces)]
    table = matrix(per_face, [name], spread)
    gain = float(np.mean([f[name][MEASURED_NAMES.index(name)] for f in per_face]))
    return {"gain": round(gain, 3), "leak": round(median_leak(table, name), 3), "identity": table[name]["identity"]}


def refit_by_gradient(G: Generator, directions: Mapping[str, Direction], names: Sequence[str], seed: int = 0,
                      n: int = FIT_FACES, spread: Mapping[str, float] | None = None,
                      log: Log = print) -> tuple[dict[str, Direction], dict]:  # fmt: skip
    """``directions`` with each emotion in ``names`` replaced by the gradient direction (of
    :func:`weighted_by_spread`'s three) that raises the emotion most on :data:`CHECK_FACES` other
    random faces, where that is more than the regression does, keeping the person about as well
    (median identity distance at most :data:`IDENTITY_SLACK` more) and moving what it keeps no more
    (median leakage at most the regression's, or below what decorrelation leaves alone).
    ``spread``: the attributes' standard deviations over real faces (the leakage matrix's unit)."""
    out, report = dict(directions), {}
    with torch.no_grad():
        check = torch.cat([random_w(G, 10_000 + seed + i)[:, None].repeat(1, G.n_latent, 1) for i in range(CHECK_FACES)])
    faces = render(G, check)
    w = sample_w(G, 5000, seed)
    covariance = torch.cov(w.T)
    for name in names:
        if name not in EMOTIONS or name not in directions:
            raise ValueError(f"{name!r} is not an emotion direction of this model")
        old = directions[name]
        keep = [directions[k].vector for k in old.info.get("keeps", ()) if k in directions]
        gradient = mean_gradient(G, name, old.layers, n, seed)
        fit = {"regression": judge(G, out, name, check, faces, spread)}
        regression, best = fit["regression"], None
        leak_allowed = max(regression["leak"], CORRECT_ABOVE * LEAK_GOAL)
        for label, alone in weighted_by_spread(gradient, covariance).items():
            vector = orthogonalize(alone, keep)
            info = {**old.info, "method": f"emotion net gradient ({label})", "faces": n,
                    "alone_scale": round(float((w @ alone).std()), 5), "alone_cosine": round(float(alone @ vector), 4),
                    "cosine_to_regression": round(float(vector @ old.vector), 4)}  # fmt: skip
            for key in ("correlation", "photos", "corrected_by"):  # the regression's, not this direction's
                info.pop(key, None)
            new = replace(old, vector=vector, alone=alone, scale=float((w @ vector).std()), info=info)
            fit[label] = judge(G, {**out, name: new}, name, check, faces, spread)
            ok = (fit[label]["identity"] <= regression["identity"] + IDENTITY_SLACK
                  and fit[label]["leak"] <= leak_allowed)  # fmt: skip
            if ok and fit[label]["gain"] > (fit[best[0]]["gain"] if best else regression["gain"]):
                best = (label, new)
        fit["kept"] = best[0] if best else "regression"
        report[name] = fit
        log(f"{name} on {CHECK_FACES} faces, P({name}) per +{STRENGTH:g} sd / leakage / identity: "
            + ", ".join(f"{k} {v['gain']:+.3f} / {v['leak']:.2f} / {v['identity']:.2f}" for k, v in fit.items() if k != "kept")
            + f" -> {fit['kept']} kept")  # fmt: skip
        if best:
            out[name] = best[1]
    return out, report
