"""Inversion benchmark: encoder alone, the projector baseline and ours on the same faces.

For every face it reports the final perceptual distance (LPIPS-style, SqueezeNet,
calibrated, 128 px: the figure ``bench generator`` reports too), PSNR and dlib
identity distance of the saved (uint8) reconstruction, steps and seconds, and the
number of steps and seconds ours needs to reach the baseline's final distance.
Timings exclude the measuring itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .encoder import Encoder
from .generator import Generator
from .imaging import from_uint8, save_grid, to_uint8
from .inversion import BASELINE, DEFAULTS, InversionSettings, invert, prepare_target
from .metrics import psnr
from .perceptual import perceptual_distance

IDENTITY_THRESHOLD = 0.6  # dlib: same person below this distance


def identity_function() -> Callable[[np.ndarray, np.ndarray], float] | None:
    """dlib identity distance between two uint8 faces, where the attributes module provides it."""
    try:
        from .attributes import identity_distance
    except ImportError:
        return None
    return identity_distance


class Scorer:
    """Distance, PSNR and identity of uint8 reconstructions against one target."""

    def __init__(self, target: np.ndarray, identity: Callable | None):
        self.net = perceptual_distance(True, 128)
        self.target_u8 = target
        self.target = from_uint8(target)[None]
        with torch.no_grad():
            self.feats = self.net.raw_features(self.target)
        self.identity = identity

    @torch.no_grad()
    def lpips(self, image: np.ndarray) -> float:
        return float(self.net.distance_from_features(self.net.raw_features(from_uint8(image)[None]), self.feats))

    def score(self, image: np.ndarray) -> dict[str, float | None]:
        out: dict[str, float | None] = {"lpips": self.lpips(image), "psnr": float(psnr(from_uint8(image)[None], self.target))}
        out["identity"] = float(self.identity(image, self.target_u8)) if self.identity else None
        return out


def bench_faces(
    G: Generator,
    encoder: Encoder | None,
    faces: np.ndarray,
    names: list[str],
    ours: InversionSettings = DEFAULTS,
    baseline: InversionSettings | None = BASELINE,
    pti: bool = False,
    grid: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every method on (N, H, W, 3) uint8 aligned faces; per-face rows and a summary."""
    identity = identity_function()
    rows, tiles = [], []
    for i, (face, name) in enumerate(zip(faces, names)):
        target = prepare_target(face, G.config.resolution)
        face = to_uint8(target[0])
        scorer = Scorer(face, identity)
        row: dict = {"face": name}

        if encoder is not None:
            started = time.perf_counter()
            with torch.no_grad():
                enc_image = G.synthesis(encoder.wplus(target), noise=G.noise_buffers())
            row["encoder"] = {**scorer.score(to_uint8(enc_image[0])), "seconds": time.perf_counter() - started}

        base_image = None
        if baseline is not None:
            result = invert(G, target, None, settings=baseline)
            base_image = to_uint8(result.image[0])
            row["baseline"] = {**scorer.score(base_image), "steps": result.steps, "seconds": result.seconds}

        trajectory: list[float] = []  # the distance after each step, from the previews
        result = invert(G, target, encoder, settings=ours, preview_every=1,
                        callback=lambda step, loss, img, t=trajectory, sc=scorer: t.append(sc.lpips(img)))  # fmt: skip
        ours_image = to_uint8(result.image[0])
        row["ours"] = {**scorer.score(ours_image), "steps": result.steps, "seconds": result.seconds}
        if baseline is not None:
            # trajectory[k]: the reconstruction after k updates (the last entry is the returned one).
            goal = row["baseline"]["lpips"]
            reached = next((k for k, v in enumerate(trajectory[:-1]) if v <= goal), None)
            if reached is None and trajectory[-1] <= goal:
                reached = result.steps
            row["ours"]["steps_to_baseline"] = reached
            row["ours"]["seconds_to_baseline"] = (
                None if reached is None else result.history[min(reached, len(result.history) - 1)]["seconds"]
            )
        pti_image = None
        if pti:
            tuned = invert(G, target, encoder, settings=ours, pti=True)
            pti_image = to_uint8(tuned.image[0])
            row["pti"] = {**scorer.score(pti_image), "steps": tuned.steps + tuned.pti_steps, "seconds": tuned.seconds}
        rows.append(row)
        log(f"[{i + 1}/{len(faces)}] {name}: " + "  ".join(
            f"{k} lpips={v['lpips']:.4f} psnr={v['psnr']:.2f}" for k, v in row.items() if isinstance(v, dict)))  # fmt: skip
        tiles.append(face)
        if encoder is not None:
            tiles.append(to_uint8(enc_image[0]))
        tiles += [im for im in (base_image, ours_image, pti_image) if im is not None]
    if grid is not None and rows:
        save_grid(np.stack(tiles), grid, nrow=len(tiles) // len(rows))
    return {"faces": rows, "summary": summarize(rows), "ours_settings": asdict(ours),
            "baseline_settings": asdict(baseline) if baseline else None,
            "identity_metric": "dlib ResNet L2 distance" if identity else "unavailable"}  # fmt: skip


def summarize(rows: list[dict]) -> dict:
    methods = [m for m in ("encoder", "baseline", "ours", "pti") if rows and m in rows[0]]
    out: dict = {}
    for m in methods:
        vals = [r[m] for r in rows]
        s: dict = {k: float(np.mean([v[k] for v in vals])) for k in ("lpips", "psnr", "seconds")}
        if "steps" in vals[0]:
            s["steps"] = float(np.mean([v["steps"] for v in vals]))
        ids = [v["identity"] for v in vals if v["identity"] is not None]
        if ids:
            s["identity"] = float(np.mean(ids))
            s["identity_below_0.6"] = float(np.mean([d < IDENTITY_THRESHOLD for d in ids]))
        out[m] = s
    if "baseline" in out:
        reach = [r["ours"]["steps_to_baseline"] for r in rows]
        hit = [(r["ours"]["steps_to_baseline"], r["ours"]["seconds_to_baseline"], r["baseline"]) for r in rows
               if r["ours"]["steps_to_baseline"] is not None]  # fmt: skip
        out["reach_baseline"] = {
            "fraction_reached": float(np.mean([x is not None for x in reach])),
            "median_steps": float(np.median([h[0] for h in hit])) if hit else None,
            "median_seconds": float(np.median([h[1] for h in hit])) if hit else None,
            # Per face, ours' cost to reach the baseline's final distance over the baseline's whole cost.
            "median_step_ratio": float(np.median([h[0] / h[2]["steps"] for h in hit])) if hit else None,
            "median_time_ratio": float(np.median([h[1] / h[2]["seconds"] for h in hit])) if hit else None,
        }
    return out
