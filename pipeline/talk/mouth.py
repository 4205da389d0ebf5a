"""Mouth and jaw landmarks: a normalised frame, a parametric articulation model, a PCA basis.

Points follow dlib's 68-point scheme: jaw 0-16, outer lips 48-59, inner lips 60-67.
In the normalised frame the midpoint between the eye centres is the origin, the eye
line is horizontal, x points to the image right, y down, and the inter-ocular
distance (IOD) is 1, so shapes from any photo are comparable.

:func:`articulate` moves a face's mouth and jaw by five articulation parameters
(:data:`PARAMS`), each a plain physical quantity in IOD units or a 0..1 amount; the
viseme table in :mod:`pipeline.talk.visemes` is written in these parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JAW = np.arange(0, 17)
MOUTH = np.arange(48, 68)
MOUTH_JAW = np.concatenate([JAW, MOUTH])  # the 37 points the talking model moves
LEFT_EYE, RIGHT_EYE = np.arange(36, 42), np.arange(42, 48)

OUTER_UPPER = np.array([49, 50, 51, 52, 53])
OUTER_LOWER = np.array([55, 56, 57, 58, 59])
INNER_UPPER = np.array([61, 62, 63])
INNER_LOWER = np.array([67, 66, 65])  # facing INNER_UPPER column by column
CORNERS = np.array([48, 54, 60, 64])
UPPER_LIP = np.concatenate([OUTER_UPPER, INNER_UPPER])
LOWER_LIP = np.concatenate([OUTER_LOWER, INNER_LOWER])

PARAMS = ("open", "spread", "round", "tuck", "press")
"""Articulation parameters:

* ``open``: gap between the inner lips at the centre, in IOD (0 closed, ~0.3 wide open);
  the jaw drops with it.
* ``spread``: relative change of mouth width (+0.2: 20% wider, as in "ee").
* ``round``: lip rounding and protrusion, 0..1 (narrower mouth, rounder opening, fuller lips).
* ``tuck``: lower lip drawn up under the upper teeth, 0..1 (f, v).
* ``press``: lips pressed together and thinned, 0..1 (m, b, p).
"""

# How the articulators share a movement: explainable constants, not fitted.
UPPER_LIP_SHARE = 0.2  # of the opening: the upper lip rises a little, the lower lip does the rest
JAW_SHARE = 0.7  # the chin drops by this share of the lower lip's drop (the lips open wider than the jaw)
CORNER_SHARE = 0.35  # mouth corners move down by this share of the lower lip's drop
ROUND_NARROWING = 0.25  # full rounding narrows the mouth by a quarter
ROUND_INNER_EXTRA = 0.15  # ... and pulls the inner corners in a little further (an "O")
ROUND_FULLNESS = 0.03  # protruded lips look fuller: each lip edge moves out by this much (IOD)
TUCK_LIFT = 0.5  # tucked lower lip rises by half its thickness
PRESS_THINNING = 0.3  # pressed lips lose 30% of their visible thickness
REST_GAP = 0.0  # inner gap of the closed mouth the parameters start from


@dataclass(frozen=True)
class Similarity:
    """Image -> normalised frame: ``(p - origin) @ rotation.T / scale``."""

    origin: np.ndarray  # (2,)
    rotation: np.ndarray  # (2, 2)
    scale: float  # inter-ocular distance in pixels

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.origin) @ self.rotation.T / self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) * self.scale @ self.rotation + self.origin


def normalise(landmarks: np.ndarray) -> tuple[np.ndarray, Similarity]:
    """(68, 2) image landmarks -> (68, 2) normalised landmarks and the transform back."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    left, right = landmarks[LEFT_EYE].mean(axis=0), landmarks[RIGHT_EYE].mean(axis=0)
    d = right - left
    scale = float(np.hypot(*d))
    if scale < 1e-6:
        raise ValueError("degenerate landmarks: the eye centres coincide")
    c, s = d / scale
    transform = Similarity(origin=(left + right) / 2, rotation=np.array([[c, s], [-s, c]]), scale=scale)
    return transform.apply(landmarks), transform


def inner_gap(shape: np.ndarray) -> np.ndarray:
    """Mouth opening: mean vertical gap between facing inner lip points, (..., 68, 2) -> (...)."""
    return (shape[..., INNER_LOWER, 1] - shape[..., INNER_UPPER, 1]).mean(axis=-1)


def _jaw_weights(shape: np.ndarray) -> np.ndarray:
    """How much each jaw point follows the chin: 0 at the ears, 1 at the chin (the jaw hinges)."""
    y = shape[JAW, 1]
    top = min(y[0], y[-1])
    return np.clip((y - top) / max(y[8] - top, 1e-6), 0, 1) ** 1.5


def closed(shape: np.ndarray) -> np.ndarray:
    """The same face with its inner lips brought together: the start for articulation.

    The lower lip and the jaw rise by the face's own opening, so an identity photo
    taken mid-sentence or smiling with teeth still gets a closed resting mouth.
    """
    out = np.array(shape, dtype=np.float64)
    gap = max(float(inner_gap(out)) - REST_GAP, 0.0)
    out[LOWER_LIP, 1] -= gap
    out[[48, 54, 60, 64], 1] -= CORNER_SHARE * gap
    out[JAW, 1] -= JAW_SHARE * gap * _jaw_weights(out)
    return out


def articulate(rest: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Move a closed mouth by articulation parameters.

    ``rest``: (68, 2) normalised landmarks with closed lips (see :func:`closed`);
    ``params``: (..., 5) in :data:`PARAMS` order. Returns (..., 68, 2).
    """
    params = np.asarray(params, dtype=np.float64)
    lead = params.shape[:-1]
    open_, spread, round_, tuck, press = (params[..., i, None] for i in range(5))
    out = np.broadcast_to(np.asarray(rest, dtype=np.float64), lead + (68, 2)).copy()
    x, y = out[..., 0], out[..., 1]  # views into out
    centre_x = rest[MOUTH, 0].mean()
    half_width = (rest[54, 0] - rest[48, 0]) / 2

    # Width: spreading and rounding scale the mouth about its centre.
    sx = 1 + spread - ROUND_NARROWING * round_
    x[..., MOUTH] = centre_x + (x[..., MOUTH] - centre_x) * sx
    x[..., [60, 64]] = centre_x + (x[..., [60, 64]] - centre_x) * (1 - ROUND_INNER_EXTRA * round_)
    # Protrusion makes both lips look fuller.
    y[..., OUTER_UPPER] -= ROUND_FULLNESS * round_
    y[..., OUTER_LOWER] += ROUND_FULLNESS * round_

    # Thicknesses before opening, for tuck and press.
    upper_thick = (rest[INNER_UPPER, 1] - rest[[50, 51, 52], 1]).mean()
    lower_thick = (rest[[58, 57, 56], 1] - rest[INNER_LOWER, 1]).mean()
    # Pressing thins the visible lips towards the closed line.
    y[..., OUTER_UPPER] += PRESS_THINNING * upper_thick * press
    y[..., OUTER_LOWER] -= PRESS_THINNING * lower_thick * press
    # Tucking lifts the lower lip under the upper teeth.
    y[..., OUTER_LOWER] -= TUCK_LIFT * lower_thick * tuck

    # Opening: lips part most at the centre, less towards the corners; the jaw hinges.
    profile = np.sqrt(np.clip(1 - ((rest[:, 0] - centre_x) / (1.15 * half_width)) ** 2, 0, 1))
    lower_drop = (1 - UPPER_LIP_SHARE) * open_
    y[..., LOWER_LIP] += lower_drop * (0.25 + 0.75 * profile[LOWER_LIP])
    y[..., UPPER_LIP] -= UPPER_LIP_SHARE * open_ * profile[UPPER_LIP]
    y[..., CORNERS] += CORNER_SHARE * lower_drop
    y[..., JAW] += JAW_SHARE * lower_drop * _jaw_weights(rest)
    return out


@dataclass
class ShapeModel:
    """PCA of mouth and jaw shapes (the 37 points of :data:`MOUTH_JAW`) in the normalised frame."""

    mean: np.ndarray  # (74,)
    basis: np.ndarray  # (K, 74), orthonormal rows
    std: np.ndarray  # (K,) standard deviation of each coefficient over the fitting shapes

    @property
    def size(self) -> int:
        return len(self.basis)

    def encode(self, shapes: np.ndarray) -> np.ndarray:
        """(..., 68, 2) -> (..., K) coefficients."""
        flat = np.asarray(shapes)[..., MOUTH_JAW, :].reshape(*np.shape(shapes)[:-2], -1)
        return (flat - self.mean) @ self.basis.T

    def decode(self, coeffs: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(..., K) coefficients placed into ``face`` ((68, 2)): (..., 68, 2), other points kept."""
        coeffs = np.asarray(coeffs, dtype=np.float64)
        points = (self.mean + coeffs @ self.basis).reshape(*coeffs.shape[:-1], len(MOUTH_JAW), 2)
        out = np.broadcast_to(np.asarray(face, dtype=np.float64), coeffs.shape[:-1] + (68, 2)).copy()
        out[..., MOUTH_JAW, :] = points
        return out

    @classmethod
    def fit(cls, shapes: np.ndarray, variance: float = 0.995) -> ShapeModel:
        """PCA keeping the components that explain ``variance`` of (N, 68, 2) shapes."""
        flat = np.asarray(shapes, dtype=np.float64)[:, MOUTH_JAW, :].reshape(len(shapes), -1)
        mean = flat.mean(axis=0)
        _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
        explained = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(explained, variance) + 1)
        return cls(mean=mean, basis=vt[:k], std=s[:k] / np.sqrt(len(flat)))


def with_opening(track: np.ndarray, rest: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """(T, 68, 2) ``track`` with each frame's inner-lip gap set to ``gaps`` (T,), IOD.

    The lips, corners and jaw move as :func:`articulate` opens a mouth (its opening is
    linear in the gap), so width, rounding and the rest of the shape are kept.
    """
    unit = np.zeros(len(PARAMS))
    unit[PARAMS.index("open")] = 1.0
    motion = articulate(rest, unit) - rest
    per_gap = float(inner_gap(rest + motion) - inner_gap(rest))
    change = (np.asarray(gaps, dtype=np.float64) - inner_gap(track)) / per_gap
    return track + change[:, None, None] * motion[None]
