"""Applying edit directions to latent codes.

Several edits at once, each with a strength in standard deviations of the model's faces
along its direction, on its own W+ rows (its default layers or ones given per edit), and
optionally conditioned: the directions named in ``conditioning`` are projected out of the
others first (InterFaceGAN / TL-GAN), so that, e.g., making a face older does not also
change its gender. W codes stay W when every edit moves every row; otherwise they become W+.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

import torch

from ..errors import UserError
from .directions import Direction, layer_groups
from .files import Latent

MAX_STRENGTH = 10.0  # standard deviations; beyond this the generator leaves its training distribution
Layers = tuple[int, int]


def orthogonalize(direction: torch.Tensor, keep: list[torch.Tensor]) -> torch.Tensor:
    """``direction`` with the components along ``keep`` removed (InterFaceGAN's conditional
    editing): moving along it leaves the conditioned attributes' scores unchanged."""
    if not keep:
        return direction
    basis = torch.linalg.qr(torch.stack(keep, 1)).Q  # (dim, k) orthonormal
    out = direction - basis @ (basis.T @ direction)
    norm = out.norm()
    if norm < 1e-6:
        raise UserError("a direction cannot be conditioned on itself (or on directions that span it)")
    return out / norm


def _check_names(names: Iterable[str], directions: Mapping[str, Direction], what: str) -> None:
    for name in names:
        if name not in directions:
            raise UserError(f"unknown {what} {name!r}; this model has {', '.join(directions) or 'none'}")


def edit_vectors(
    directions: Mapping[str, Direction],
    strengths: Mapping[str, float],
    conditioning: Iterable[str] = (),
    layers: Layers | Mapping[str, Layers] | None = None,
    keep_rest: bool = True,
) -> list[tuple[str, torch.Tensor, Layers]]:
    """(name, step in W, rows) of each non-zero edit: strength x scale x the (conditioned) unit vector.

    ``keep_rest=False`` uses each direction's variant fitted on its attribute alone, where it has one:
    the edit then drags along what goes with the attribute in the data."""
    conditioning = list(conditioning)
    _check_names(strengths, directions, "edit direction")
    _check_names(conditioning, directions, "direction to condition on")
    per_edit = layers if isinstance(layers, Mapping) else {}
    _check_names(per_edit, directions, "edit direction (in the layer ranges)")
    steps = []
    for name, strength in strengths.items():
        strength = float(strength)
        if not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
            raise UserError(
                f"strength of {name!r} must be a number between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g} (standard deviations)"
            )
        if strength == 0:
            continue
        d = directions[name]
        held = [directions[c].vector for c in conditioning if c != name]
        rows = per_edit.get(name, d.layers) if isinstance(layers, Mapping) or layers is None else layers
        vector, scale = d.axis(keep_rest)
        steps.append((name, strength * scale * orthogonalize(vector, held), tuple(rows)))
    return steps


def apply_edits(
    wplus: torch.Tensor,
    directions: Mapping[str, Direction],
    strengths: Mapping[str, float],
    conditioning: Iterable[str] = (),
    layers: Layers | Mapping[str, Layers] | None = None,
    keep_rest: bool = True,
) -> torch.Tensor:
    """``wplus`` (batch, n_latent, dim) moved by ``strength`` standard deviations along each named direction.

    Each direction acts on its own default rows, on ``layers`` when one range is given, or on
    ``layers[name]`` when a range per edit is given; directions named in ``conditioning`` are
    projected out of the others first.
    """
    out = wplus.clone()
    n = wplus.shape[1]
    for _, step, (lo, hi) in edit_vectors(directions, strengths, conditioning, layers, keep_rest):
        lo, hi = max(0, int(lo)), min(n, int(hi))
        if lo >= hi:
            raise UserError(f"empty layer range {lo}..{hi} (the model has layers 0..{n - 1})")
        out[:, lo:hi] += step.to(out)
    return out


def edit_latent(
    latent: Latent,
    n_latent: int,
    directions: Mapping[str, Direction],
    strengths: Mapping[str, float],
    conditioning: Iterable[str] = (),
    layers: Layers | Mapping[str, Layers] | None = None,
) -> Latent:
    """The edited code: still a W code when every edit moves all rows, a W+ code otherwise."""
    steps = edit_vectors(directions, strengths, conditioning, layers)
    if latent.space == "w" and all((max(0, lo), min(n_latent, hi)) == (0, n_latent) for _, _, (lo, hi) in steps):
        moved = latent.latent.clone()
        for _, step, _ in steps:
            moved += step.to(moved)
        return replace(latent, latent=moved)
    moved = apply_edits(latent.wplus(n_latent), directions, strengths, conditioning, layers)
    return replace(latent, latent=moved, space="wplus")  # the source, transform and tuned generator stay


# --------------------------------------------------------------------------- parsing


def split_assignment(text: str, flag: str, usage: str) -> tuple[str, str]:
    """``NAME=VALUE`` from a command-line option -> (name, value text); ``usage`` says how to write it."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise UserError(f"{flag} {text!r}: write {usage}")
    return name, value


def parse_strength(text: str) -> tuple[str, float]:
    """``age=+2`` -> ("age", 2.0)."""
    name, value = split_assignment(text, "--set", "NAME=STRENGTH, e.g. age=+2 (standard deviations)")
    try:
        strength = float(value)
    except ValueError:
        raise UserError(
            f"--set {text!r}: strength {value!r} is not a number (standard deviations, e.g. +1.5)"
        ) from None
    return name, strength


def parse_layers(text: str, n_latent: int) -> tuple[str, Layers]:
    """``age=0:4`` (rows 0-3), ``age=coarse`` or ``age=coarse+middle`` -> (name, [first, end))."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise UserError(f"--layers {text!r}: write NAME=FIRST:END or NAME=coarse|middle|fine")
    groups = layer_groups(n_latent)
    if re.fullmatch(r"\d+:\d+", value):
        lo, hi = (int(v) for v in value.split(":"))
    elif all(part in groups for part in value.split("+")):
        spans = [groups[part] for part in value.split("+")]
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    else:
        raise UserError(f"--layers {text!r}: use FIRST:END (rows 0..{n_latent}) or coarse, middle, fine")
    if not 0 <= lo < hi <= n_latent:
        raise UserError(f"--layers {text!r}: the range must lie within 0:{n_latent} and not be empty")
    return name, (lo, hi)
