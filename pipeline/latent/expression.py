"""Expression transfer in latent space: face A takes face B's expression, not B's identity.

B's expression is the difference between B and a neutral face, projected onto the span
of the model's expression directions (emotions, smile, open mouth) with the directions
of age, gender and pose projected out first, so that the transferred part carries no
identity. By default A's own expression is replaced (A + P(B - A): the neutral face cancels);
``add`` puts B's expression on top of A's (A + P(B - neutral)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from ..errors import UserError
from ..models.mini_xception import EMOTIONS
from .directions import Direction

# Directions that carry expression; the identity-carrying ones are kept out of the transfer.
EXPRESSION = ("smile", "mouth_open", *EMOTIONS)
NOT_EXPRESSION = ("age", "gender", "yaw", "pitch")
MODES = ("replace", "add")


def expression_basis(directions: Mapping[str, Direction], names: Iterable[str] = EXPRESSION,
                     exclude: Iterable[str] = NOT_EXPRESSION) -> tuple[torch.Tensor, tuple[int, int]]:  # fmt: skip
    """An orthonormal basis (dim, k) of the expression directions with ``exclude`` projected out,
    and the W+ rows they act on (the union of their default layers)."""
    chosen = [directions[n] for n in names if n in directions]
    if not chosen:
        raise UserError(f"this model has no expression directions ({', '.join(EXPRESSION)}); find its directions first")
    vectors = torch.stack([d.vector.float() for d in chosen], 1)
    kept = [directions[n].vector.float() for n in exclude if n in directions]
    if kept:
        q = torch.linalg.qr(torch.stack(kept, 1)).Q
        vectors = vectors - q @ (q.T @ vectors)
    # Keep only the independent part: near-parallel emotion directions add nothing but noise.
    u, s, _ = torch.linalg.svd(vectors, full_matrices=False)
    basis = u[:, s > 1e-3 * s.max()]
    rows = (min(d.layers[0] for d in chosen), max(d.layers[1] for d in chosen))
    return basis, rows


def transfer_expression(a: torch.Tensor, b: torch.Tensor, directions: Mapping[str, Direction],
                        neutral: torch.Tensor | None = None, mode: str = "replace",
                        strength: float = 1.0) -> torch.Tensor:  # fmt: skip
    """W+ ``a`` (batch, n_latent, dim) with B's expression: ``replace`` sets A's position along the
    expression directions to B's; ``add`` adds B's offset from ``neutral`` (W+ or W, e.g. the mean W)."""
    if mode not in MODES:
        raise UserError(f"transfer mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "add" and neutral is None:
        raise UserError("adding an expression needs the neutral face it is measured from")
    basis, (lo, hi) = expression_basis(directions)
    basis = basis.to(a)
    if mode == "replace":
        reference = a
    else:  # a W (1, dim) neutral face stands for every row
        reference = neutral.to(a) if neutral.ndim == 3 else neutral.to(a)[:, None]
    difference = b.to(a) - reference
    moved = a.clone()
    moved[:, lo:hi] += float(strength) * (difference[:, lo:hi] @ basis) @ basis.T
    return moved
