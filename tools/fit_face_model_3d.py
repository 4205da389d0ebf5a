"""Fit the generic 3D face (68 dlib landmarks) used for head pose, from 2D landmarks alone.

Run once by maintainers: ``python tools/fit_face_model_3d.py --shared ../shared``.
Writes ``weights/attributes/face_model_68_3d.json``.

Structure from motion on many faces (Tomasi & Kanade's factorisation): the landmarks of
thousands of UTKFace photos in slightly different poses, each centred and scaled, stack into
a matrix of rank about 3 = (camera rows) x (3D shape). The rank-3 factors are fixed up to a
3x3 matrix Q, found from the scaled-orthographic constraints (each camera's two rows are
orthogonal and of equal length). The shape is then turned to face the camera (its x, y fit
to the mean 2D shape), its depth sign chosen so that the nose points at the viewer, made
left-right symmetric and scaled to an inter-ocular distance of 1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.faces.detection import detect_faces  # noqa: E402
from pipeline.faces.face_geometry import LEFT_EYE, MIRROR_68, RIGHT_EYE  # noqa: E402


def collect_landmarks(folder: Path, n: int, seed: int) -> np.ndarray:
    files = sorted(folder.glob("*.jpg"))
    files = random.Random(seed).sample(files, min(n, len(files)))
    out = []
    for path in files:
        faces = detect_faces(np.asarray(Image.open(path).convert("RGB")), cnn_fallback=False)
        if faces:
            out.append(faces[0].landmarks)
    return np.asarray(out, dtype=np.float64)


def _sym_row(u: np.ndarray, v: np.ndarray) -> list[float]:
    """Coefficients of the 6 unknowns of a symmetric L in u^T L v."""
    return [u[0] * v[0], u[0] * v[1] + u[1] * v[0], u[0] * v[2] + u[2] * v[0],
            u[1] * v[1], u[1] * v[2] + u[2] * v[1], u[2] * v[2]]  # fmt: skip


def factorise(landmarks: np.ndarray) -> tuple[np.ndarray, dict]:
    """(68, 3) shape from (F, 68, 2) landmarks, and fit statistics."""
    mirrored = landmarks[:, MIRROR_68].copy()
    mirrored[..., 0] *= -1  # flipped photos double the data and balance left and right turns
    shapes = np.concatenate([landmarks, mirrored])
    shapes = shapes - shapes.mean(1, keepdims=True)
    shapes /= np.sqrt((shapes**2).sum((1, 2)))[:, None, None]
    W = shapes.transpose(0, 2, 1).reshape(-1, 68)  # rows: x of face 0, y of face 0, x of face 1, ...
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    cams = U[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * Vt[:3]
    A = []
    for a, b in zip(cams[0::2], cams[1::2]):
        A.append(np.subtract(_sym_row(a, a), _sym_row(b, b)))  # equal row lengths
        A.append(_sym_row(a, b))  # orthogonal rows
    c = np.linalg.svd(np.asarray(A))[2][-1]  # the null vector: L = Q Q^T up to scale
    L = np.array([[c[0], c[1], c[2]], [c[1], c[3], c[4]], [c[2], c[4], c[5]]])
    L = -L if np.trace(L) < 0 else L
    e, V = np.linalg.eigh(L)
    if e.min() <= 0:
        raise SystemExit(f"metric upgrade failed: L is not positive definite ({e})")
    Q = V * np.sqrt(e)
    X = np.linalg.solve(Q, shape)  # (3, 68), up to a rotation and a depth flip
    # Turn it to face the camera: the rotation whose top rows best map X to the mean 2D shape.
    affine = np.linalg.lstsq(X.T, shapes.mean(0), rcond=None)[0].T
    u, _, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    X = (np.vstack([rows, np.cross(rows[0], rows[1])]) @ X).T
    if X[30, 2] > X[36:48, 2].mean():  # depth is ambiguous up to a flip; the nose tip is nearer than the eyes
        X[:, 2] *= -1
    flipped = X[MIRROR_68].copy()
    flipped[:, 0] *= -1
    X = (X + flipped) / 2
    X -= X.mean(0)
    X /= np.linalg.norm(X[LEFT_EYE].mean(0) - X[RIGHT_EYE].mean(0))
    stats = {"faces": len(landmarks), "singular_values": " ".join(f"{v:.4f}" for v in s[:5] / s[0]),
             "rank3_residual": round(float(np.linalg.norm(W - cams @ shape) / np.linalg.norm(W)), 4)}  # fmt: skip
    return X, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--n", type=int, default=2500, help="faces to read")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="weights/attributes/face_model_68_3d.json")
    args = ap.parse_args()
    landmarks = collect_landmarks(Path(args.shared) / "data" / "utkface", args.n, args.seed)
    X, stats = factorise(landmarks)
    doc = {
        "description": "generic 3D face at dlib's 68 landmarks (iBUG 300-W numbering), for head pose",
        "units": "inter-ocular distance (eye centre to eye centre) = 1",
        "axes": "x to the image's right, y down, z away from the viewer; frontal, nose tip towards -z",
        "source": "factorisation of dlib 68-point landmarks of UTKFace photos (non-commercial research data)",
        "fit": stats,
        "points": X.round(4).tolist(),
    }
    text = json.dumps(doc, indent=1)
    # one point per line keeps the file short and diffable
    text = text[: text.index('"points"')] + '"points": [\n' + ",\n".join(f"  {p}" for p in doc["points"]) + "\n ]\n}"
    Path(args.out).write_text(text + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
