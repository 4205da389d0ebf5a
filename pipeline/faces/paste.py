"""Paste an edited aligned face back into the full-resolution photo.

The edited face goes back through the inverse of the alignment matrix, inside a soft
mask built from the face's landmark hull (feathered inwards so the seam falls on the
photo's own pixels), after its colours are matched to the photo's in that region.
Everything outside the mask is left bit-for-bit unchanged, so group photos can be
edited one face at a time.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull

from ..errors import UserError
from .align import AlignedFace, apply, warp_affine

COLOUR_MODES = ("meanstd", "lowfreq", "none")
FOREHEAD = 0.25  # raise the brows by this fraction of nose-bridge-to-chin: edits reach the forehead
FEATHER = 0.08  # width of the mask's soft edge, as a fraction of the face's size
LOWFREQ_SIGMA = 0.15  # shading differences wider than this fraction of the face are corrected


def hull_points(landmarks: np.ndarray, forehead: float = FOREHEAD) -> np.ndarray:
    """Points whose convex hull covers the face: the 68 landmarks plus raised brows."""
    lm = np.asarray(landmarks, dtype=np.float64)
    up = lm[27] - lm[8]  # chin -> top of the nose bridge
    return np.concatenate([lm, lm[17:27] + up * forehead])


def _polygon_mask(points: np.ndarray, width: int, height: int) -> np.ndarray:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def _ramp(inside: np.ndarray, width: float) -> np.ndarray:
    """0 at the edge of ``inside`` rising smoothly to 1 at ``width`` px in (an eroded, feathered mask)."""
    dist = ndimage.distance_transform_edt(inside)
    t = np.clip(dist / max(width, 1e-6), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _region_mask(shape: tuple[int, int], aligned: AlignedFace, edited_size: tuple[int, int]):
    """The mask's box in the photo (x0, y0, x1, y1), the mask inside it and the face's size in px.

    None when the face lies outside the photo.
    """
    height, width = shape
    hull = hull_points(aligned.face.landmarks)
    x0, y0 = np.maximum(np.floor(hull.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(hull.max(0)).astype(int) + 2, (width, height))
    if x1 <= x0 or y1 <= y0:
        return None
    offset = np.array([x0, y0], dtype=np.float64)
    convex = ConvexHull(hull)
    vertices = hull[convex.vertices] - offset
    face_size = float(np.sqrt(convex.volume))  # volume is the area in 2-D
    mask = _ramp(_polygon_mask(vertices, x1 - x0, y1 - y0), FEATHER * face_size)
    # Never use pixels the edited image does not cover (tight templates crop the jaw).
    ew, eh = edited_size
    square = apply(
        aligned.matrix_for(ew, eh), np.array([[-0.5, -0.5], [ew - 0.5, -0.5], [ew - 0.5, eh - 0.5], [-0.5, eh - 0.5]])
    )
    cover = _ramp(_polygon_mask(square - offset, x1 - x0, y1 - y0), 0.01 * face_size + 1)
    return (x0, y0, x1, y1), np.minimum(mask, cover), face_size


def paste_mask(shape: tuple[int, int], aligned: AlignedFace, edited_size: tuple[int, int] | None = None) -> np.ndarray:
    """The full-size float mask (H, W) in [0, 1] that :func:`paste_back` blends with."""
    out = np.zeros(shape, dtype=np.float32)
    found = _region_mask(shape, aligned, edited_size or (aligned.size, aligned.size))
    if found is not None:
        (x0, y0, x1, y1), mask, _ = found
        out[y0:y1, x0:x1] = mask
    return out


def match_colour(edited: np.ndarray, original: np.ndarray, weight: np.ndarray, mode: str, sigma: float) -> np.ndarray:
    """Edited pixels (float) with colours matched to ``original`` where ``weight`` is high.

    ``meanstd`` matches each channel's mean and spread (keeps local edits, fixes a global
    cast); ``lowfreq`` also removes shading differences larger than ``sigma`` pixels.
    """
    if mode == "none":
        return edited
    w = weight[..., None].astype(np.float64)
    total = w.sum()
    if total < 1e-6:
        return edited
    if mode == "meanstd":
        mu_e, mu_o = (edited * w).sum((0, 1)) / total, (original * w).sum((0, 1)) / total
        sd_e = np.sqrt((w * (edited - mu_e) ** 2).sum((0, 1)) / total)
        sd_o = np.sqrt((w * (original - mu_o) ** 2).sum((0, 1)) / total)
        gain = np.clip(sd_o / np.maximum(sd_e, 1e-3), 0.5, 2.0)  # a flat region must not explode
        return (edited - mu_e) * gain + mu_o
    if mode == "lowfreq":
        blur = lambda a: ndimage.gaussian_filter(a, [sigma, sigma, 0][: a.ndim])  # noqa: E731
        norm = np.maximum(blur(w), 1e-6)
        return edited + blur((original - edited) * w) / norm
    raise ValueError(f"colour mode must be one of {COLOUR_MODES}")


def paste_back(
    original: np.ndarray, aligned: AlignedFace, edited_face: np.ndarray, colour: str = "meanstd"
) -> np.ndarray:
    """The photo with ``edited_face`` (in ``aligned``'s frame, any size) blended over the face."""
    if colour not in COLOUR_MODES:
        raise UserError(f"colour matching must be one of {', '.join(COLOUR_MODES)}, not {colour!r}")
    height, width = original.shape[:2]
    if (width, height) != tuple(aligned.source_size):
        w0, h0 = aligned.source_size
        raise UserError(f"the photo is {width}x{height} but the face was aligned on a {w0}x{h0} image")
    edited = np.asarray(edited_face)
    if edited.ndim != 3 or edited.shape[2] != 3 or edited.dtype != np.uint8:
        raise UserError(f"the edited face must be an RGB uint8 image, not {edited.dtype} {edited.shape}")
    eh, ew = edited.shape[:2]
    found = _region_mask((height, width), aligned, (ew, eh))
    if found is None:
        return original.copy()
    (x0, y0, x1, y1), mask, face_size = found
    to_edited = np.linalg.inv(aligned.matrix_for(ew, eh)) @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
    warped = warp_affine(edited, to_edited, (x1 - x0, y1 - y0), padding="edge").astype(np.float64)
    photo = original[y0:y1, x0:x1].astype(np.float64)
    # Statistics from the feathered band, where seams would show and edits rarely reach;
    # a strong local edit (a new smile) must not tint the whole face.
    band = mask * (1 - mask)
    warped = match_colour(warped, photo, band if band.sum() > 1 else mask, colour, sigma=LOWFREQ_SIGMA * face_size)
    m = mask[..., None].astype(np.float64)
    out = original.copy()
    out[y0:y1, x0:x1] = np.clip(photo * (1 - m) + warped * m + 0.5, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- soft masks


def polygon_mask(points: np.ndarray, size: int, scale: int = 4) -> np.ndarray:
    """Filled convex hull of ``points`` (pixel centres), drawn at ``scale`` x for smooth edges."""
    hull = points[ConvexHull(points).vertices]
    canvas = Image.new("L", (size * scale, size * scale), 0)
    ImageDraw.Draw(canvas).polygon([tuple((p + 0.5) * scale) for p in hull], fill=255)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255


def soft_region(points: np.ndarray, size: int, grow: float, feather: float) -> np.ndarray:
    """(size, size) mask in [0, 1]: the hull of ``points`` grown by ``grow`` px with a ``feather`` px soft edge."""
    inside = polygon_mask(points, size) > 0.5
    if not inside.any():
        return np.zeros((size, size), np.float32)
    dist = ndimage.distance_transform_edt(~inside)
    t = np.clip(1 - (dist - grow) / max(feather, 1e-6), 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)
