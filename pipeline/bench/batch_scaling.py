"""``bench batch``: photos per second of batch editing, in-process and on Ray with 1 and 2
workers, on the same photos and cores, and what one photo costs stage by stage.

The stage costs (align, encode, edit and render, paste back, write) are what the README's
scaling-on-paper section reasons from: per photo the work is independent, so N machines
give N times the photos until the driver's share (listing, the report, shipping pixels)
or the storage the photos are read from and written to becomes the limit.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..create.batch import Editor, align_and_encode, photos_in, run_batch
from ..create.ray_engine import ray_cluster, run_ray_batch
from ..faces.images import load_image, save_image
from ..faces.paste import paste_back
from ..latent.edit import apply_edits
from ..models.render import render_one
from ..studio.models import load_model_directions, read_model
from ..studio.workers import EditorLoader, ModelSpec

Log = Callable[[str], None]


def stage_costs(editor: Editor, photos: list[Path], out: Path) -> dict[str, float]:
    """Mean milliseconds per photo of each stage of the per-photo work, in this process."""
    totals = {"read": 0.0, "align_encode": 0.0, "edit_render": 0.0, "paste": 0.0, "write": 0.0}
    done = 0
    G = editor.generator
    for i, path in enumerate([photos[0], *photos]):  # the first pass warms the detectors up, unmeasured
        t0 = time.perf_counter()
        try:
            photo = load_image(path)
            t1 = time.perf_counter()
            aligned, wplus, noise, _ = align_and_encode(G, editor.encoder, editor.template, photo, editor.steps)
        except Exception:  # noqa: BLE001 - a photo without a face is left out of the means
            continue
        t2 = time.perf_counter()
        face = render_one(G, apply_edits(wplus.to(G.device), editor.directions, editor.strengths), noise)
        t3 = time.perf_counter()
        composite = paste_back(photo, aligned, face)
        t4 = time.perf_counter()
        save_image(composite, out / f"stage-{path.stem}.png", model=editor.model)
        t5 = time.perf_counter()
        if i == 0:
            continue
        for k, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            totals[k] += dt
        done += 1
    return {k: round(1000 * v / max(done, 1), 1) for k, v in totals.items()}


def _rate(rows: list, seconds: float, first: float | None = None) -> dict:
    """End-to-end photos per second, and (``first``: seconds to the first result) the steady rate
    once every worker has loaded its model."""
    ok = sum(r.status == "ok" for r in rows)
    out = {"photos": len(rows), "ok": ok, "seconds": round(seconds, 2), "photos_per_second": round(len(rows) / seconds, 3)}
    if first is not None and len(rows) > 1 and seconds > first:
        out["first_result_seconds"] = round(first, 2)
        out["steady_photos_per_second"] = round((len(rows) - 1) / (seconds - first), 3)
    return out


class _FirstResult:
    """Seconds from its making to the first result (every worker is up by then, or nearly)."""

    def __init__(self) -> None:
        self.started, self.first = time.monotonic(), None

    def __call__(self, _row) -> None:
        if self.first is None:
            self.first = time.monotonic() - self.started


def bench_batch(photos_dir: Path, model: str | None, weights: Path | None, directions: Path | None,
                strengths: Mapping[str, float], n: int = 8, address: str | None = None,
                log: Log = print) -> dict:  # fmt: skip
    """The three throughputs side by side (``photos_per_second`` of local, ray_1, ray_2) and the stage costs.

    Ray's times include its workers loading the model (once each), not starting Ray itself
    (reported apart as ``ray_start_seconds``): on a cluster that start is paid once a session."""
    from tqdm import tqdm

    files = photos_in(photos_dir)[:n]
    m = read_model(model, weights)
    editor = Editor(m.generator.eval(), m.encoder, m.alignment, load_model_directions(m, directions), dict(strengths), m.name)
    loader = EditorLoader(ModelSpec.of(model, weights, directions), tuple(strengths.items()))
    result: dict = {"model": m.name, "photos": len(files), "edit": dict(strengths)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "photos"
        source.mkdir()
        for p in files:
            shutil.copy(p, source / p.name)
        runs = ["local", "ray_1", "ray_2"]
        with tqdm(total=len(runs), desc="bench batch", unit="run") as bar:
            result["stage_ms"] = stage_costs(editor, files, root)
            started = time.monotonic()
            result["local"] = _rate(run_batch(source, root / "local", editor, progress=False), time.monotonic() - started)
            bar.update()
            started = time.monotonic()
            with ray_cluster(address):
                result["ray_start_seconds"] = round(time.monotonic() - started, 2)
                for workers in (1, 2):
                    clock = _FirstResult()
                    rows = run_ray_batch(source, root / f"ray_{workers}", loader, workers, progress=False, on_file=clock)
                    result[f"ray_{workers}"] = _rate(rows, time.monotonic() - clock.started, clock.first)
                    bar.update()
    result["photos_per_second"] = {k: result[k]["photos_per_second"] for k in runs}
    result["steady_photos_per_second"] = {k: result[k].get("steady_photos_per_second") for k in runs[1:]}
    result["speedup_ray_2_over_1"] = round(result["ray_2"]["photos_per_second"] / result["ray_1"]["photos_per_second"], 2)
    log(f"photos/s: {result['photos_per_second']}")
    return result
