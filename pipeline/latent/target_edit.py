"""Edit to a target value: "make her 60", "P(happy) 0.9".

The face is stepped along the attribute's direction and read back with the attribute
classifiers after every step (a secant search on the measured value, bracketing the
target once it has been passed), until the reading is within a tolerance of the target.
Every step is also checked against the starting face's identity: a target that can only be
reached by turning the face into someone else is refused with the closest result kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from ..faces import attributes
from ..models.generator import Generator
from ..models.mini_xception import EMOTIONS
from ..models.render import render_one
from .directions import Direction, layer_spans
from .edit import MAX_STRENGTH, apply_edits, split_assignment

MAX_STEPS = 8  # renders read back per target
LOST_BRACKET = 0.25  # standard deviations: closer than this to a lost identity, stop
MAX_JUMP = 2.5  # standard deviations one step may move: the classifiers' slope is only local
# Further out the faces leave what the generator learned (they blur and smear) long before
# dlib calls them someone else: no target is sought beyond this many standard deviations.
MAX_TARGET_STRENGTH = 5.0
PROBABILITIES = ("gender", *EMOTIONS)  # targets in [0, 1]
# Tolerances in the score's own unit; geometric scores (smile, ...) use a share of their spread.
TOLERANCE = {"age": 3.0, "yaw": 3.0, "pitch": 3.0, **{name: 0.05 for name in PROBABILITIES}}
SPREAD_TOLERANCE = 0.25

Measure = Callable[[Sequence[np.ndarray]], list]  # images -> FaceAttributes (with identity)


@dataclass
class TargetResult:
    """Where the search stopped: the face, its reading and whether it is within tolerance."""

    name: str
    target: float
    tolerance: float
    reached: bool
    start_value: float
    value: float  # the reading of the returned face
    strength: float  # standard deviations moved along the direction
    steps: int  # faces rendered and read back after the start
    identity_distance: float  # to the starting face
    wplus: torch.Tensor  # (1, n_latent, dim)
    image: np.ndarray
    message: str
    history: list[dict] = field(default_factory=list)


def parse_target(text: str) -> tuple[str, float]:
    """``age=60`` -> ("age", 60.0); the value is in the score's unit (years, probability, degrees)."""
    name, value = split_assignment(text, "--target", "NAME=VALUE, e.g. age=60 or happy=0.9")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--target {text!r}: {value.strip()!r} is not a number") from None
    return name, number


def check_target(name: str, value: float, directions: Mapping[str, Direction]) -> None:
    if name not in attributes.SCORE_NAMES:
        raise UserError(f"cannot measure {name!r}; targets can be {', '.join(attributes.SCORE_NAMES)}")
    if name not in directions:
        raise UserError(f"this model has no {name!r} direction to move along; it has {', '.join(directions) or 'none'}")
    if not math.isfinite(value):
        raise UserError(f"the target for {name} must be a number")
    if name in PROBABILITIES and not 0.0 <= value <= 1.0:
        raise UserError(f"{name} is a probability: give a target between 0 and 1, not {value:g}")
    if name == "age" and not 0.0 <= value <= 100.0:
        raise UserError(f"give an age between 0 and 100 years, not {value:g}")


def default_tolerance(name: str, direction: Direction) -> float:
    if name in TOLERANCE:
        return TOLERANCE[name]
    spread = direction.info.get("score_sd")
    return SPREAD_TOLERANCE * float(spread) if spread else 0.02


def expected_slope(direction: Direction, n_latent: int, name: str) -> float | None:
    """Change of the score per standard deviation on the direction's own rows, as measured when
    the direction was found (None when unknown or not in the score's growing sense)."""
    if direction.name != name:
        return None
    change = direction.info.get("change_per_sd") or {}
    span = next((k for k, v in layer_spans(n_latent).items() if tuple(v) == tuple(direction.layers)), None)
    slope = change.get(span) if span else None
    return float(slope) if slope and slope > 0 else None


def _next_strength(points: list[tuple[float, float]], target: float, guess: float | None) -> float:
    """Secant step on the last two readings; inside the bracket once the target has been passed."""
    s_last, v_last = points[-1]
    below = [p for p in points if p[1] < target]
    above = [p for p in points if p[1] > target]
    if below and above:  # regula falsi between the closest readings on each side
        (s0, v0) = max(below, key=lambda p: p[1])
        (s1, v1) = min(above, key=lambda p: p[1])
        return s0 + (target - v0) * (s1 - s0) / (v1 - v0) if v1 != v0 else (s0 + s1) / 2
    slope = None
    if len(points) >= 2:
        (s0, v0) = points[-2]
        if s_last != s0 and (v_last - v0) / (s_last - s0) > 0:
            slope = (v_last - v0) / (s_last - s0)
    slope = slope or guess
    if slope is None:  # unknown: try one standard deviation the way the target lies
        return s_last + math.copysign(1.0, target - v_last)
    step = (target - v_last) / slope
    return s_last + float(np.clip(step, -MAX_JUMP, MAX_JUMP))


def edit_to_target(
    G: Generator,
    wplus: torch.Tensor,
    directions: Mapping[str, Direction],
    name: str,
    target: float,
    tolerance: float | None = None,
    identity_limit: float = attributes.IDENTITY_SAME,
    max_steps: int = MAX_STEPS,
    conditioning: Sequence[str] = (),
    noise: list[torch.Tensor] | None = None,
    measure: Measure | None = None,
    max_strength: float = MAX_TARGET_STRENGTH,
) -> TargetResult:
    """Move ``wplus`` (1, n_latent, dim) along ``name``'s direction until the classifiers read
    ``target`` within ``tolerance``, or say why not (unreachable, or only as another person)."""
    check_target(name, target, directions)
    measure = measure or attributes.analyze
    direction = directions[name]
    tolerance = float(tolerance) if tolerance is not None else default_tolerance(name, direction)
    if not tolerance > 0:
        raise UserError("the tolerance must be a positive number")
    if not 0 < max_strength <= MAX_STRENGTH:
        raise UserError(f"the furthest a target may be sought is between 0 and {MAX_STRENGTH:g} standard deviations")

    def look(strength: float) -> tuple[torch.Tensor, np.ndarray, object]:
        code = apply_edits(wplus, directions, {name: strength}, conditioning) if strength else wplus.clone()
        image = render_one(G, code, noise)
        return code, image, measure([image])[0]

    code, image, start = look(0.0)
    start_value = attributes.scores(start)[name]
    history = [{"strength": 0.0, "value": round(start_value, 4), "identity_distance": 0.0}]
    best = (abs(start_value - target), 0.0, start_value, 0.0, code, image)
    points = [(0.0, start_value)]
    guess = expected_slope(direction, G.n_latent, name)
    steps, stop, lost = 0, "", None  # lost: the weakest strength found to change the person
    while abs(points[-1][1] - target) > tolerance and not stop:
        if steps >= max_steps:
            stop = f"not within {tolerance:g} after {max_steps} steps"
            break
        strength = float(np.clip(_next_strength(points, target, guess), -max_strength, max_strength))
        kept = points[-1][0]
        if lost is not None and (strength - kept) * (lost - kept) > 0 and abs(strength - kept) >= abs(lost - kept):
            strength = (kept + lost) / 2  # short of where the person changed: halve the way there
        if any(abs(strength - s) < 1e-3 for s, _ in points):
            s_far, v_far = max(points, key=lambda p: abs(p[0]))
            stop = f"the reading gets no closer (the strongest edit allowed, {s_far:+.1f} standard deviations, reads {v_far:.3g})"
            break
        code, image, attrs = look(strength)
        steps += 1
        value = attributes.scores(attrs)[name]
        distance = attributes.identity_distance(attrs, start)
        history.append({"strength": round(strength, 3), "value": round(value, 4), "identity_distance": round(distance, 3)})
        if distance >= identity_limit:
            lost = strength
            if abs(strength - kept) > LOST_BRACKET:
                continue  # try closer to the last face that was still the same person
            stop = f"at {strength:+.1f} standard deviations the face reads {value:.3g} and is no longer the same person " \
                   f"(identity distance {distance:.2f}, limit {identity_limit:g})"  # fmt: skip
            break
        points.append((strength, value))
        if abs(value - target) < best[0]:
            best = (abs(value - target), strength, value, distance, code, image)
    _, strength, value, distance, code, image = best
    reached = abs(value - target) <= tolerance
    if reached:
        message = f"{name} {value:.3g} (target {target:g} ± {tolerance:g}) after {steps} steps, " \
                  f"{strength:+.2f} standard deviations, identity distance {distance:.2f}"  # fmt: skip
    else:
        why = "cannot be reached without losing identity" if "same person" in stop else "not reached"
        message = f"{name} {target:g} {why}: {stop}; closest kept: {value:.3g} at {strength:+.2f} standard deviations"
    return TargetResult(name, float(target), tolerance, reached, start_value, value, strength, steps, distance, code,
                        image, message, history)  # fmt: skip


def reach_targets(G: Generator, wplus: torch.Tensor, noise: list[torch.Tensor] | None, directions: Mapping[str, Direction],
                  targets: Sequence[tuple[str, float]], tolerance: float | None, identity_limit: float,
                  conditioning: Sequence[str] = ()) -> tuple[torch.Tensor, list[TargetResult]]:  # fmt: skip
    """``wplus`` taken to each target in turn; the last code and every search's result."""
    results = []
    for name, value in targets:
        r = edit_to_target(G, wplus, directions, name, value, tolerance, identity_limit, conditioning=conditioning,
                           noise=noise)  # fmt: skip
        results.append(r)
        wplus = r.wplus
    return wplus, results
