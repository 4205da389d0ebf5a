"""Image-quality measures shared by benchmarks: KID and face-detection rate (PSNR: :mod:`pipeline.models.perceptual`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..models import dlib_models


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel), averaged over subsets."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        total += (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def count_faces(images: np.ndarray, detect_size: int = 256) -> np.ndarray:
    """Number of faces dlib's HOG detector finds in each (N, H, W, 3) uint8 image.

    Small images are upscaled first: the HOG detector's smallest face is ~80 px.
    """
    detector = dlib_models.hog_detector()
    counts = []
    for img in images:
        if img.shape[0] < detect_size:
            img = np.asarray(Image.fromarray(img).resize((detect_size, detect_size), Image.Resampling.BICUBIC))
        counts.append(len(detector(np.ascontiguousarray(img), 0)))
    return np.array(counts)
