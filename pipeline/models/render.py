"""Latent codes to images: the one place a generator's W+ codes become uint8 faces.

:func:`render` takes (n, n_latent, dim) W+ codes and returns (n, res, res, 3) uint8 images, in
batches, with the model's fixed noise maps (the default), a face's own noise maps, or fresh
random noise. :func:`to_uint8` and :func:`from_uint8` convert between generator tensors and images.
"""

from __future__ import annotations

import numpy as np
import torch

from .generator import Generator

BATCH = 64  # codes rendered at once


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) or (3, H, W) tensor in [-1, 1] -> (N, H, W, 3) / (H, W, 3) uint8."""
    arr = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    return arr.permute(0, 2, 3, 1).numpy() if arr.ndim == 4 else arr.permute(1, 2, 0).numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) / (H, W, 3) uint8 -> tensor in [-1, 1], channels first."""
    # A contiguous copy: decoded images are often read-only, and mirrored ones run backwards.
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).div(127.5).sub(1)
    return t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)


@torch.no_grad()
def render(G: Generator, wplus: torch.Tensor, noise: list[torch.Tensor] | None = None, batch: int = BATCH,
           random_noise: bool = False) -> np.ndarray:  # fmt: skip
    """(n, n_latent, dim) W+ -> (n, res, res, 3) uint8, ``batch`` codes at a time.

    Every image gets the same noise maps: ``noise`` (a face's own, batch 1) or the model's fixed
    buffers; ``random_noise``: fresh random noise instead (as in training samples).
    """
    maps = [n.to(G.device) for n in (noise if noise is not None else G.noise_buffers())]
    out = []
    for chunk in wplus.split(batch):
        used = None if random_noise else [n[:1].expand(len(chunk), -1, -1, -1) for n in maps]
        out.append(to_uint8(G.synthesis(chunk.to(G.device), noise=used, randomize_noise=random_noise)))
    return np.concatenate(out) if out else np.zeros((0, G.config.resolution, G.config.resolution, 3), np.uint8)


def render_one(G: Generator, wplus: torch.Tensor, noise: list[torch.Tensor] | None = None) -> np.ndarray:
    """One (1, n_latent, dim) code -> (res, res, 3) uint8: :func:`render`'s first image."""
    return render(G, wplus, noise, batch=1)[0]
