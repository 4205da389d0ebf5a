"""Localized edits: an edit kept to one region of the face, blended in image space.

The region is a soft mask drawn from the face's 68 landmarks (the hull of the region's
points, grown and feathered in units of the inter-ocular distance); the edited render is
blended into the unedited one through it, so every pixel where the mask is zero stays
exactly as it was. Choosing the edit's W+ rows (coarse / middle / fine) narrows it further.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..faces.face_geometry import LEFT_EYE, RIGHT_EYE, inter_ocular
from ..faces.paste import hull_points, soft_region

# Landmark groups of each region; eyes are drawn one by one so the nose bridge stays out.
REGION_POINTS: dict[str, list[np.ndarray]] = {
    "eyes": [RIGHT_EYE, LEFT_EYE],
    "brows": [np.r_[17:22], np.r_[22:27]],
    "mouth": [np.r_[48:68]],
    "nose": [np.r_[27:36]],
}
OUTSIDE_FACE = "hair"  # hair and background: everything outside the face's hull
REGIONS = (*REGION_POINTS, "face", OUTSIDE_FACE)
GROW = {"eyes": 0.25, "brows": 0.2, "mouth": 0.25, "nose": 0.15, "face": 0.0, OUTSIDE_FACE: 0.0}  # inter-ocular distances
FEATHER = 0.2  # inter-ocular distances of soft edge


def region_mask(landmarks: np.ndarray, size: int, region: str, feather: float = FEATHER) -> np.ndarray:
    """(size, size) float32 in [0, 1]: where an edit of ``region`` may show, for a face whose 68
    ``landmarks`` are in the pixels of a ``size`` x ``size`` image."""
    if region not in REGIONS:
        raise UserError(f"unknown region {region!r}; use one of {', '.join(REGIONS)}")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise UserError(f"a region mask needs the 68 landmarks, not an array of shape {lm.shape}")
    iod = max(inter_ocular(lm), 1.0)
    if region in ("face", OUTSIDE_FACE):
        face = soft_region(hull_points(lm), size, GROW["face"] * iod, feather * iod)
        return face if region == "face" else (1.0 - face).astype(np.float32)
    parts = [soft_region(lm[idx], size, GROW[region] * iod, feather * iod) for idx in REGION_POINTS[region]]
    return np.maximum.reduce(parts).astype(np.float32)


def blend(original: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``edited`` where ``mask`` is 1, ``original`` where it is 0 (exactly), mixed in between."""
    if original.shape != edited.shape or mask.shape != original.shape[:2]:
        raise UserError(f"cannot blend images of shapes {original.shape} and {edited.shape} with a {mask.shape} mask")
    m = mask[..., None].astype(np.float64)
    out = original.astype(np.float64) * (1 - m) + edited.astype(np.float64) * m
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def psnr_outside(reference: np.ndarray, image: np.ndarray, mask: np.ndarray, threshold: float = 0.01) -> float:
    """PSNR in dB of ``image`` against ``reference`` where ``mask`` is (almost) zero; inf when identical."""
    outside = mask < threshold
    if not outside.any():
        return float("nan")
    diff = reference[outside].astype(np.float64) - image[outside].astype(np.float64)
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def localize(original: np.ndarray, edited: np.ndarray, region: str, landmarks: np.ndarray | None = None) -> np.ndarray:
    """``edited`` kept to ``region`` of the face; ``landmarks`` of the unedited face (read when not given)."""
    if landmarks is None:
        from ..faces.attributes import analyze

        landmarks = analyze([original], identity=False)[0].landmarks
    return blend(original, edited, region_mask(landmarks, original.shape[0], region))
