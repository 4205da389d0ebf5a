"""The Ray engine: batch work spread over the cores of one machine or the nodes of a cluster.

For jobs that outgrow one process (a folder of thousands of photos, augmentation sets,
direction discovery over 100k+ samples). Each job is a Ray Data pipeline whose stages are
``map_batches`` calls; the heavy stage runs on an actor pool whose actors load the model once
(from a picklable loader, e.g. :class:`pipeline.studio.workers.EditorLoader`), so only file
names, codes and pixels travel. Batch editing:

    read (tasks) -> align, invert, edit (actors: :func:`pipeline.create.batch.edit_photo`) -> write (tasks)

The driver keeps ``report.csv`` (the same file and resume rule as the in-process engine:
photos already done are not sent again), a broken photo becomes a failed row and the run
goes on, and a dead worker is restarted by Ray and its batch redone: outputs are written
under a temporary name and renamed, so a photo's result appears once, whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..faces import attributes
from ..faces.images import load_image, save_image
from ..models.generator import Generator
from ..models.render import render
from .batch import FACES, REPORT, Editor, FileReport, edit_photo, output_names, photos_in, read_report, write_report

INSTALL_HINT = "the Ray engine needs Ray: pip install 'ray[data]' (or use --engine local)"
REPORT_EVERY = 1.0  # seconds between report rewrites while results stream in
_EMPTY = np.zeros((1, 1, 3), np.uint8)  # stands in for the pixels of a photo that failed


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Core alone is not enough
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """A Ray session for the job: the one already running in this process, the cluster at
    ``address`` (this package is shipped to its workers), or a local one started here and
    stopped at the end (on loopback, without a dashboard)."""
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    try:
        if address:
            package = str(Path(__file__).resolve().parents[1])
            ray.init(address=address, runtime_env={"py_modules": [package]}, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {str(exc)[:200]}") from None
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is the one bar
        yield
    finally:
        ray.shutdown()


def _reason(exc: BaseException) -> str:
    """The report's wording, as the in-process engine writes it."""
    if isinstance(exc, UserError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _light(workers: int) -> dict:
    """Reading and writing: tasks that hold no CPU of their own (the actors hold them all) but are
    capped, so that Ray does not start a worker process per photo to run them."""
    return {"compute": _ray().data.TaskPoolStrategy(size=max(1, workers)), "num_cpus": 0, "batch_size": 1}


def _actors(workers: int) -> dict:
    ray = _ray()
    if workers < 1:
        raise UserError("--workers must be at least 1")
    return {"compute": ray.data.ActorPoolStrategy(size=workers), "num_cpus": 1, "batch_size": 1}


# --------------------------------------------------------------------------- batch editing stages


def read_stage(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decode each photo; one that cannot be read is marked failed and carried on to the report."""
    images, status, reason, seconds = [], [], [], []
    for path in batch["path"]:
        started = time.monotonic()
        try:
            images.append(load_image(Path(path)))
            status.append(""), reason.append("")
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bad file is a row of the report, not the end of the run
            images.append(_EMPTY)
            status.append("failed"), reason.append(_reason(exc))
        seconds.append(time.monotonic() - started)
    return {**batch, "image": _objects(images), "status": np.array(status, object), "reason": np.array(reason, object),
            "seconds": np.array(seconds)}  # fmt: skip


class EditStage:
    """Align, invert and edit on an actor: the model is loaded once, when the actor starts.

    ``fault_drill``: a marker file; when given and absent, the actor creates it and dies on its
    first photo (the test's killed worker; Ray restarts the actor and redoes the batch)."""

    def __init__(self, make_editor: Callable[[], Editor], fault_drill: str | None = None) -> None:
        self.editor = make_editor()
        self.fault_drill = fault_drill

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fault_drill and not os.path.exists(self.fault_drill):
            Path(self.fault_drill).touch()
            os._exit(1)
        composites, faces, counts, status, reason = [], [], [], list(batch["status"]), list(batch["reason"])
        seconds = batch["seconds"].astype(float).copy()
        for i, photo in enumerate(batch["image"]):
            started = time.monotonic()
            composite, face, n_faces = _EMPTY, _EMPTY, 0
            if not status[i]:
                try:
                    composite, face, _, n_faces = edit_photo(self.editor, photo)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad photo must not end the run
                    status[i], reason[i] = "failed", _reason(exc)
            composites.append(composite), faces.append(face), counts.append(n_faces)
            seconds[i] += time.monotonic() - started
        out = {k: v for k, v in batch.items() if k != "image"}
        return {**out, "composite": _objects(composites), "face": _objects(faces), "faces": np.array(counts),
                "status": np.array(status, object), "reason": np.array(reason, object), "seconds": seconds,
                "model": np.array([self.editor.model] * len(counts), object)}  # fmt: skip


def write_stage(batch: dict[str, np.ndarray], out: str) -> dict[str, np.ndarray]:
    """Write the edited photo and face under temporary names, then rename: whole files only,
    and a redone batch replaces rather than adds."""
    status, reason, seconds = list(batch["status"]), list(batch["reason"]), batch["seconds"].astype(float).copy()
    for i, name in enumerate(batch["name"]):
        if status[i]:
            continue
        started = time.monotonic()
        try:
            for image, target in ((batch["face"][i], Path(out) / FACES / name), (batch["composite"][i], Path(out) / name)):
                partial = target.with_name(f".partial-{target.name}")
                save_image(image, partial, model=batch["model"][i] or None)
                os.replace(partial, target)
            status[i] = "ok"
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad name is reported, not raised
            status[i], reason[i] = "failed", _reason(exc)
        seconds[i] += time.monotonic() - started
    return {"file": batch["file"], "name": batch["name"], "status": np.array(status, object),
            "reason": np.array(reason, object), "faces": batch["faces"], "seconds": seconds}  # fmt: skip


def _objects(images: list[np.ndarray]) -> np.ndarray:
    """A column of images of different sizes."""
    column = np.empty(len(images), dtype=object)
    column[:] = images
    return column


def run_ray_batch(folder: Path, out: Path, make_editor: Callable[[], Editor], workers: int = 2, progress: bool = True,
                  on_file: Callable[[FileReport], None] | None = None, fault_drill: Path | None = None) -> list[FileReport]:  # fmt: skip
    """:func:`pipeline.create.batch.run_batch` on Ray (inside :func:`ray_cluster`): the report rows, in file order."""
    from tqdm import tqdm

    ray = _ray()
    photos = photos_in(folder)
    if not photos:
        raise UserError(f"no photos in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    (out / FACES).mkdir(exist_ok=True)
    report_path = out / REPORT
    before = read_report(report_path)
    names = output_names(photos)
    current = {p.name for p in photos}
    rows: dict[str, FileReport] = {}
    todo = []
    for p in photos:
        previous = before.get(p.name)
        if previous and previous.status in ("ok", "done before") and (out / names[p]).is_file():
            rows[p.name] = FileReport(p.name, "done before", "", names[p], previous.faces, 0.0)
        else:
            todo.append({"path": str(p.resolve()), "file": p.name, "name": names[p]})

    def save() -> None:  # rows of photos no longer in the folder are kept, as the in-process engine does
        ordered = [rows[p.name] for p in photos if p.name in rows]
        write_report(report_path, [*ordered, *(r for k, r in before.items() if k not in current)])

    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map_batches(read_stage, **_light(workers))
        ds = ds.map_batches(EditStage, fn_constructor_args=(make_editor, str(fault_drill) if fault_drill else None),
                            **_actors(workers))  # fmt: skip
        ds = ds.map_batches(write_stage, fn_kwargs={"out": str(out.resolve())}, **_light(workers))
        last = time.monotonic()
        for r in tqdm(ds.iter_rows(), total=len(todo), desc=f"batch (ray, {workers} workers)", unit="photo",
                      disable=not progress):  # fmt: skip
            ok = r["status"] == "ok"
            row = FileReport(r["file"], r["status"], r["reason"], r["name"] if ok else "", int(r["faces"]) if ok else 0,
                             round(float(r["seconds"]), 2))  # fmt: skip
            rows[row.file] = row
            if on_file:
                on_file(row)
            if time.monotonic() - last > REPORT_EVERY:
                save()
                last = time.monotonic()
    save()
    return [rows[p.name] for p in photos if p.name in rows]


# --------------------------------------------------------------------------- render and score codes


class ScoreStage:
    """Render W+ codes and read them with the classifiers, on an actor holding the generator."""

    def __init__(self, make_generator: Callable[[], Generator], batch: int, keep_images: bool) -> None:
        self.G = make_generator()
        self.batch, self.keep_images = batch, keep_images

    def __call__(self, item: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        codes = torch.from_numpy(np.asarray(item["codes"][0], dtype=np.float32)).to(self.G.device)
        images = render(self.G, codes, batch=self.batch)
        records = attributes.analyze(list(images), batch_size=self.batch, identity=False)
        flat = [attributes.scores(r) for r in records]
        out = {"index": item["index"], **{f"score_{k}": np.array([[f[k] for f in flat]]) for k in attributes.SCORE_NAMES}}
        if self.keep_images:
            out["images"] = images[None]
        return out


def score_codes(make_generator: Callable[[], Generator], wplus: torch.Tensor, workers: int = 2, batch: int = 64,
                keep_images: bool = False, label: str = "label", progress: bool = True,
                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:  # fmt: skip
    """Render and score ``wplus`` (n, n_latent, dim) on Ray, ``batch`` codes per task: the scores
    by name (``attributes.SCORE_NAMES``), in order, and the images when ``keep_images``."""
    from tqdm import tqdm

    ray = _ray()
    chunks = list(wplus.detach().cpu().float().split(batch))
    ds = ray.data.from_items([{"index": i, "codes": c.numpy()} for i, c in enumerate(chunks)], override_num_blocks=len(chunks))
    ds = ds.map_batches(ScoreStage, fn_constructor_args=(make_generator, batch, keep_images), **_actors(workers))
    results: dict[int, dict] = {}
    with tqdm(total=len(wplus), desc=f"{label} (ray, {workers} workers)", unit="face", disable=not progress) as bar:
        for r in ds.iter_rows():
            results[int(r["index"])] = r
            bar.update(len(r[f"score_{attributes.SCORE_NAMES[0]}"]))
    ordered = [results[i] for i in range(len(chunks))]
    scores = {k: np.concatenate([np.asarray(r[f"score_{k}"], np.float64) for r in ordered]) for k in attributes.SCORE_NAMES}
    images = np.concatenate([np.asarray(r["images"]) for r in ordered]) if keep_images else None
    return scores, images


def score_rows(scores: Mapping[str, np.ndarray]) -> list[dict[str, float]]:
    """Per-face score dicts (as :func:`pipeline.faces.attributes.scores` gives) from score columns."""
    n = len(next(iter(scores.values())))
    return [{k: float(v[i]) for k, v in scores.items()} for i in range(n)]
