"""The realism measures of ``bench generator`` tell blurred faces from sharp ones, and a set from itself not."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.bench.realism import real_vs_sample_accuracy, sharpness_ratio
from pipeline.faces.images import load_image


def crops(count: int, seed: int) -> np.ndarray:
    """64 px crops of a real photo: patches with a photo's own detail."""
    photo = load_image("tests/data/faces/astronaut.png")
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    out = []
    for _ in range(count):
        y, x = rng.integers(0, h - 128), rng.integers(0, w - 128)
        out.append(cv2.resize(photo[y : y + 128, x : x + 128], (64, 64), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def test_blur_halves_the_detail_and_gives_itself_away():
    real = crops(60, 0)
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 1.5) for im in crops(60, 1)])
    assert sharpness_ratio(blurred, real) < 0.3
    assert real_vs_sample_accuracy(blurred, real) > 0.9


def test_photos_against_photos_are_a_coin_toss():
    real, other = crops(60, 0), crops(60, 1)
    assert 0.7 < sharpness_ratio(other, real) < 1.4
    assert real_vs_sample_accuracy(other, real) < 0.75
