"""Do a generator's faces look like photos? Measured against held-out photos at the same size.

* **Sharpness ratio**: median Laplacian variance (fine detail) of the faces' centre, samples
  over photos. An autoencoder's decodes are smooth: far under 1.
* **Real-vs-sample accuracy**: a logistic regression on simple image statistics (histograms of
  gradient magnitude, of the Laplacian and of colour), 5-fold cross-validated. 0.5 means the
  statistics cannot tell samples from photos; 1.0 that they always can.
* **Edited codes**: encoded held-out faces moved ±3σ along each edit direction must decode as
  well as the unedited ones (same sharpness ratio and accuracy) and without a colour cast
  (mean RGB shift of the face's centre against the unedited decode).
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch

from ..faces.face_geometry import centre_box

FOLDS = 5
EDIT_SIGMA = 3.0


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _centre(image: np.ndarray) -> np.ndarray:
    top, bottom, left, right = centre_box(*image.shape[:2])
    return image[top:bottom, left:right]


def detail(images: np.ndarray) -> np.ndarray:
    """(N,) Laplacian variance of each image's centre."""
    return np.array([cv2.Laplacian(_grey(_centre(im)), cv2.CV_64F).var() for im in images])


def sharpness_ratio(samples: np.ndarray, real: np.ndarray) -> float:
    return float(np.median(detail(samples)) / max(np.median(detail(real)), 1e-9))


def image_features(images: np.ndarray) -> np.ndarray:
    """(N, F) normalised histograms: gradient magnitude and Laplacian (log bins), colour (8 per channel)."""
    grad_bins = np.concatenate([[0], np.geomspace(0.5, 256, 15)])
    lap_bins = np.concatenate([[0], np.geomspace(0.5, 256, 9)])
    out = []
    for image in images:
        grey = _grey(_centre(image))
        magnitude = np.hypot(cv2.Sobel(grey, cv2.CV_64F, 1, 0), cv2.Sobel(grey, cv2.CV_64F, 0, 1)) / 4
        lap = np.abs(cv2.Laplacian(grey, cv2.CV_64F))
        parts = [np.histogram(magnitude, grad_bins)[0], np.histogram(lap, lap_bins)[0]]
        parts += [np.histogram(_centre(image)[..., c], 8, (0, 256))[0] for c in range(3)]
        out.append(np.concatenate([p / max(p.sum(), 1) for p in parts]))
    return np.array(out)


def real_vs_sample_accuracy(samples: np.ndarray, real: np.ndarray, seed: int = 0) -> float:
    """5-fold accuracy of a logistic regression telling ``samples`` from ``real`` (as many of each)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(samples), len(real))
    x = np.concatenate([image_features(samples[:n]), image_features(real[:n])])
    y = np.r_[np.zeros(n), np.ones(n)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=folds, scoring="accuracy").mean())


def realism(samples: np.ndarray, real: np.ndarray) -> dict[str, float]:
    return {"sharpness_ratio": round(sharpness_ratio(samples, real), 4),
            "real_vs_sample_accuracy": round(real_vs_sample_accuracy(samples, real), 4)}  # fmt: skip


@torch.no_grad()
def edited_codes(G, E, faces: np.ndarray, directions: Mapping, sigma: float = EDIT_SIGMA, batch: int = 50) -> dict:
    """:func:`realism` of encoded ``faces`` decoded unedited and moved ±``sigma`` along each direction,
    with each edit's colour cast (mean RGB shift of the face's centre, 0..255) against the unedited decode."""
    from ..latent.edit import apply_edits
    from ..models.render import from_uint8, render

    codes = torch.cat([E.wplus(from_uint8(faces[i : i + batch])) for i in range(0, len(faces), batch)])
    unedited = render(G, codes, None, batch)
    out = {"unedited": realism(unedited, faces)}
    base_colour = np.stack([_centre(im).reshape(-1, 3).mean(axis=0) for im in unedited])
    for name in directions:
        for sign in (1, -1):
            decoded = render(G, apply_edits(codes, directions, {name: sign * sigma}), None, batch)
            colour = np.stack([_centre(im).reshape(-1, 3).mean(axis=0) for im in decoded])
            out[f"{name}{'+' if sign > 0 else '-'}{sigma:g}"] = {
                **realism(decoded, faces),
                "rgb_shift": round(float(np.abs(colour - base_colour).mean(axis=0).max()), 2),
            }
    edits = [v for k, v in out.items() if k != "unedited"]
    out["summary"] = {key: round(float(np.median([e[key] for e in edits])), 4)
                      for key in ("sharpness_ratio", "real_vs_sample_accuracy", "rgb_shift")}  # fmt: skip
    return out
