"""Sample grids of generated faces (tensor <-> image conversions: :mod:`pipeline.models.render`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.render import to_uint8


def make_grid(images: np.ndarray, nrow: int = 8, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one image, ``nrow`` per row."""
    n, h, w, c = images.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = img
    return grid


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, nrow: int = 8, model: str | None = None) -> Path:
    """A grid of generated faces, written with provenance (see :func:`pipeline.faces.images.save_image`)."""
    from .images import save_image

    arr = to_uint8(images) if isinstance(images, torch.Tensor) else images
    return save_image(make_grid(arr, nrow), path, model=model)
