"""Expression and head pose from dlib's 68 face landmarks (pure numpy, no models but a 3D mean shape).

Landmark numbering is iBUG 300-W's, from 0: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47
(36-41 on the image's left), outer lips 48-59, inner lips 60-67.

Head pose fits a scaled orthographic camera (rotation, scale, 2D shift) to a generic 3D face
of the same 68 points, ``weights/attributes/face_model_68_3d.json`` (made by
``tools/fit_face_model_3d.py``). Camera axes: x to the image's right, y down, z into the
image. Angles in degrees, 0 for the average frontal face of the model:

- yaw > 0: the face turns towards the image's right (the subject's own left);
- pitch > 0: the face tilts up (chin forwards);
- roll > 0: the head leans clockwise as seen in the image (the eye on the image's right lower).

A mirrored image mirrors the pose: yaw and roll change sign, pitch stays.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

FACE_MODEL_PATH = Path(__file__).resolve().parents[2] / "weights" / "attributes" / "face_model_68_3d.json"

# Index of each landmark's mirror image (left <-> right), for flipped images and symmetric fits.
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)
# Points that move rigidly with the head: brows, nose, eyes and mouth corners. The jaw line is
# a silhouette that slides over the face as it turns, and the lips move when speaking.
POSE_POINTS = np.r_[17:48, 48, 54]
RIGHT_EYE, LEFT_EYE = np.r_[36:42], np.r_[42:48]  # the subject's right eye is on the image's left


def mirror_landmarks(landmarks: np.ndarray, width: float) -> np.ndarray:
    """The landmarks of the horizontally flipped image (``width`` px wide), in the same numbering."""
    out = np.asarray(landmarks, dtype=np.float64)[MIRROR_68].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres, the face's unit of length."""
    return float(np.linalg.norm(landmarks[LEFT_EYE].mean(0) - landmarks[RIGHT_EYE].mean(0)))


def _dist(landmarks: np.ndarray, i: int, j: int) -> float:
    return float(np.linalg.norm(landmarks[i] - landmarks[j]))


def smile(landmarks: np.ndarray) -> float:
    """Mouth width (corner to corner) over the inter-ocular distance: about 0.8 neutral, 1.0+ broad smile."""
    return _dist(landmarks, 48, 54) / max(inter_ocular(landmarks), 1e-6)


def mouth_open(landmarks: np.ndarray) -> float:
    """Gap between the inner lips over the mouth width: 0 closed, about 0.5 wide open."""
    gap = (_dist(landmarks, 61, 67) + _dist(landmarks, 62, 66) + _dist(landmarks, 63, 65)) / 3
    return gap / max(_dist(landmarks, 48, 54), 1e-6)


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Eye opening (Soukupova & Cech's eye aspect ratio, both eyes averaged): about 0.3 open, < 0.2 closed."""
    ratios = []
    for a, b, c, d, e, f in ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)):
        ratios.append((_dist(landmarks, b, f) + _dist(landmarks, c, e)) / (2 * max(_dist(landmarks, a, d), 1e-6)))
    return float(np.mean(ratios))


LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma


def _luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, 0..255."""
    return np.asarray(image[..., :3], dtype=np.float32) @ LUMA_WEIGHTS


FACE_CENTRE = 0.75  # share of an aligned face's side that is the face's centre (most of it is face)


def centre_box(height: int, width: int, share: float = FACE_CENTRE) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the centred box holding ``share`` of each side of an aligned face."""
    dy, dx = int(height * (1 - share) / 2), int(width * (1 - share) / 2)
    return dy, height - dy, dx, width - dx


def cheek_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(height, width) bool: the two cheek discs where :func:`skin_luminance` reads the skin."""
    lm = np.asarray(landmarks, dtype=np.float64)
    radius = 0.12 * inter_ocular(lm)
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width]
    inside = np.zeros((height, width), bool)
    for centre in ((lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2):
        inside |= (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius**2
    return inside


def _cheek_luma(luma: np.ndarray, lm: np.ndarray) -> float:
    inside = cheek_mask(luma.shape, lm)
    return float(np.median(luma[inside])) if inside.any() else float("nan")


def skin_luminance(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Skin tone as the median luma (Rec. 601, 0..255) of two cheek discs placed by the landmarks.

    Each disc sits halfway between the jaw line and the side of the nose, radius 0.12 of the
    eye distance: skin there is rarely covered by hair, beard or shadow.
    """
    return _cheek_luma(_luma(image), np.asarray(landmarks, dtype=np.float64))


# Bands where a moustache and a beard grow, each between two rows of landmarks (left to right):
# nose base -> upper lip, and lower lip -> chin; only their middle part, off the lips' edges.
HAIR_BANDS = (((31, 32, 33, 34, 35), (49, 50, 51, 52, 53), (0.3, 0.75)),
              ((59, 58, 57, 56, 55), (6, 7, 8, 9, 10), (0.2, 0.6)))  # fmt: skip


def _band_points(lm: np.ndarray, top: tuple[int, ...], bottom: tuple[int, ...], depth: tuple[float, float],
                 across: int = 13, down: int = 6) -> np.ndarray:  # fmt: skip
    """(across * down, 2) points spread over the band between two landmark rows."""
    u = np.linspace(0, len(top) - 1, across)
    at = lambda idx: np.stack([np.interp(u, np.arange(len(idx)), lm[list(idx), k]) for k in (0, 1)], 1)  # noqa: E731
    upper, lower = at(top), at(bottom)
    v = np.linspace(*depth, down)
    return (upper[:, None] + v[None, :, None] * (lower - upper)[:, None]).reshape(-1, 2)


def facial_hair(image: np.ndarray, landmarks: np.ndarray, skin: float | None = None) -> float:
    """How much darker than the cheeks the skin is where a moustache and a beard grow: the median
    luma (0..255) of the cheek discs of :func:`skin_luminance` (``skin``, when already measured)
    minus that of the upper-lip and chin bands. A few levels on a shaven face (the shade under the
    nose), tens with a dark moustache."""
    lm = np.asarray(landmarks, dtype=np.float64)
    luma = _luma(image)
    if skin is None:
        skin = _cheek_luma(luma, lm)
    height, width = luma.shape
    points = np.concatenate([_band_points(lm, *band) for band in HAIR_BANDS])
    xs = np.clip(np.rint(points[:, 0]).astype(int), 0, width - 1)
    ys = np.clip(np.rint(points[:, 1]).astype(int), 0, height - 1)
    return skin - float(np.median(luma[ys, xs]))


@cache
def face_model_3d() -> np.ndarray:
    """(68, 3) generic face, in inter-ocular units, camera axes of a frontal face (nose towards -z)."""
    data = json.loads(FACE_MODEL_PATH.read_text())
    model = np.asarray(data["points"], dtype=np.float64)
    model.flags.writeable = False
    return model


def fit_rotation(landmarks: np.ndarray, model: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Rotation (3, 3) and scale of the scaled orthographic projection of ``model`` closest to ``landmarks``.

    Least squares gives the 2x3 affine camera; the nearest matrix with orthonormal rows (via
    SVD) is the rotation's top two rows, and their cross product the third.
    """
    model = face_model_3d() if model is None else model
    X = model[POSE_POINTS] - model[POSE_POINTS].mean(0)
    p = np.asarray(landmarks, dtype=np.float64)[POSE_POINTS]
    p = p - p.mean(0)
    affine = np.linalg.lstsq(X, p, rcond=None)[0].T  # (2, 3)
    u, s, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    return rotation, float(s.mean())


def rotation_to_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, for ``rotation = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (see :func:`angles_to_rotation`)."""
    r = rotation
    yaw = np.degrees(np.arctan2(r[2, 0], np.hypot(r[2, 1], r[2, 2])))
    pitch = np.degrees(np.arctan2(-r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def angles_to_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The rotation that turns the model by ``pitch`` about x, then ``yaw`` about y, then ``roll`` about z.

    Signs follow the module's conventions: the model's nose, at -z, goes to +x for yaw > 0 and to
    -y (up) for pitch > 0; its left-to-right axis goes to +y (down) for roll > 0.
    """
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face from its 68 landmarks."""
    rotation, _ = fit_rotation(landmarks)
    return rotation_to_angles(rotation)
