"""The models the studio can use, described by data (``models.toml``), not code.

An entry names its weights (a local path or pinned Hugging Face files), their
format, resolution, alignment template and the files that go with it (encoder,
edit directions, model card). Loading is a table lookup by format, so embedded and
hub models share one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import tomllib
import torch

from ..errors import UserError
from . import hub
from .checkpoints import load_native, load_rosinality
from .generator import Generator

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_FILE = Path(__file__).with_name("models.toml")
EXTRA_ENV = "STUDIO_MODELS"

LOADERS = {"native": load_native, "rosinality": load_rosinality}
FORMAT_BY_SUFFIX = {".safetensors": "native", ".pt": "rosinality", ".pth": "rosinality"}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    format: str
    resolution: int
    alignment: str
    title: str = ""
    license: str = ""
    default: bool = False
    path: Path | None = None
    hub: tuple[hub.HubFile, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """local | missing | cached | downloadable | offline."""
        if self.path is not None:
            return "local" if self.path.is_file() else "missing"
        if any(hub.cached(s) for s in self.hub):
            return "cached"
        return "offline" if hub.offline() else "downloadable"

    @property
    def available(self) -> bool:
        return self.status in {"local", "cached", "downloadable"}

    @property
    def reason(self) -> str:
        """Why the model cannot be loaded right now ('' when it can)."""
        return {
            "missing": f"weights file missing: {self.path}",
            "offline": "not downloaded and this machine is offline",
        }.get(self.status, "")

    def file(self, kind: str) -> Path | None:
        """A companion file (encoder, directions, ...) if the entry lists it and it exists."""
        path = self.files.get(kind)
        return path if path is not None and path.is_file() else None


def _entry(name: str, data: dict, base: Path) -> ModelEntry:
    try:
        fmt = data["format"]
        if fmt not in LOADERS:
            raise UserError(f"model {name!r}: unknown format {fmt!r} (known: {', '.join(LOADERS)})")
        sources = tuple(hub.HubFile(**h) for h in data.get("hub", []))
        path = base / data["path"] if "path" in data else None
        if (path is None) == (not sources):
            raise UserError(f"model {name!r} needs exactly one of 'path' or 'hub'")
        return ModelEntry(
            name=name, format=fmt, resolution=int(data["resolution"]), alignment=data["alignment"],
            title=data.get("title", name), license=data.get("license", ""), default=bool(data.get("default")),
            path=path, hub=sources, files={k: base / v for k, v in data.get("files", {}).items()},
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise UserError(f"model {name!r} in the registry is incomplete: {exc}") from None


def _read(path: Path, base: Path) -> dict[str, ModelEntry]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read model registry {path}: {exc}") from None
    return {name: _entry(name, d, base) for name, d in data.get("models", {}).items()}


_ADDED: dict[str, ModelEntry] = {}


def _all() -> dict[str, ModelEntry]:
    entries = _read(REGISTRY_FILE, REPO_ROOT)
    for extra in filter(None, os.environ.get(EXTRA_ENV, "").split(os.pathsep)):
        path = Path(extra).expanduser()
        entries.update(_read(path, path.parent))
    entries.update(_ADDED)
    return entries


def list_models() -> list[ModelEntry]:
    """Every model, the default first."""
    default = default_model().name
    return sorted(_all().values(), key=lambda e: (e.name != default, e.name))


def companion_path(model_name: str, kind: str, weights_dir: Path | None = None) -> Path:
    """Where a model's ``kind`` file (talk_map, prior, ...) lives, present or not: in ``weights_dir``
    (a model folder standing in for the registry's files), else where the registry lists it, else
    beside the model's other weights."""
    if weights_dir is not None:
        return Path(weights_dir) / f"{kind}.safetensors"
    try:
        listed = get_model(model_name).files.get(kind)
    except UserError:
        listed = None
    return Path(listed) if listed else REPO_ROOT / "weights" / model_name / f"{kind}.safetensors"


def default_model() -> ModelEntry:
    """The last entry marked default: a user file's default wins over the built-in one."""
    entries = list(_all().values())
    if not entries:
        raise UserError("the model registry is empty")
    defaults = [e for e in entries if e.default]
    return defaults[-1] if defaults else entries[0]


def get_model(name: str | None = None) -> ModelEntry:
    if name is None:
        return default_model()
    entries = _all()
    if name not in entries:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


def add_checkpoint(path: str | Path, alignment: str = "ffhq", name: str | None = None) -> ModelEntry:
    """Register a local checkpoint (rosinality .pt or native .safetensors) for this process."""
    path = Path(path).expanduser().resolve()
    fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path.name}: expected a .pt (rosinality) or .safetensors (native) checkpoint")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    G = LOADERS[fmt](path)
    name = name or path.stem
    entry = ModelEntry(name=name, format=fmt, resolution=G.config.resolution, alignment=alignment, title=str(path), path=path)
    _ADDED[name] = entry
    _load_cached.cache_clear()
    return entry


def resolve_weights(entry: ModelEntry) -> Path:
    if entry.path is not None:
        if not entry.path.is_file():
            raise UserError(f"model {entry.name!r}: weights file missing ({entry.path})")
        return entry.path
    return hub.fetch(list(entry.hub), entry.name)


@lru_cache(maxsize=4)
def _load_cached(name: str, device: str) -> Generator:
    entry = get_model(name)
    G = LOADERS[entry.format](resolve_weights(entry))
    if G.config.resolution != entry.resolution:
        raise UserError(f"model {name!r}: weights are {G.config.resolution} px, registry says {entry.resolution}")
    return G.to(device).eval().requires_grad_(False)


def load_generator(name: str | ModelEntry | None = None, device: str | torch.device = "cpu") -> Generator:
    """The model's generator, loaded once per process and shared read-only."""
    name = name.name if isinstance(name, ModelEntry) else (name or default_model().name)
    return _load_cached(name, str(device))
