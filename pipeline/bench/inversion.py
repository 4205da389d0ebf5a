"""Inversion benchmark: encoder alone, the projector baseline and ours on the same faces.

For every face it reports the final perceptual distance (LPIPS-style, SqueezeNet,
calibrated, 128 px: the figure ``bench generator`` reports too), PSNR and dlib
identity distance of the saved (uint8) reconstruction, steps, wall and CPU seconds,
and the steps and seconds ours needs to reach the baseline's final distance.
Timings exclude the measuring itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..faces.imaging import save_grid
from ..latent.inversion import BASELINE, DEFAULTS, InversionResult, InversionSettings, invert, prepare_target
from ..models.encoder import Encoder
from ..models.generator import Generator
from ..models.perceptual import perceptual_distance, psnr
from ..models.render import from_uint8, render_one, to_uint8


def identity_function() -> Callable[[np.ndarray], np.ndarray] | None:
    """dlib's 128-d identity descriptor of a uint8 face, where the attributes module provides it."""
    try:
        from ..faces import attributes
    except ImportError:
        return None

    def descriptor(image: np.ndarray) -> np.ndarray:
        located = attributes.locate(image)
        chip = attributes.face_chip(located, attributes.IDENTITY_CHIP, attributes.IDENTITY_PADDING)
        return attributes.identity_descriptors([chip])[0]

    return descriptor


class Scorer:
    """Distance, PSNR and identity distance of uint8 reconstructions against one target."""

    def __init__(self, target: np.ndarray, identity: Callable[[np.ndarray], np.ndarray] | None):
        self.net = perceptual_distance(True, 128)
        self.target = from_uint8(target)[None]
        with torch.no_grad():
            self.feats = self.net.raw_features(self.target)
        self.identity = identity
        self.target_id = identity(target) if identity else None

    @torch.no_grad()
    def lpips(self, image: np.ndarray) -> float:
        return float(self.net.distance_from_features(self.net.raw_features(from_uint8(image)[None]), self.feats))

    def score(self, image: np.ndarray) -> dict[str, float | None]:
        out: dict[str, float | None] = {"lpips": self.lpips(image), "psnr": float(psnr(from_uint8(image)[None], self.target))}
        out["identity"] = float(np.linalg.norm(self.identity(image) - self.target_id)) if self.identity else None
        return out


GRID_FACES = 8


def _cost(result: InversionResult) -> dict[str, float]:
    return {"steps": result.steps, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds}


def bench_faces(
    G: Generator,
    encoder: Encoder | None,
    faces: np.ndarray | list[np.ndarray],
    names: list[str],
    ours: InversionSettings = DEFAULTS,
    baseline: InversionSettings | None = BASELINE,
    pti: bool = False,
    grid: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every method on uint8 aligned faces; per-face rows and a summary."""
    identity = identity_function()
    rows, tiles = [], []
    for i, (face, name) in enumerate(zip(faces, names)):
        target = prepare_target(face, G.config.resolution)
        face = to_uint8(target[0])
        scorer = Scorer(face, identity)
        row: dict = {"face": name}
        images = [face]

        if encoder is not None:
            wall, cpu = time.perf_counter(), time.process_time()
            enc_image = render_one(G, encoder.wplus(target))
            row["encoder"] = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
            row["encoder"].update(scorer.score(enc_image))
            images.append(enc_image)

        if baseline is not None:
            result = invert(G, target, None, settings=baseline)
            images.append(to_uint8(result.image[0]))
            row["baseline"] = {**scorer.score(images[-1]), **_cost(result)}

        trajectory: list[float] = []  # the distance after each step, from the previews
        result = invert(G, target, encoder, settings=ours, preview_every=1,
                        callback=lambda step, loss, img, t=trajectory, sc=scorer: t.append(sc.lpips(img)))  # fmt: skip
        images.append(to_uint8(result.image[0]))
        row["ours"] = {**scorer.score(images[-1]), **_cost(result)}
        if baseline is not None:
            # trajectory[k]: the reconstruction after k updates; the last entry is the returned one.
            goal = row["baseline"]["lpips"]
            reached = next((k for k, v in enumerate(trajectory[:-1]) if v <= goal), None)
            if reached is None and trajectory[-1] <= goal:
                reached = result.steps
            at = result.history[min(reached, len(result.history) - 1)] if reached is not None else {}
            row["ours"].update(steps_to_baseline=reached, seconds_to_baseline=at.get("seconds"),
                               cpu_seconds_to_baseline=at.get("cpu_seconds"))  # fmt: skip

        if pti:  # tuning around ours' code: its cost adds to ours'
            tuned = invert(G, target, init=result.wplus, steps=0, settings=ours, pti=True)
            images.append(to_uint8(tuned.image[0]))
            row["pti"] = {**scorer.score(images[-1]), "steps": result.steps + tuned.pti_steps,
                          "seconds": result.seconds + tuned.seconds, "cpu_seconds": result.cpu_seconds + tuned.cpu_seconds}  # fmt: skip
        rows.append(row)
        tiles += images
        log(f"[{i + 1}/{len(faces)}] {name}: " + "  ".join(
            f"{k} lpips={v['lpips']:.4f} psnr={v['psnr']:.2f} id={v['identity'] if v['identity'] is None else round(v['identity'], 3)}"
            for k, v in row.items() if isinstance(v, dict)))  # fmt: skip
    if grid is not None and rows:
        per_face = len(tiles) // len(rows)  # a readable grid: the first GRID_FACES faces
        save_grid(np.stack(tiles[: GRID_FACES * per_face]), grid, nrow=per_face)
    return {"faces": rows, "summary": summarize(rows), "ours_settings": asdict(ours),
            "baseline_settings": asdict(baseline) if baseline else None,
            "identity_metric": "dlib face ResNet descriptor distance" if identity else "unavailable"}  # fmt: skip


def summarize(rows: list[dict]) -> dict:
    methods = [m for m in ("encoder", "baseline", "ours", "pti") if rows and m in rows[0]]
    out: dict = {}
    for m in methods:
        vals = [r[m] for r in rows]
        s: dict = {k: float(np.mean([v[k] for v in vals])) for k in ("lpips", "psnr", "seconds", "cpu_seconds")}
        if "steps" in vals[0]:
            s["steps"] = float(np.mean([v["steps"] for v in vals]))
        ids = [v["identity"] for v in vals if v["identity"] is not None]
        if ids:
            from ..faces.attributes import IDENTITY_SAME

            s["identity"] = float(np.mean(ids))
            s["identity_below_0.6"] = float(np.mean([d < IDENTITY_SAME for d in ids]))
        out[m] = s
    if "baseline" in out:
        hit = [(r["ours"], r["baseline"]) for r in rows if r["ours"]["steps_to_baseline"] is not None]

        def median(f: Callable[[dict, dict], float]) -> float | None:
            return float(np.median([f(o, b) for o, b in hit])) if hit else None

        out["reach_baseline"] = {
            "fraction_reached": len(hit) / len(rows),
            "median_steps": median(lambda o, b: o["steps_to_baseline"]),
            "median_seconds": median(lambda o, b: o["seconds_to_baseline"]),
            "median_cpu_seconds": median(lambda o, b: o["cpu_seconds_to_baseline"]),
            # Per face: ours' cost to reach the baseline's final distance / the baseline's whole cost.
            "median_step_ratio": median(lambda o, b: o["steps_to_baseline"] / b["steps"]),
            "median_time_ratio": median(lambda o, b: o["seconds_to_baseline"] / b["seconds"]),
            "median_cpu_time_ratio": median(lambda o, b: o["cpu_seconds_to_baseline"] / b["cpu_seconds"]),
        }
    return out
