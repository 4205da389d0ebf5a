"""Fitting a model's talk map on its own renders (see :mod:`pipeline.talk.talking_head`).

Random faces are measured with dlib's 68 landmarks, a ridge regression from whitened W to the
measures gives the directions, each group's W+ rows are the range that reaches most of the asked
change while moving the brows and nose least, and a second ridge regression from measured landmark
changes back to direction strengths calibrates them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..models.generator import Generator
from ..models.render import render
from ..talk.talking_head import (
    BATCH,
    GROUPS,
    MEASURES,
    RIGID,
    TalkMap,
    face_box,
    generator_digest,
    measures,
    read_landmarks,
)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients (x_dims, y_dims) of ridge regression without intercept (centre first)."""
    return np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ y)


def _cv_ridge(
    x: np.ndarray, y: np.ndarray, alphas=(1.0, 10.0, 100.0, 1000.0), folds: int = 5
) -> tuple[float, np.ndarray]:
    """Ridge penalty chosen by k-fold cross-validation; returns it and the held-out R^2 per output."""
    order = np.random.default_rng(0).permutation(len(x))
    best = None
    for alpha in alphas:
        pred = np.empty_like(y)
        for k in range(folds):
            test = order[k::folds]
            train = np.setdiff1d(order, test)
            mx, my = x[train].mean(0), y[train].mean(0)
            pred[test] = (x[test] - mx) @ _ridge(x[train] - mx, y[train] - my, alpha) + my
        r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
        if best is None or r2.mean() > best[1].mean():
            best = (alpha, r2)
    return best


def candidate_ranges(n_latent: int) -> list[tuple[int, int]]:
    """Contiguous ranges of W+ rows worth trying for mouth and eye motion: at least two rows."""
    return [(lo, hi) for lo in range(0, n_latent - 1) for hi in range(lo + 2, n_latent + 1)]


# Commands the fit tries, in standard deviations of each measure over the model's faces:
# beyond about three the renders leave the faces the generator knows.
TRIAL_STEP = 2.0
CALIBRATION_RANGE = {"open": (-1.0, 3.0), "width": (-2.0, 2.0), "eyes": (-3.0, 0.5)}


def fit_talk_map(
    G: Generator,
    faces: int = 300,
    trial_faces: int = 16,
    calibration_faces: int = 64,
    seed: int = 0,
    truncation: float = 0.7,
    log: Callable[[str], None] = print,
) -> TalkMap:
    """Fit the talk map of generator ``G`` on its own renders (see the module docstring).

    ``faces`` random faces give the directions, ``trial_faces`` choose each group's W+ rows,
    ``calibration_faces`` calibrate the strengths.
    """
    start = time.time()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n_latent, dim = G.n_latent, G.style_dim

    # Whitened W: principal axes of the mapping's output, so directions follow natural variation.
    with torch.no_grad():
        w_all = torch.cat([G.mapping(z) for z in torch.randn(8192, dim, generator=gen).split(2048)]).double()
    w_mean = w_all.mean(0)
    _, s, vt = torch.linalg.svd(w_all - w_mean, full_matrices=False)
    keep = int((torch.cumsum(s**2, 0) / (s**2).sum() < 0.99).sum()) + 1
    axes, spread = vt[:keep].numpy(), (s[:keep] / np.sqrt(len(w_all))).numpy()

    def wplus_of(w: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(w).float()[:, None].repeat(1, n_latent, 1)

    # 1. Directions: ridge regression from whitened W to the measures of the renders.
    with torch.no_grad():
        w = G.mapping(torch.randn(faces, dim, generator=gen)).double()
    w = (w_mean + truncation * (w - w_mean)).numpy()
    images = render(G, wplus_of(w), batch=BATCH)
    boxes = [face_box(im) for im in images]
    lm = read_landmarks(images, boxes)
    m = measures(lm)
    natural = m.std(0)  # the unit of every command below
    u = (w - w_mean.numpy()) @ axes.T / spread
    alpha, r2 = _cv_ridge(u, m)
    coef = _ridge(u - u.mean(0), m - m.mean(0), alpha).T  # (3, keep)
    log(f"directions: {faces} faces, {keep} whitened axes, ridge {alpha:g}, held-out R^2 "
        + ", ".join(f"{k} {v:.2f}" for k, v in zip(MEASURES, r2)) + f" ({time.time() - start:.0f} s)")  # fmt: skip
    directions = np.zeros((len(MEASURES), dim))  # W offset per standard deviation of each measure
    for idx in GROUPS.values():
        a = coef[list(idx)]
        # Least-norm whitened step that changes this group's measures by one unit each and the others not.
        du = a.T @ np.linalg.inv(a @ a.T)
        directions[list(idx)] = (du.T * spread) @ axes * natural[list(idx), None]

    # 2. W+ rows per group: a strong change of the group's measures with little motion of the brows and nose.
    trial = np.arange(trial_faces)
    still_lm, trial_boxes = lm[trial], [boxes[i] for i in trial]
    trial_iod = np.linalg.norm(still_lm[:, 36:42].mean(1) - still_lm[:, 42:48].mean(1), axis=1)[:, None]
    layers, trials = {}, {}
    for group, idx in GROUPS.items():
        scored = []
        for lo, hi in candidate_ranges(n_latent):
            gains, leaks = [], []
            for k in idx:
                step = TRIAL_STEP * (1 if sum(CALIBRATION_RANGE[MEASURES[k]]) >= 0 else -1)  # eyes: closing
                offset = torch.zeros(n_latent, dim)
                offset[lo:hi] = torch.from_numpy(step * directions[k]).float()
                moved = read_landmarks(render(G, wplus_of(w[trial]) + offset, batch=BATCH), trial_boxes)
                # Share of the asked change that the landmarks show.
                gains.append(np.mean(measures(moved)[:, k] - m[trial, k]) / (step * natural[k]))
                leaks.append(np.mean(np.linalg.norm(moved - still_lm, axis=2)[:, RIGID] / trial_iod))
            scored.append(((lo, hi), float(np.mean(gains)), float(np.mean(leaks))))
        best_gain = max(g for _, g, _ in scored)
        # Among ranges that reach most of the best one's change, the one that moves the rest of the face least.
        rows, gain, leak = min((s for s in scored if s[1] >= 0.8 * best_gain), key=lambda s: s[2])
        layers[group] = rows
        trials[group] = {"rows": list(rows), "gain": round(gain, 3), "rigid_motion_iod": round(leak, 4),
                         "ranges_tried": len(scored)}  # fmt: skip
        log(f"{group}: W+ rows {rows[0]}-{rows[1] - 1}, {gain:.0%} of the asked change, brows and nose move "
            f"{leak:.3f} IOD ({time.time() - start:.0f} s)")  # fmt: skip

    # 3. Calibration: ridge from the measured changes back to the commanded strengths.
    cal = np.arange(trial_faces, trial_faces + calibration_faces) % faces
    commands = np.stack([rng.uniform(*CALIBRATION_RANGE[k], size=len(cal)) for k in MEASURES], axis=1)
    offsets = torch.zeros(len(cal), n_latent, dim)
    for group, idx in GROUPS.items():
        lo, hi = layers[group]
        offsets[:, lo:hi] += torch.from_numpy(commands[:, list(idx)] @ directions[list(idx)]).float()[:, None]
    moved = read_landmarks(render(G, wplus_of(w[cal]) + offsets, batch=BATCH), [boxes[i] for i in cal])
    achieved = measures(moved) - m[cal]
    basis = np.zeros_like(directions)
    limits = np.zeros((len(MEASURES), 2))
    calibration = {}
    for idx in GROUPS.values():
        idx = list(idx)
        back = _ridge(achieved[:, idx], commands[:, idx], alpha=1e-4)  # measured change -> command
        basis[idx] = back.T @ directions[idx]
        for k in idx:
            gain = float(np.polyfit(commands[:, k], achieved[:, k], 1)[0])
            corr = float(np.corrcoef(commands[:, k], achieved[:, k])[0, 1])
            lo, hi = CALIBRATION_RANGE[MEASURES[k]]
            # The reach: the change the generator makes at the ends of the commands it was fitted on.
            limits[k] = sorted((gain * lo, gain * hi))
            calibration[MEASURES[k]] = {"natural_std": round(float(natural[k]), 4),
                                        "gain_per_std": round(gain, 3), "corr": round(corr, 3),
                                        "reach": [round(float(v), 4) for v in limits[k]]}  # fmt: skip
    log("calibration: " + ", ".join(f"{k} gain {v['gain_per_std']:.2f} corr {v['corr']:.2f} reach {v['reach']}"
                                    for k, v in calibration.items()))  # fmt: skip
    info = {
        "generator": generator_digest(G), "faces": faces, "trial_faces": trial_faces,
        "calibration_faces": calibration_faces, "seed": seed, "truncation": truncation, "whitened_axes": keep,
        "ridge": alpha, "heldout_r2": {k: round(float(v), 3) for k, v in zip(MEASURES, r2)},
        "rows": trials, "calibration": calibration, "seconds": round(time.time() - start, 1),
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    return TalkMap(basis=basis, layers=layers, limits=limits, info=info)
