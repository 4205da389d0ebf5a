"""Latent codes as typed files.

A latent file is a safetensors file whose metadata says which model the code
belongs to, in which space it lives and which face alignment the source image
had. Every step that reads a latent (edit, talk, the app) goes through
:func:`load_latent`, which refuses a code it cannot use instead of producing a
garbage image:

* ``latent``: ``(batch, style_dim)`` in space ``w`` or ``(batch, n_latent, style_dim)``
  in space ``wplus``, float32;
* ``noise_i`` (optional): the optimised per-layer noise maps ``(batch, 1, r, r)``;
* metadata ``generator`` (optional): a pivotally tuned generator saved beside it;
* metadata ``transform`` and ``source_sha256`` (optional): how the face was cut out of its
  photo (the alignment transform, for pasting back) and which file it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import UserError

FORMAT = "face-studio-latent"
VERSION = "1"
SPACES = ("w", "wplus")
Space = Literal["w", "wplus"]  # W (one code for every layer) or W+ (one per layer)


@dataclass
class Latent:
    """A code for one model: ``w`` (batch, dim) or ``wplus`` (batch, n_latent, dim)."""

    latent: torch.Tensor
    model: str
    space: Space = "wplus"
    alignment: str = "unknown"
    noise: list[torch.Tensor] | None = None
    generator: str = ""  # file name of a pivotally tuned generator next to the latent, if any
    transform: dict | None = None  # AlignedFace.to_dict() of the source photo's face, for paste-back
    source_sha256: str = ""  # of the image file the code was inverted from

    def wplus(self, n_latent: int) -> torch.Tensor:
        """The code as W+ (batch, n_latent, dim), whatever space it is stored in."""
        if self.space == "w":
            return self.latent.unsqueeze(1).repeat(1, n_latent, 1)
        return self.latent


def save_latent(path: str | Path, latent: Latent) -> Path:
    """Write ``latent`` to ``path`` (validated first, so a bad code never reaches disk)."""
    _check_tensor(latent.latent, latent.space, None, None, "latent")
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"latent": latent.latent.detach().to("cpu", torch.float32).contiguous()}
    for i, n in enumerate(latent.noise or []):
        tensors[f"noise_{i}"] = n.detach().to("cpu", torch.float32).contiguous()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": latent.model,
        "space": latent.space,
        "shape": json.dumps(list(latent.latent.shape)),
        "alignment": latent.alignment,
        "noise_layers": str(len(latent.noise or [])),
        "generator": latent.generator,
        "source_sha256": latent.source_sha256,
    }
    if latent.transform is not None:
        meta["transform"] = json.dumps(latent.transform, separators=(",", ":"))
    save_file(tensors, str(path), metadata=meta)
    return path


def load_latent(
    path: str | Path,
    model: str | None = None,
    n_latent: int | None = None,
    style_dim: int | None = None,
    noise_shapes: list[tuple[int, ...]] | None = None,
) -> Latent:
    """Read a latent file and check it fits the model that will use it.

    ``model``, ``n_latent``, ``style_dim`` and ``noise_shapes`` (the generator's noise
    buffer shapes, ``Generator.noise_buffers()``) are checked when given. Anything
    wrong (not a latent file, another model, wrong shape/dtype, NaN or inf) raises
    :class:`UserError` with a one-line reason.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"latent file not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path.name} is not a latent file (unreadable safetensors: {str(exc)[:120]})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path.name} is not a latent file (format is {meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise UserError(f"{path.name}: unsupported latent file version {meta.get('version')!r}")
    name = meta.get("model", "")
    if model is not None and name != model:
        raise UserError(f"{path.name} was made for model {name!r}, not {model!r}: invert the image again with this model")
    space = meta.get("space")
    if space not in SPACES:
        raise UserError(f"{path.name}: unknown latent space {space!r} (expected one of {', '.join(SPACES)})")
    if "latent" not in tensors:
        raise UserError(f"{path.name} holds no 'latent' tensor")
    latent = tensors["latent"]
    if json.loads(meta.get("shape", "[]")) != list(latent.shape):
        raise UserError(f"{path.name}: stored shape {tuple(latent.shape)} disagrees with its metadata {meta.get('shape')}")
    _check_tensor(latent, space, n_latent, style_dim, path.name)

    count = int(meta.get("noise_layers", "0"))
    noise = None
    if count:
        try:
            noise = [tensors[f"noise_{i}"] for i in range(count)]
        except KeyError as exc:
            raise UserError(f"{path.name}: noise map {exc} missing") from None
        if noise_shapes is not None:
            if len(noise) != len(noise_shapes):
                raise UserError(f"{path.name} has {len(noise)} noise maps, the model has {len(noise_shapes)}")
            for i, (n, shape) in enumerate(zip(noise, noise_shapes)):
                if tuple(n.shape[1:]) != tuple(shape[1:]) or n.shape[0] != latent.shape[0]:
                    raise UserError(f"{path.name}: noise map {i} has shape {tuple(n.shape)}, the model needs {tuple(shape)}")
        for i, n in enumerate(noise):
            _check_values(n, f"{path.name} noise map {i}")
    generator = meta.get("generator", "")
    # The file decides which tuned weights get read next to it: a plain name, never a path.
    if generator and (Path(generator).name != generator or not generator.endswith(".safetensors") or generator.startswith(".")):
        raise UserError(f"{path.name}: the tuned generator must be a .safetensors file beside it, not {generator[:80]!r}")
    transform = None
    if meta.get("transform"):
        try:
            transform = json.loads(meta["transform"])
        except json.JSONDecodeError:
            raise UserError(f"{path.name}: its alignment transform is not JSON") from None
        if not isinstance(transform, dict):
            raise UserError(f"{path.name}: its alignment transform is not a JSON object")
    return Latent(latent=latent, model=name, space=space, alignment=meta.get("alignment", "unknown"), noise=noise,
                  generator=generator, transform=transform, source_sha256=meta.get("source_sha256", ""))  # fmt: skip


def _check_tensor(t: torch.Tensor, space: str, n_latent: int | None, style_dim: int | None, where: str) -> None:
    if space not in SPACES:
        raise UserError(f"{where}: unknown latent space {space!r} (expected one of {', '.join(SPACES)})")
    want_ndim = 2 if space == "w" else 3
    if t.ndim != want_ndim:
        expected = "(batch, style_dim)" if space == "w" else "(batch, n_latent, style_dim)"
        raise UserError(f"{where}: a {space} code has shape {expected}, got {tuple(t.shape)}")
    if t.shape[0] < 1:
        raise UserError(f"{where}: empty latent")
    if style_dim is not None and t.shape[-1] != style_dim:
        raise UserError(f"{where}: latent width {t.shape[-1]} does not match the model's style_dim {style_dim}")
    if space == "wplus" and n_latent is not None and t.shape[1] != n_latent:
        raise UserError(f"{where}: W+ code has {t.shape[1]} layers, the model has {n_latent}")
    _check_values(t, where)


def _check_values(t: torch.Tensor, where: str) -> None:
    if t.dtype != torch.float32:
        raise UserError(f"{where}: expected float32 values, got {str(t.dtype).replace('torch.', '')}")
    if not torch.isfinite(t).all():
        raise UserError(f"{where}: contains NaN or infinite values")


def load_latent_for(path: str | Path, G, model: str) -> Latent:
    """:func:`load_latent` checked against generator ``G`` of model ``model``."""
    return load_latent(
        path,
        model=model,
        n_latent=G.n_latent,
        style_dim=G.style_dim,
        noise_shapes=[tuple(b.shape) for b in G.noise_buffers()],
    )
