"""Face detection and 68-point landmarks (dlib), shared by alignment and attributes."""

from __future__ import annotations

from dataclasses import dataclass

import dlib
import numpy as np

from . import dlib_models


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    landmarks: np.ndarray  # (68, 2) float32, x then y

    @property
    def size(self) -> int:
        left, top, right, bottom = self.box
        return max(right - left, bottom - top)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "size": self.size, "score": round(self.score, 3)}


def landmarks_for_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 landmarks (x, y) inside ``box`` of an RGB uint8 image."""
    shape = dlib_models.landmarks68()(np.ascontiguousarray(image), dlib.rectangle(*map(int, box)))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def detect_faces(image: np.ndarray, upsample: int = 1) -> list[Face]:
    """All faces found by dlib's HOG detector, largest first, with landmarks."""
    image = np.ascontiguousarray(image)
    rects, scores, _ = dlib_models.hog_detector().run(image, upsample, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        faces.append(Face(box=box, score=float(score), landmarks=landmarks_for_box(image, box)))
    return sorted(faces, key=lambda f: f.size, reverse=True)
