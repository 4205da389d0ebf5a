"""Identity mixing: two faces' W+ codes interpolated, and style-mixed by layer range.

Interpolation blends everything; style mixing takes whole W+ rows from the second face:
the coarse rows carry pose and face shape, the middle rows the features, the fine rows
colour and texture (:func:`pipeline.latent.directions.layer_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import UserError
from .directions import layer_groups


def check_groups(groups: Iterable[str], n_latent: int) -> list[tuple[int, int]]:
    """The W+ row ranges of the named layer groups (coarse / middle / fine)."""
    spans = layer_groups(n_latent)
    out = []
    for name in groups:
        if name not in spans:
            raise UserError(f"unknown layer group {name!r}; use {', '.join(spans)}")
        out.append(spans[name])
    return out


def mix_codes(a: torch.Tensor, b: torch.Tensor, amount: float = 0.5, groups: Iterable[str] = ()) -> torch.Tensor:
    """W+ (batch, n_latent, dim): ``a`` moved towards ``b`` by ``amount`` (0: a, 1: b), then the
    rows of the named layer groups taken wholly from ``b``."""
    amount = float(amount)
    if not 0.0 <= amount <= 1.0:
        raise UserError("the interpolation amount must be between 0 and 1")
    if a.shape[-2:] != b.shape[-2:]:
        raise UserError(f"the two codes do not fit together: {tuple(a.shape)} and {tuple(b.shape)}")
    b = b.to(a)
    mixed = torch.lerp(a, b, amount)
    for lo, hi in check_groups(groups, a.shape[1]):
        mixed[:, lo:hi] = b[:, lo:hi]
    return mixed


def interpolation_path(a: torch.Tensor, b: torch.Tensor, amounts: Iterable[float]) -> torch.Tensor:
    """(len(amounts), n_latent, dim): one code per amount along the straight line from ``a`` to ``b``."""
    return torch.cat([mix_codes(a[:1], b[:1], t) for t in amounts])
