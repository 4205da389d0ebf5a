"""Measure an alignment template from a folder of already-aligned training faces.

    python tools/measure_align_template.py --data ../shared/data/utkface --out pipeline/faces/templates/utkface.json

The dataset's crops define where a model expects the landmarks: the template is the
mean of the 68 dlib landmarks over training images (held-out files skipped), in units
of the image side (pixel (0, 0) spans [0, 1/side]). The points used for fitting are
chosen among a few candidate sets by how nearly each reproduces the dataset's own crop
(an aligned image should map onto itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.align import identity_deviation, split_files, spread  # noqa: E402
from pipeline.faces.align import compact_json, umeyama  # noqa: E402
from pipeline.faces.detection import detect_faces  # noqa: E402
from pipeline.faces.images import load_image  # noqa: E402

CANDIDATES = {
    "brows_eyes_nose_mouth": list(range(17, 68)),
    "eyes_nose_mouth": list(range(27, 68)),
    "all_68": list(range(68)),
    "eyes_mouth_corners": [36, 39, 42, 45, 48, 54],
}


def measure(data: Path, files: list[str]) -> tuple[np.ndarray, list[tuple[int, int]], int]:
    """Normalised landmarks (N, 68, 2) of the largest face per image, image sizes, and misses."""
    points, sizes, missed = [], [], 0
    for i, name in enumerate(files):
        image = load_image(data / name)
        faces = detect_faces(image)
        if not faces:
            missed += 1
            continue
        h, w = image.shape[:2]
        points.append((faces[0].landmarks.astype(np.float64) + 0.5) / [w, h])
        sizes.append((w, h))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(files)}", file=sys.stderr)
    return np.array(points), sizes, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of aligned training faces")
    parser.add_argument("--name", default="utkface")
    parser.add_argument("--n", type=int, default=500, help="training images to measure")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    train, held = split_files(args.data)
    files = spread(train, args.n)
    points, sizes, missed = measure(args.data, files)
    mean = points.mean(0)

    # Fit each image onto the mean with each candidate set, weighted uniformly or by each
    # point's inverse variance across the faces; the best choice moves images least.
    size = 64
    inv_var = 1.0 / (np.linalg.norm(points - mean, axis=2) ** 2).mean(0)
    scores, weights = {}, {}
    for label, idx in CANDIDATES.items():
        for kind, wts in (("uniform", None), ("inverse_variance", inv_var[idx] / inv_var[idx].mean())):
            dst = mean[idx] * size - 0.5
            shifts = []
            for pts, (w, h) in zip(points, sizes):
                matrix = np.linalg.inv(umeyama(pts[idx] * [w, h] - 0.5, dst, wts))
                shifts.append(identity_deviation(matrix, size, (w, h))["corner_shift_px"])
            scores[f"{label}/{kind}"] = round(float(np.mean(shifts)), 3)
            weights[f"{label}/{kind}"] = wts
    best = min(scores, key=scores.get)
    spread_px = np.linalg.norm((points - mean) * size, axis=2).mean(0)

    template = {
        "name": args.name,
        "description": (
            "UTKFace 'Aligned&Cropped' faces (200x200) as the embedded model sees them: the whole crop "
            "resized. Points are mean dlib 68-landmark positions in units of the image side."
        ),
        "method": "similarity",
        "padding": "reflect",
        "default_size": int(np.median([w for w, _ in sizes])),  # the crops' own size
        "fit_indices": CANDIDATES[best.split("/")[0]],
        **({"fit_weights": np.round(weights[best], 4).tolist()} if weights[best] is not None else {}),
        "points": np.round(mean, 5).tolist(),
        "measured": {
            "data": args.data.name,
            "images": len(files),
            "faces": len(points),
            "no_face": missed,
            "held_out_skipped": len(held),
            "selection": "training files evenly spaced through the sorted list",
            "fit_sets_mean_corner_shift_px_at_64": scores,
            "fit_set": best,
            "landmark_spread_px_at_64": {
                "mean": round(float(spread_px.mean()), 3),
                "per_point": np.round(spread_px, 2).tolist(),
            },
            "date": date.today().isoformat(),
            "tool": "tools/measure_align_template.py",
        },
    }
    args.out.write_text(compact_json(template))
    eyes = mean[[36, 45]] * size - 0.5
    print(json.dumps({"faces": len(points), "no_face": missed, "fit_sets": scores, "fit_set": best,
                      "outer_eye_corners_at_64": np.round(eyes, 2).tolist()}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
