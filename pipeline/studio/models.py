"""The one model loader, for the app and the command line.

:func:`read_model` reads a model's files (generator, encoder, alignment template, directions
file) from the registry or from a model folder; :func:`load_model` is the studio's cached,
ready-to-use model (on the device, with its edit directions), shared read-only by every
session. A model folder (``app.py --weights DIR``, or the ``STUDIO_WEIGHTS_OVERRIDE``
environment variable that ``app.py`` and the tests set) stands in for the default model;
this module is the only place that variable is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..latent.directions import Direction, load_directions, with_scales
from ..latent.prior import MixturePrior, model_prior
from ..models import registry
from ..models.checkpoints import load_native
from ..models.encoder import Encoder, IterativeEncoder, load_encoder
from ..models.generator import Generator
from ..models.render import render_one

# A model folder (generator.safetensors, encoder.safetensors, directions.safetensors,
# model.json) that replaces the default model's files: local checkpoints and tests.
OVERRIDE_ENV = "STUDIO_WEIGHTS_OVERRIDE"
UNKNOWN_ALIGNMENT = "unknown"


def pick_device() -> torch.device:
    """CUDA when there is one; the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- reading a model's files


@dataclass
class ModelFiles:
    """A model as read from disk (on the CPU): what the command line works with."""

    name: str
    generator: Generator
    encoder: Encoder | IterativeEncoder | None
    alignment: str  # alignment template of its training faces ("unknown" when nothing says)
    folder: Path | None  # where its files live (encoder output, held-out list)
    directions: Path | None  # its directions file, when it has one
    weights_dir: Path | None = None  # the model folder given in place of the registry's files


def _registry_entry(name: str | None):
    try:
        return registry.get_model(name)
    except ImportError:
        raise UserError("the model registry is not available; pass --weights DIR") from None


def _from_folder(folder: Path, name: str | None) -> ModelFiles:
    """A model folder: generator, encoder and directions by their usual file names; the alignment
    from ``model.json``, else from the registry entry ``name`` names."""
    if not (folder / "generator.safetensors").is_file():
        raise UserError(f"no generator.safetensors in {folder}")
    info = json.loads((folder / "model.json").read_text()) if (folder / "model.json").is_file() else {}
    alignment = info.get("alignment") or UNKNOWN_ALIGNMENT
    if alignment == UNKNOWN_ALIGNMENT and name is not None:  # the registry entry, if any, gives the alignment
        try:
            alignment = getattr(_registry_entry(name), "alignment", alignment)
        except UserError:
            pass
    encoder, directions = folder / "encoder.safetensors", folder / "directions.safetensors"
    G = load_native(folder / "generator.safetensors")
    return ModelFiles(name or folder.resolve().name, G, load_encoder(encoder, G) if encoder.is_file() else None, alignment, folder,
                      directions if directions.is_file() else None, folder)  # fmt: skip


def _from_registry(name: str | None) -> ModelFiles:
    entry = _registry_entry(name)
    files = getattr(entry, "files", {}) or {}
    encoder = Path(files["encoder"]) if files.get("encoder") else None
    folder = encoder.parent if encoder else (Path(files["generator"]).parent if files.get("generator") else None)
    G = registry.load_generator(entry)
    return ModelFiles(entry.name, G, load_encoder(encoder, G) if encoder and encoder.is_file() else None,
                      getattr(entry, "alignment", UNKNOWN_ALIGNMENT), folder, entry.file("directions"))  # fmt: skip


def read_model(name: str | None = None, weights: Path | None = None) -> ModelFiles:
    """The files of registry model ``name`` (default: the default model), or of the model folder ``weights``."""
    return _from_folder(weights, name) if weights is not None else _from_registry(name)


def directions_path(model: ModelFiles, explicit: Path | None = None) -> Path:
    """The directions file: ``explicit``, the model folder's, or the registry entry's."""
    if explicit is not None:
        return explicit
    if model.folder is not None:
        return model.folder / "directions.safetensors"
    try:
        listed = (registry.get_model(model.name).files or {}).get("directions")
    except UserError:
        listed = None
    if listed is not None:
        return Path(listed)
    raise UserError(f"model {model.name} lists no directions file; give --directions (or --out)")


def load_model_directions(model: ModelFiles, explicit: Path | None = None) -> dict[str, Direction]:
    """The model's edit directions (``explicit``: another directions file), with their scales."""
    path = directions_path(model, explicit)
    if not path.is_file():
        raise UserError(
            f"no edit directions for model {model.name} ({path} is missing): run `python -m pipeline directions` first"
        )
    G = model.generator
    return with_scales(load_directions(path, G.style_dim, G.n_latent), G)


# --------------------------------------------------------------------------- the studio's models


@dataclass(frozen=True)
class ModelChoice:
    """A model as the picker lists it."""

    name: str
    status: str  # e.g. "embedded", "hub", "local"
    loadable: bool
    reason: str = ""  # why it cannot be loaded

    @property
    def label(self) -> str:
        text = f"{self.name} ({self.status})"
        return text if self.loadable else f"{text}: {self.reason}"


@dataclass
class Model:
    """A loaded model, shared read-only by all sessions."""

    name: str
    generator: Generator
    encoder: Encoder | IterativeEncoder | None
    template: str  # alignment template of its training faces
    directions: dict[str, Direction]
    directions_note: str  # why there are none, when there are none
    w_mean: torch.Tensor  # (1, style_dim)
    weights_dir: Path | None = None  # the model folder standing in for the registry's files
    prior: MixturePrior | None = None  # random faces' prior, when the model ships one

    @property
    def resolution(self) -> int:
        return self.generator.config.resolution

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    def render(
        self, wplus: torch.Tensor, noise: list[torch.Tensor] | None = None, generator: Generator | None = None
    ) -> np.ndarray:
        """W+ (1, n_latent, dim) -> (res, res, 3) uint8, with the fixed (or given) noise maps."""
        return render_one(generator or self.generator, wplus, noise)


def override_dir() -> Path | None:
    """The model folder standing in for the default model (``OVERRIDE_ENV``), if any."""
    value = os.environ.get(OVERRIDE_ENV, "").strip()
    return Path(value) if value else None


def default_model() -> str:
    return registry.default_model().name


def weights_dir(name: str) -> Path | None:
    """The model folder that holds model ``name``'s files in place of the registry's, if any."""
    folder = override_dir()
    return folder if folder is not None and name == default_model() else None


def model_choices() -> list[ModelChoice]:
    """Every model the picker offers, the default first, with why one cannot load."""
    choices: list[ModelChoice] = []
    if override_dir() is not None:
        choices.append(ModelChoice(default_model(), "local", True))
    for entry in registry.list_models():
        if not any(c.name == entry.name for c in choices):
            choices.append(ModelChoice(entry.name, entry.status, entry.available, entry.reason))
    return choices


@lru_cache(maxsize=2)
def load_model(name: str | None = None) -> Model:
    """A model by registry name (default: the default model), loaded once per process."""
    name = name or default_model()
    files = read_model(name, weights_dir(name))
    device = pick_device()
    G = files.generator.to(device).eval().requires_grad_(False)
    encoder = files.encoder.to(device).eval().requires_grad_(False) if files.encoder is not None else None
    directions: dict[str, Direction] = {}
    if files.directions is None:
        note = f"Model {name} has no edit directions yet (its directions file is not listed)."
    elif not files.directions.is_file():
        note = f"Model {name} has no edit directions yet ({files.directions.name} is missing)."
    else:
        directions = with_scales(load_directions(files.directions, G.style_dim, G.n_latent), G)
        note = "" if directions else f"{files.directions.name} holds no directions."
    return Model(name=name, generator=G, encoder=encoder, template=files.alignment, directions=directions,
                 directions_note=note, w_mean=G.mean_w().to(device), weights_dir=files.weights_dir,
                 prior=model_prior(name, G, files.weights_dir))  # fmt: skip
