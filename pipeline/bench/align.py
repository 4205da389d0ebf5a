"""Measurements of alignment and paste-back on a folder of aligned training faces (UTKFace).

- landmark error: after alignment, how far the face's landmarks sit from the template's
  mean points, in pixels at the output size;
- identity: the dataset is already aligned, so its own template should map each image
  (nearly) onto itself; the matrix's deviation from identity says how closely our
  alignment reproduces the dataset's crop;
- paste-back: an unedited aligned face pasted back must reproduce the photo inside the
  face mask (PSNR) and leave every pixel outside it untouched.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..faces.align import align_face, alignment_matrix, apply, centre_to_corner, load_template, template_points
from ..faces.detection import Face, detect_faces
from ..faces.images import load_image
from ..faces.paste import paste_back, paste_mask
from ..training.data import heldout_split, list_images, read_heldout

HELDOUT_LIST = Path("weights/utkface-64/heldout.txt")


def split_files(data: Path, heldout_list: Path = HELDOUT_LIST) -> tuple[list[str], list[str]]:
    """(train, held-out) files of ``data``: the exported held-out list, else the training split rule.

    The training code derives its held-out set from file-name hashes, so without the
    exported list the same split is recomputed rather than guessed.
    """
    files = list_images(data)
    if heldout_list.is_file():
        held = set(read_heldout(heldout_list))
        return [f for f in files if f not in held], sorted(set(files) & held)
    return heldout_split(files)


def spread(files: list[str], n: int) -> list[str]:
    """``n`` files evenly spaced through a sorted list (names start with the age: no age bias)."""
    if n >= len(files):
        return list(files)
    return [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]


def identity_deviation(matrix: np.ndarray, out_size: int, src_size: tuple[int, int]) -> dict[str, float]:
    """How far an aligned-to-source matrix is from "the whole image, resized".

    In units of the image side: scale (1 = same), rotation in degrees, centre shift, and
    the mean displacement of the four output corners (also in output pixels).
    """
    w, h = src_size
    norm = np.diag([1 / w, 1 / h, 1.0]) @ centre_to_corner(matrix) @ np.diag([out_size, out_size, 1.0])
    a = norm[:2, :2]
    corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
    corner_shift = np.linalg.norm(apply(norm, corners) - corners, axis=1).mean()
    return {
        "scale": math.sqrt(abs(np.linalg.det(a))),
        "rotation_deg": math.degrees(math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])),
        "centre_shift": float(np.linalg.norm(apply(norm, np.array([[0.5, 0.5]]))[0] - 0.5)),
        "corner_shift": float(corner_shift),
        "corner_shift_px": float(corner_shift * out_size),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _stats(values: list[float], digits: int = 3) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if not len(finite):
        return {"mean": math.inf if len(arr) else math.nan}
    return {
        "mean": round(float(finite.mean()), digits),
        "median": round(float(np.median(finite)), digits),
        "p10": round(float(np.percentile(finite, 10)), digits),
        "p90": round(float(np.percentile(finite, 90)), digits),
    }


def evaluate(data: Path, files: list[str], template: str = "utkface", size: int = 64,
             paste_sizes: tuple[int, ...] = (64, 256), log=lambda m: None) -> dict:  # fmt: skip
    """Landmark error, identity deviation and paste-back PSNR over ``files`` of ``data``."""
    points = template_points(template, size)
    if points is None:
        raise UserError(f"template {template!r} has no mean points to measure landmark error against")
    errors, errors_fit, deviations = (
        [],
        [],
        {k: [] for k in ("scale", "rotation_deg", "centre_shift", "corner_shift_px")},
    )
    paste = {s: {"inside": [], "outside_changed": 0} for s in paste_sizes}
    timing = {"detect": [], "align": [], "paste": []}
    missed = 0
    fit = load_template(template)["fit_indices"]
    for i, name in enumerate(files):
        image = load_image(data / name)
        t0 = time.perf_counter()
        faces = detect_faces(image)
        timing["detect"].append(time.perf_counter() - t0)
        if not faces:
            missed += 1
            continue
        face: Face = faces[0]
        matrix = alignment_matrix(face.landmarks, template, size)
        dist = np.linalg.norm(apply(np.linalg.inv(matrix), face.landmarks) - points, axis=1)
        errors.append(float(dist.mean()))
        errors_fit.append(float(dist[fit].mean()))
        for key, value in identity_deviation(matrix, size, image.shape[1::-1]).items():
            if key in deviations:
                deviations[key].append(abs(value) if key != "scale" else value)
        for s in paste_sizes:
            t0 = time.perf_counter()
            aligned = align_face(image, face, template, s)
            t1 = time.perf_counter()
            composite = paste_back(image, aligned, aligned.image)
            t2 = time.perf_counter()
            if s == size:
                timing["align"].append(t1 - t0)
                timing["paste"].append(t2 - t1)
            mask = paste_mask(image.shape[:2], aligned)
            paste[s]["inside"].append(psnr(composite[mask > 0.5], image[mask > 0.5]))
            paste[s]["outside_changed"] += int(np.count_nonzero((composite != image).any(-1) & (mask == 0)))
        if (i + 1) % 50 == 0:
            log(f"{i + 1}/{len(files)} images")
    return {
        "template": template,
        "size": size,
        "images": len(files),
        "no_face": missed,
        "landmark_error_px": {"all_68": _stats(errors), "fit_points": _stats(errors_fit)},
        "identity_deviation": {k: _stats(v, 4) for k, v in deviations.items()},
        "paste_back": {
            f"size_{s}": {"psnr_inside_db": _stats(v["inside"], 2), "pixels_changed_outside_mask": v["outside_changed"]}
            for s, v in paste.items()
        },
        "seconds_median": {k: round(float(np.median(v)), 4) if v else None for k, v in timing.items()},
    }
