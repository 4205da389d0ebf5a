"""Edit directions at run time: reading and writing directions files, their layers and scales,
and random codes of a model. Finding directions (InterFaceGAN SVMs, per-layer analysis, SeFa) is
:mod:`pipeline.training.directions`.

A direction is a unit vector in W, the W+ rows it acts on by default and its scale: the
standard deviation of the model's W along it, so that strength 1 moves a face by one
standard deviation whatever the model.

Files are safetensors, one (style_dim,) tensor per direction, with JSON metadata:
``layers`` (name -> [first, end)), ``scales``, ``order``, ``directions`` (per-direction
details) and ``report`` (the whole search, weak fits included). Published files such as
the FFHQ InterFaceGAN/GANSpace set (``(1, dim)`` and ``(1, n_latent, dim)`` vectors,
``<name>_comp`` principal components with ``<name>_std``) load with the same reader.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError
from ..models.generator import Generator

FORMAT = "face-studio-directions"
VERSION = "1"
PUBLISHED_COMPONENTS = 5  # principal components taken from a published file
ALONE = ".alone"  # suffix of the tensor of a direction's variant fitted on its attribute alone


# --------------------------------------------------------------------------- layers


def layer_groups(n_latent: int) -> dict[str, tuple[int, int]]:
    """StyleGAN's coarse (4-8 px: pose, face shape), middle (16-32 px: features) and fine
    (64 px and up: colour, texture) layers as half-open ranges of W+ rows."""
    return {
        "coarse": (0, min(4, n_latent)),
        "middle": (min(4, n_latent), min(8, n_latent)),
        "fine": (min(8, n_latent), n_latent),
    }


def layer_spans(n_latent: int) -> dict[str, tuple[int, int]]:
    """The non-empty contiguous unions of the layer groups, e.g. ``coarse+middle``."""
    groups = [(k, v) for k, v in layer_groups(n_latent).items() if v[1] > v[0]]
    spans = {}
    for i in range(len(groups)):
        for j in range(i, len(groups)):
            spans["+".join(k for k, _ in groups[i : j + 1])] = (groups[i][1][0], groups[j][1][1])
    return spans


# --------------------------------------------------------------------------- directions


@dataclass(frozen=True)
class Direction:
    """An edit direction: a unit vector in W and the W+ rows it applies to by default."""

    name: str
    vector: torch.Tensor  # (style_dim,) unit length
    layers: tuple[int, int]  # half-open range of W+ rows
    scale: float = 1.0  # standard deviation of the model's W along the vector: strength 1 moves this far
    kind: str = "attribute"  # attribute | discovered | published
    info: dict = field(default_factory=dict, compare=False)  # accuracy, layer effects, ... as saved
    # The direction fitted on the attribute alone (what it drags along included), for edits that
    # are asked not to keep the rest; its scale is ``info["alone_scale"]``.
    alone: torch.Tensor | None = field(default=None, compare=False)

    def axis(self, keep_rest: bool = True) -> tuple[torch.Tensor, float]:
        """(unit vector, scale) of the edit: the direction that keeps the rest, or the one fitted alone."""
        if keep_rest or self.alone is None:
            return self.vector, self.scale
        return self.alone, float(self.info.get("alone_scale", self.scale))


def _unit(v: torch.Tensor, where: str) -> torch.Tensor:
    v = v.float().reshape(-1)
    if not torch.isfinite(v).all() or v.norm() == 0:
        raise UserError(f"{where} is zero or not finite")
    return v / v.norm()


def _per_layer(t: torch.Tensor, n_latent: int, where: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """A (1, rows, dim) W+ direction as one W vector and its rows: the rows it moves must be one
    contiguous run of the same vector (published W+ directions repeat the W one)."""
    rows = t.float().reshape(t.shape[-2], t.shape[-1])
    moving = (rows.norm(dim=1) > 0).nonzero().flatten().tolist()
    if not moving:
        raise UserError(f"{where} is zero")
    lo, hi = moving[0], moving[-1] + 1
    base = rows[lo]
    if len(moving) != hi - lo or not torch.allclose(rows[lo:hi], base.expand(hi - lo, -1), atol=1e-5):
        raise UserError(f"{where}: per-layer directions must repeat one vector over a run of layers")
    return base, (lo, min(hi, n_latent))


def load_directions(path: str | Path, style_dim: int, n_latent: int) -> dict[str, Direction]:
    """Directions from a safetensors file, in the file's order (see the module notes for the
    layouts read). Directions without a stored scale get NaN: :func:`with_scales` measures them."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"cannot read edit directions {path.name}: {str(exc)[:120]}") from None
    try:
        layers = json.loads(meta.get("layers", "{}"))
        scales = json.loads(meta.get("scales", "{}"))
        details = json.loads(meta.get("directions", "{}"))
        order = json.loads(meta.get("order", "[]"))
    except json.JSONDecodeError:
        raise UserError(f"{path.name}: its metadata is not valid JSON") from None

    def check_width(name: str, t: torch.Tensor) -> None:
        if t.shape[-1] != style_dim:
            raise UserError(
                f"{path.name}: direction {name!r} has shape {tuple(t.shape)}, the model needs ({style_dim},)"
            )

    out: dict[str, Direction] = {}
    # the file's order; published principal components after the named directions
    for name in sorted(tensors, key=lambda k: (order.index(k) if k in order else len(order), k.endswith("_comp"), k)):
        t = tensors[name]
        where = f"{path.name}: direction {name!r}"
        if name.endswith(("_mean", "_std", ALONE)):
            continue  # statistics that go with a "_comp" tensor; variants that go with a direction
        check_width(name, t)
        if name.endswith("_comp"):  # published principal components (GANSpace), strongest first
            prefix = name[: -len("_comp")]
            comps = t.float().reshape(-1, style_dim)
            std = tensors.get(f"{prefix}_std")
            for i in range(min(PUBLISHED_COMPONENTS, comps.shape[0])):
                scale = float(std.reshape(-1)[i]) if std is not None else math.nan
                out[f"{prefix}{i}"] = Direction(f"{prefix}{i}", _unit(comps[i], f"{where}[{i}]"), (0, n_latent),
                                                scale, "discovered", {"component": i})  # fmt: skip
            continue
        if t.numel() == style_dim:
            vector, span = _unit(t, where), (0, n_latent)
        elif t.ndim == 3 and t.shape[0] == 1:
            vector, span = _per_layer(t, n_latent, where)
            vector = _unit(vector, where)
        else:
            check_width(name, t.reshape(-1)[:0])
            raise UserError(f"{where} has shape {tuple(t.shape)}, the model needs ({style_dim},)")
        lo, hi = layers.get(name, span)
        lo, hi = max(0, int(lo)), min(n_latent, int(hi))
        if lo >= hi:
            raise UserError(f"{where}: empty layer range {lo}..{hi}")
        info = details.get(name, {})
        kind = info.get("kind", "attribute" if details else "published")
        alone = tensors.get(name + ALONE)
        alone = _unit(alone, where + " (alone)") if alone is not None else None
        out[name] = Direction(name, vector, (lo, hi), float(scales.get(name, math.nan)), kind, info, alone)
    return out


def save_directions(
    path: str | Path, directions: dict[str, Direction], model: str = "", report: dict | None = None
) -> Path:
    """Write ``directions`` (their order kept) with their layers, scales and details as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: d.vector.detach().float().reshape(-1).contiguous().cpu() for name, d in directions.items()}
    tensors.update({name + ALONE: d.alone.float().contiguous() for name, d in directions.items() if d.alone is not None})
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "order": json.dumps(list(directions)),
        "layers": json.dumps({name: list(d.layers) for name, d in directions.items()}),
        "scales": json.dumps({name: d.scale for name, d in directions.items()}),
        "directions": json.dumps({name: {**d.info, "kind": d.kind} for name, d in directions.items()}),
        "report": json.dumps(report or {}),
    }
    save_file(tensors, str(path), metadata=meta)
    return path


def read_report(path: str | Path) -> dict:
    """The search report stored in a directions file ({} for published files)."""
    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("report", "{}"))


@torch.no_grad()
def sample_w(G: Generator, n: int, seed: int = 0) -> torch.Tensor:
    """(n, style_dim) W codes of random faces (no truncation: edits must hold over all of W)."""
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(G.device)
    return torch.cat([G.mapping(chunk) for chunk in z.split(1024)]).cpu()


TRUNCATION = 0.7  # random faces to show: pulled this far towards the average face, which keeps them plausible


@torch.no_grad()
def random_w(G: Generator, seed: int, truncation: float = TRUNCATION, w_mean: torch.Tensor | None = None) -> torch.Tensor:
    """(1, style_dim) W of one random face of the generator's own Gaussian prior, truncated towards
    ``w_mean`` (default: the model's mean W); the studio's random faces use the model's prior instead."""
    from .prior import sample_wplus

    return sample_wplus(G, 1, seed, truncation, None, w_mean)[:, 0]


def with_scales(directions: dict[str, Direction], G: Generator, n: int = 5000) -> dict[str, Direction]:
    """Directions whose scale is unknown (NaN) get the spread of the model's W along them."""
    missing = [k for k, d in directions.items() if not math.isfinite(d.scale)]
    if not missing:
        return directions
    w = sample_w(G, n)
    return {k: replace(d, scale=float((w @ d.vector).std())) if k in missing else d for k, d in directions.items()}
