"""Face detection and 68-point landmarks (dlib), shared by alignment and attributes.

Detection runs on a downscaled copy (fast on phone photos) and escalates only when it
finds nothing: HOG, then HOG on an upsampled copy for small faces, then dlib's CNN
(MMOD) detector, which also finds tilted and turned faces, on a small copy because it
costs seconds on a CPU. Landmarks are always predicted on the full-resolution image.
"""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

from ..errors import UserError
from ..models import dlib_models
from .images import downscale

DETECT_MAX_SIDE = 1600
# HOG time grows with pixels x 4**upsample; this caps one pass at about a second on a CPU core.
HOG_PIXEL_BUDGET = 8_000_000
MAX_UPSAMPLE = 2
# MMOD measured on a busy 2-core CPU: 0.6 s at 256 px, 1.5 s at 400 px, 4.3 s at 640 px.
CNN_MAX_SIDE = 448
CNN_MIN_SIDE = 16  # MMOD fails below 8 px per side; no face is that small anyway
# HOG scores under this are checked by MMOD on a crop: 3% of UTKFace faces score lower, and
# so do HOG's typical false hits (spacesuit folds at 0.07, tilted clutter at 0.05).
WEAK_SCORE = 0.3
VERIFY_SIDE = 160  # crop of twice the box, resized so the face is ~80 px: about 0.5 s
# MMOD boxes sit higher and further left than the HOG boxes the landmark model was trained
# on; HOG box = this fraction of the MMOD box width (mean over 140 UTKFace faces both found).
CNN_BOX_SHIFT = (0.04, 0.07, 1.04, 1.06)


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    landmarks: np.ndarray  # (68, 2) float32, x then y
    detector: str = "hog"

    @property
    def size(self) -> int:
        left, top, right, bottom = self.box
        return max(right - left, bottom - top)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "size": self.size, "score": round(self.score, 3), "detector": self.detector}


def landmarks_for_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 landmarks (x, y) inside ``box`` of an RGB uint8 image."""
    shape = dlib_models.landmarks68()(np.ascontiguousarray(image), dlib.rectangle(*map(int, box)))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def _hog(image: np.ndarray, upsample: int) -> list[tuple[tuple[float, ...], float]]:
    rects, scores, _ = dlib_models.hog_detector().run(image, upsample, 0.0)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


def _cnn(image: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
    if min(image.shape[:2]) < CNN_MIN_SIDE:
        return []  # a strip this thin holds no face, and MMOD's filters do not fit in it
    found = []
    for det in dlib_models.cnn_detector()(image, 0):
        r = det.rect
        w, h = r.right() - r.left(), r.bottom() - r.top()
        x0, y0, x1, y1 = CNN_BOX_SHIFT
        found.append(
            ((r.left() + x0 * w, r.top() + y0 * h, r.left() + x1 * w, r.top() + y1 * h), float(det.confidence))
        )
    return found


def _confirmed(image: np.ndarray, box: tuple[float, ...]) -> bool:
    """Whether MMOD also sees a face around a weak HOG box."""
    left, top, right, bottom = box
    half = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    crop = Image.fromarray(image).crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return len(_cnn(np.asarray(crop.resize((VERIFY_SIDE, VERIFY_SIDE), Image.Resampling.BILINEAR)))) > 0


def detect_faces(image: np.ndarray, cnn_fallback: bool = True) -> list[Face]:
    """All faces in an RGB uint8 image, largest first, with landmarks; empty if none.

    With ``cnn_fallback`` MMOD also runs when HOG finds nothing, and confirms weak HOG hits.
    """
    image = np.ascontiguousarray(image)
    small, scale = downscale(image, DETECT_MAX_SIDE)
    found, detector = _hog(small, 0), "hog"
    upsample = 1
    while not found and upsample <= MAX_UPSAMPLE and small.shape[0] * small.shape[1] * 4**upsample <= HOG_PIXEL_BUDGET:
        found = _hog(small, upsample)
        upsample += 1
    if cnn_fallback:
        found = [(box, score) for box, score in found if score >= WEAK_SCORE or _confirmed(small, box)]
    if not found and cnn_fallback:
        tiny, tiny_scale = downscale(small, CNN_MAX_SIDE)
        found, detector, scale = _cnn(np.ascontiguousarray(tiny)), "cnn", scale * tiny_scale
    faces = []
    for box, score in found:
        full = tuple(round(v / scale) for v in box)
        faces.append(Face(box=full, score=score, landmarks=landmarks_for_box(image, full), detector=detector))
    return sorted(faces, key=lambda f: f.size, reverse=True)


def find_faces(image: np.ndarray) -> list[Face]:
    """Like :func:`detect_faces`, but no face is a :class:`UserError`."""
    faces = detect_faces(image)
    if not faces:
        raise UserError("no face found in the image; try a clearer, more frontal photo where the face is larger")
    return faces


def select_face(faces: list[Face], index: int) -> Face:
    """Face ``index`` (0 = largest) with a clear message when there are fewer faces."""
    if not 0 <= index < len(faces):
        found = f"only {len(faces)} face{'s' if len(faces) != 1 else ''} found"
        raise UserError(f"no face {index}: {found} (faces are numbered from 0, largest first)")
    return faces[index]
