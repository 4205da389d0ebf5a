"""Random faces drawn the way real faces are encoded: a mixture prior over W+.

A generator's own prior is one Gaussian over W (its mapping network), and truncation pulls
every random face towards the one average face. The codes its encoder gives real faces are not
one Gaussian: children, old people, beards, each gather in their own region. So a model may ship
a prior fitted to the encoded W+ of its training faces (``pipeline.training.prior_fit``): a
mixture of Gaussians with one shared covariance, in the principal subspace of the codes. A random
face is drawn from one component, and truncation pulls it towards that component's mean, its
nearest mode, so truncated faces stay as varied as the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError
from ..models.generator import Generator

TENSORS = ("centre", "basis", "weights", "means", "chol")


@dataclass
class MixturePrior:
    """A Gaussian mixture with a tied covariance over flattened W+, in a principal subspace."""

    centre: torch.Tensor  # (n_latent * style_dim,) mean code
    basis: torch.Tensor  # (dims, n_latent * style_dim) principal axes, one per row
    weights: torch.Tensor  # (components,) mixing weights
    means: torch.Tensor  # (components, dims) component means in the subspace
    chol: torch.Tensor  # (dims, dims) lower Cholesky factor of the shared covariance
    n_latent: int
    style_dim: int
    info: dict = field(default_factory=dict)

    @property
    def components(self) -> int:
        return int(self.weights.shape[0])

    def sample(self, n: int, seed: int = 0, truncation: float = 1.0) -> torch.Tensor:
        """(n, n_latent, style_dim) W+ codes; ``truncation`` < 1 pulls each towards its component's mean."""
        gen = torch.Generator().manual_seed(int(seed))
        component = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        spread = torch.randn(n, self.chol.shape[0], generator=gen) @ self.chol.T
        flat = self.centre + (self.means[component] + truncation * spread) @ self.basis
        return flat.reshape(n, self.n_latent, self.style_dim)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).detach().to(torch.float32).contiguous() for k in TENSORS}
        meta = {"n_latent": str(self.n_latent), "style_dim": str(self.style_dim), "info": json.dumps(self.info)}
        save_file(tensors, str(path), metadata=meta)
        return path


def load_prior(path: str | Path, G: Generator) -> MixturePrior:
    """The prior in ``path``, checked against the generator it must feed."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in TENSORS}
        prior = MixturePrior(*(tensors[k] for k in TENSORS), int(meta["n_latent"]), int(meta["style_dim"]),
                             json.loads(meta.get("info", "{}")))  # fmt: skip
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise UserError(f"{path.name} is not a prior file ({str(err)[:120]})") from None
    if (prior.n_latent, prior.style_dim) != (G.n_latent, G.style_dim):
        raise UserError(f"{path.name} was fitted for codes of {prior.n_latent} x {prior.style_dim}, "
                        f"not this generator's {G.n_latent} x {G.style_dim}")  # fmt: skip
    return prior


@torch.no_grad()
def sample_wplus(G: Generator, n: int, seed: int = 0, truncation: float = 1.0, prior: MixturePrior | None = None,
                 w_mean: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(n, n_latent, style_dim) W+ of ``n`` random faces: from ``prior`` when the model has one, else
    from the generator's own mapping, truncated towards ``w_mean`` (default: its mean W)."""
    if prior is not None:
        return prior.sample(n, seed, truncation).to(G.device)
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(int(seed))).to(G.device)
    w = G.mapping(z)
    if truncation < 1:
        mean = (G.mean_w() if w_mean is None else w_mean).to(G.device)
        w = mean + truncation * (w - mean)
    return w[:, None].repeat(1, G.n_latent, 1)


def model_prior(model_name: str, G: Generator, weights_dir: Path | None = None) -> MixturePrior | None:
    """The model's prior when it ships one (see :func:`pipeline.models.registry.companion_path`), else None:
    random faces then come from the generator's own mapping."""
    from ..models.registry import companion_path

    path = companion_path(model_name, "prior", weights_dir)
    return load_prior(path, G) if path.is_file() else None
