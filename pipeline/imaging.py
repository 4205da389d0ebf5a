"""Conversions between generator tensors and images, and sample grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) or (3, H, W) tensor in [-1, 1] -> (N, H, W, 3) / (H, W, 3) uint8."""
    arr = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    return arr.permute(0, 2, 3, 1).numpy() if arr.ndim == 4 else arr.permute(1, 2, 0).numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) / (H, W, 3) uint8 -> tensor in [-1, 1], channels first."""
    t = torch.tensor(np.asarray(images)).float().div(127.5).sub(1)  # a copy: decoded images are often read-only
    return t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)


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
    """A grid of generated faces, written with provenance (see :func:`pipeline.images.save_image`)."""
    from .images import save_image

    arr = to_uint8(images) if isinstance(images, torch.Tensor) else images
    return save_image(make_grid(arr, nrow), path, model=model)
