"""Alignment: crop a face the way a model's training faces were cropped, invertibly.

Alignment is a property of the model, described by a named template stored as data
in ``pipeline/faces/templates/<name>.json``. Each template names a method that turns 68
landmarks into an affine matrix from output pixels to source pixels; the image is
rendered through that matrix, and paste-back uses its inverse.

Coordinates: pixel centres sit at integers (as dlib reports landmarks); a matrix maps
homogeneous (x, y, 1) of the aligned image to the source image.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import UserError
from .detection import Face

TEMPLATE_DIR = Path(__file__).with_name("templates")
PADDINGS = ("reflect", "edge", "reflect_blur")


# ---- templates --------------------------------------------------------------------------


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.json"))


@cache
def load_template(name: str) -> dict:
    """The template's JSON description; unknown names are a :class:`UserError`."""
    path = TEMPLATE_DIR / f"{name}.json"
    if not path.is_file():
        raise UserError(f"unknown alignment template {name!r}; available: {', '.join(available_templates())}")
    spec = json.loads(path.read_text())
    if spec.get("method") not in METHODS:
        raise UserError(f"template {name!r} uses unknown method {spec.get('method')!r}")
    return spec


def template_points(name: str, size: int) -> np.ndarray | None:
    """The template's mean landmarks at an output size (pixel centres), if it has points."""
    points = load_template(name).get("points")
    return None if points is None else np.asarray(points, dtype=np.float64) * size - 0.5


# ---- matrices ---------------------------------------------------------------------------


def _translate(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def centre_to_corner(matrix: np.ndarray) -> np.ndarray:
    """Same map with pixel (0, 0) spanning [0, 1]^2, the convention PIL's transforms use."""
    return _translate(0.5, 0.5) @ matrix @ _translate(-0.5, -0.5)


def corner_to_centre(matrix: np.ndarray) -> np.ndarray:
    return _translate(-0.5, -0.5) @ matrix @ _translate(0.5, 0.5)


def resize_matrix(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates of an image of ``from_size`` (w, h) -> the same image resized to ``to_size``."""
    return corner_to_centre(_scale(to_size[0] / from_size[0], to_size[1] / from_size[1]))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src to dst, 3x3.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two
    point patterns", with optional per-point weights; reflections are excluded.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.full(len(src), 1.0 / len(src)) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
    mu_s, mu_d = w @ src, w @ dst
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd((d * w[:, None]).T @ s)
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(sig) @ flip) / (w @ (s**2).sum(1))
    out = np.eye(3)
    out[:2, :2] = scale * rotation
    out[:2, 2] = mu_d - scale * rotation @ mu_s
    return out


def ffhq_quad_matrix(landmarks: np.ndarray, size: int, spec: dict) -> np.ndarray:
    """The FFHQ recipe's oriented square, as output pixels -> source pixels."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * spec["eye_scale"], np.hypot(*eye_to_mouth) * spec["mouth_scale"])
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * spec["center_shift"]
    top_left = c - x - y
    # The recipe hands PIL quad + 0.5 (corner convention): output corner (0, 0) -> top_left + 0.5,
    # and the output's width and height run along 2x and 2y.
    corner = np.eye(3)
    corner[:2, 0], corner[:2, 1], corner[:2, 2] = 2 * x / size, 2 * y / size, top_left + 0.5
    return corner_to_centre(corner)


def similarity_matrix(landmarks: np.ndarray, size: int, spec: dict) -> np.ndarray:
    """Least-squares similarity from the face's landmarks onto the template's mean points.

    Points that vary less across the training faces (eyes, nose) may weigh more (``fit_weights``).
    """
    idx = spec["fit_indices"]
    dst = np.asarray(spec["points"], dtype=np.float64)[idx] * size - 0.5
    return np.linalg.inv(umeyama(np.asarray(landmarks, dtype=np.float64)[idx], dst, spec.get("fit_weights")))


METHODS: dict[str, Callable[[np.ndarray, int, dict], np.ndarray]] = {
    "ffhq_quad": ffhq_quad_matrix,
    "similarity": similarity_matrix,
}


def alignment_matrix(landmarks: np.ndarray, template: str, size: int) -> np.ndarray:
    """3x3 matrix from pixels of the ``size`` x ``size`` aligned image to source pixels."""
    spec = load_template(template)
    return METHODS[spec["method"]](landmarks, size, spec)


# ---- rendering --------------------------------------------------------------------------


def _pad_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Source indices for positions outside [0, n): mirrored (without repeating the edge) or clamped."""
    if mode == "edge" or n == 1:
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)
    r = np.mod(idx, period)
    return np.where(r < n, r, period - r)


def _blur_padding(region: np.ndarray, xs: np.ndarray, ys: np.ndarray, pads: tuple, shape: tuple, sigma: float):
    """FFHQ's treatment of padded areas: blur them, then fade to the median colour far out.

    ``xs``/``ys`` are the source coordinates of the region's pixel centres; ``pads`` the
    padded widths (left, top, right, bottom) in source pixels.
    """
    h, w = shape

    def ramp(outside: np.ndarray, pad: float) -> np.ndarray:
        # 0 at the photo's edge, 1 at the padding's outer edge, negative inside; an unpadded
        # side must not count, so it is -inf there.
        return outside / pad if pad > 0 else np.full_like(outside, -np.inf)

    left, top, right, bottom = pads
    mask_x = np.maximum(ramp(-xs, left), ramp(xs - (w - 1), right))
    mask_y = np.maximum(ramp(-ys, top), ramp(ys - (h - 1), bottom))
    mask = np.maximum(mask_x[None, :], mask_y[:, None])[..., None]
    img = region.astype(np.float32)
    img += (ndimage.gaussian_filter(img, [sigma, sigma, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def warp_affine(
    image: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], padding: str = "reflect"
) -> np.ndarray:
    """Render ``image`` through ``matrix`` (output pixel -> source pixel) at ``out_size`` (w, h).

    Only the part of the source the output sees is read; it is shrunk first (antialiased)
    when the output is smaller, and areas outside the source are padded by ``padding``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}")
    out_w, out_h = out_size
    h, w = image.shape[:2]
    corner = centre_to_corner(np.asarray(matrix, dtype=np.float64))
    scale = math.sqrt(abs(np.linalg.det(corner[:2, :2])))  # source pixels per output pixel
    ends = apply(corner, np.array([[0, 0], [out_w, 0], [0, out_h], [out_w, out_h]]))
    margin = 3 * max(1.0, scale)  # the bicubic kernel's reach
    x0, y0 = np.floor(ends.min(0) - margin).astype(int)
    x1, y1 = np.ceil(ends.max(0) + margin).astype(int)
    if padding == "reflect_blur":
        # Like FFHQ: pad a border beyond what the crop needs, so the blur ramps in smoothly.
        border = max(round(0.1 * scale * max(out_w, out_h)), 3)
        x0, y0 = (v - border if v < 0 else v for v in (x0, y0))
        x1, y1 = x1 + border if x1 > w else x1, y1 + border if y1 > h else y1
    mode = "edge" if padding == "edge" else "reflect"
    rows, cols = _pad_index(np.arange(y0, y1), h, mode), _pad_index(np.arange(x0, x1), w, mode)
    region = np.ascontiguousarray(image[rows[:, None], cols[None, :]])
    corner = _translate(-x0, -y0) @ corner
    rh, rw = region.shape[:2]
    if scale > 1.25:
        size = (max(1, round(rw / scale)), max(1, round(rh / scale)))
        region = np.asarray(Image.fromarray(region).resize(size, Image.Resampling.LANCZOS))
        corner = _scale(size[0] / rw, size[1] / rh) @ corner
    if padding == "reflect_blur" and (x0 < 0 or y0 < 0 or x1 > w or y1 > h):
        nh, nw = region.shape[:2]
        xs = x0 + (np.arange(nw) + 0.5) * rw / nw - 0.5
        ys = y0 + (np.arange(nh) + 0.5) * rh / nh - 0.5
        pads = (max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h))
        quad = math.sqrt(abs(np.linalg.det(corner[:2, :2]))) * max(out_w, out_h)
        region = _blur_padding(region, xs, ys, pads, (h, w), sigma=0.02 * quad)
    data = tuple(corner[:2].ravel())
    out = Image.fromarray(region).transform((out_w, out_h), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    return np.asarray(out)


def compact_json(data: dict) -> str:
    """Indented JSON with each innermost list on one line (68 points stay readable)."""
    text = json.dumps(data, indent=1)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"


# ---- the aligned face -------------------------------------------------------------------


@dataclass
class AlignedFace:
    """A face rendered in a template's frame, and how to get back to the source photo."""

    image: np.ndarray  # (size, size, 3) uint8
    matrix: np.ndarray  # (3, 3) aligned pixel -> source pixel
    template: str
    size: int
    face: Face
    source_size: tuple[int, int]  # (width, height) of the source photo
    face_index: int = 0

    def landmarks(self) -> np.ndarray:
        """The face's 68 landmarks in aligned-image pixels."""
        return apply(np.linalg.inv(self.matrix), self.face.landmarks)

    def matrix_for(self, width: int, height: int) -> np.ndarray:
        """Pixels of a ``width`` x ``height`` image in this frame (an edited face) -> source pixels."""
        return self.matrix @ resize_matrix((width, height), (self.size, self.size))

    def to_dict(self) -> dict:
        return {
            "template": self.template,
            "size": self.size,
            "face_index": self.face_index,
            "source_size": list(self.source_size),
            "matrix": np.round(self.matrix, 8).tolist(),
            "face": {**self.face.to_dict(), "landmarks": np.round(self.face.landmarks, 3).tolist()},
        }

    @classmethod
    def from_dict(cls, data: dict, image: np.ndarray | None = None) -> AlignedFace:
        """Rebuild from :meth:`to_dict` output (the image is optional: paste-back needs only the geometry)."""
        try:
            f = data["face"]
            face = Face(box=tuple(f["box"]), score=float(f["score"]),
                        landmarks=np.asarray(f["landmarks"], dtype=np.float32), detector=f.get("detector", "hog"))  # fmt: skip
            matrix = np.asarray(data["matrix"], dtype=np.float64)
            size = int(data["size"])
            aligned = cls(image=image if image is not None else np.zeros((size, size, 3), np.uint8), matrix=matrix,
                          template=str(data["template"]), size=size, face=face,
                          source_size=tuple(int(v) for v in data["source_size"]), face_index=int(data.get("face_index", 0)))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not an alignment transform file (missing or bad {exc})") from None
        if matrix.shape != (3, 3) or face.landmarks.shape != (68, 2):
            raise UserError("not an alignment transform file (matrix must be 3x3, landmarks 68x2)")
        return aligned


def align_face(image: np.ndarray, face: Face, template: str, size: int, face_index: int = 0) -> AlignedFace:
    """Crop ``face`` out of ``image`` as the ``template`` prescribes, at ``size`` x ``size`` pixels."""
    if not 8 <= size <= 4096:
        raise UserError(f"aligned size must be between 8 and 4096 px, not {size}")
    spec = load_template(template)
    matrix = METHODS[spec["method"]](face.landmarks, size, spec)
    out = warp_affine(image, matrix, (size, size), spec.get("padding", "reflect"))
    height, width = image.shape[:2]
    return AlignedFace(image=out, matrix=matrix, template=template, size=size, face=face,
                       source_size=(width, height), face_index=face_index)  # fmt: skip
