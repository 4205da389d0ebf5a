"""Picklable model loaders for the Ray engine's workers (:mod:`pipeline.create.ray_engine`).

A worker on another core or node gets a small recipe (model name, folder, directions file,
edit) rather than the networks themselves, and loads the model once when it starts.
Paths are made absolute, since a worker need not share the driver's working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..create.batch import Editor
from ..models.generator import Generator
from .models import ModelFiles, load_model_directions, read_model


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(path).resolve()


@dataclass(frozen=True)
class ModelSpec:
    """Which model a worker loads, and how many threads it computes with (one per Ray CPU)."""

    model: str | None = None
    weights: Path | None = None
    directions: Path | None = None
    threads: int = 1

    @classmethod
    def of(cls, model: str | None, weights: Path | None, directions: Path | None = None, threads: int = 1) -> ModelSpec:
        return cls(model, _absolute(weights), _absolute(directions), threads)

    def files(self) -> ModelFiles:
        torch.set_num_threads(self.threads)
        return read_model(self.model, self.weights)


@dataclass(frozen=True)
class GeneratorLoader:
    spec: ModelSpec

    def __call__(self) -> Generator:
        return self.spec.files().generator.eval().requires_grad_(False)


@dataclass(frozen=True)
class EditorLoader:
    """The :class:`pipeline.create.batch.Editor` of a batch edit, built on the worker."""

    spec: ModelSpec
    strengths: tuple[tuple[str, float], ...]
    steps: int = 0

    def __call__(self) -> Editor:
        m = self.spec.files()
        directions = load_model_directions(m, self.spec.directions)
        return Editor(m.generator, m.encoder, m.alignment, directions, dict(self.strengths), m.name, self.steps)
