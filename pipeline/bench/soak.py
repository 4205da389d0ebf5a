"""Many people using the app at once, through its API (``python -m pipeline bench soak``).

Starts ``app.py`` in a subprocess and runs ``--sessions`` ``gradio_client`` sessions in parallel
for ``--minutes``, each repeating the full flow (upload -> align -> encode -> edit) on a face of
its own. Checks that nothing fails, that every result a session receives comes from its own
upload (each output is compared with what that face gave when it ran alone: the nearest must be
its own, and close), and that the server's memory is stable (resident memory in the first
and last minute). Prints JSON; ``--out`` also writes it to a file (``bench/soak.json``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .app import ROOT, App, edit_arguments

GOALS = {"errors": 0, "cross_talk": 0, "rss_growth": 0.20}
FACE_FOLDERS = [ROOT / "tests" / "data" / "faces", ROOT / "tests" / "data" / "utkface_mini"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
PIXEL_TOLERANCE = 2.0  # mean absolute difference (0-255) between runs of the same face
LATENT_TOLERANCE = 1e-3  # largest difference between two encodings of the same face


def candidate_faces(data: Path | None, wanted: int) -> list[Path]:
    """Photos to give the sessions, spread over the folder (more than needed: some may have no face)."""
    folders = [data] if data is not None else FACE_FOLDERS
    files = sorted(p for f in folders for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stride = max(1, len(files) // (3 * wanted))
    return files[::stride][: 3 * wanted]


def rss_mb(pid: int) -> float | None:
    """Current resident set size of a process, in MiB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _image(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _latent(path: str) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(path)["latent"]


def flow(client, photo: Path) -> dict[str, np.ndarray]:
    """One pass of the app's main flow; the outputs a user sees and downloads."""
    from gradio_client import handle_file

    client.predict(handle_file(str(photo)), api_name="/upload")
    _, _, aligned = client.predict(0, api_name="/align")
    _, reconstruction, _, _, latent_file = client.predict(api_name="/encode")
    _, edited, *_ = client.predict(*edit_arguments(client), api_name="/edit")
    return {"aligned": _image(aligned), "reconstruction": _image(reconstruction), "edited": _image(edited),
            "latent": _latent(latent_file)}  # fmt: skip


def _distance(a: np.ndarray, b: np.ndarray, key: str) -> float:
    if a.shape != b.shape:
        return float("inf")
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(diff.max() if key == "latent" else diff.mean())


def _tolerance(key: str) -> float:
    return LATENT_TOLERANCE if key == "latent" else PIXEL_TOLERANCE


def own_results(result: dict[str, np.ndarray], own: int, references: list[dict[str, np.ndarray]]) -> list[str]:
    """Outputs of ``result`` that are not clearly its own face's (empty when all are)."""
    wrong = []
    for key, value in result.items():
        distances = [_distance(value, ref[key], key) for ref in references]
        tolerance = _tolerance(key)
        nearest = int(np.argmin(distances))
        if nearest != own or distances[own] > tolerance:
            wrong.append(f"{key}: nearest is face {nearest}, distance to its own {distances[own]:.4g}")
    return wrong


def distinct(references: list[dict[str, np.ndarray]]) -> bool:
    """Whether every face's results are far from every other face's (else cross-talk could go unseen)."""
    return all(_distance(a[key], b[key], key) > 2 * _tolerance(key)
               for i, a in enumerate(references) for b in references[i + 1 :] for key in a)  # fmt: skip


def temp_files(folder: Path) -> dict:
    """What the server keeps in its temporary folder: session folders, their files, all bytes."""
    sessions = list(folder.glob("studio-session-*"))
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"session_folders": len(sessions), "session_files": sum(1 for p in files if p.parent in sessions),
            "mb": round(sum(p.stat().st_size for p in files) / 2**20, 2)}  # fmt: skip


class Sampler(threading.Thread):
    """The server's resident memory, once a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stopped = pid, [], threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stopped.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.perf_counter() - started, value))
            self.stopped.wait(1.0)

    def summary(self, seconds: float) -> dict:
        """Mean resident memory over the first and the last minute (half the run when shorter),
        and the mean of every 20 s, to tell a plateau from a leak."""
        window = min(60.0, seconds / 2)
        first = [mb for t, mb in self.samples if t <= window]
        last = [mb for t, mb in self.samples if t >= self.samples[-1][0] - window]
        first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
        return {"window_s": round(window, 1), "first_mean_mb": round(first_mean, 1), "last_mean_mb": round(last_mean, 1),
                "growth": round(last_mean / first_mean - 1, 4), "peak_mb": round(max(mb for _, mb in self.samples), 1),
                "samples": len(self.samples), "mean_mb_per_20s": self.series(20.0)}  # fmt: skip

    def series(self, step: float) -> list[float]:
        buckets: dict[int, list[float]] = {}
        for t, mb in self.samples:
            buckets.setdefault(int(t // step), []).append(mb)
        return [round(statistics.fmean(v), 1) for _, v in sorted(buckets.items())]


def soak(url: str, pid: int, faces: list[Path], sessions: int, seconds: float, server_tmp: Path | None = None) -> dict:
    """``sessions`` concurrent sessions on the app at ``url`` (server process ``pid``, temporary
    folder ``server_tmp`` when known) for ``seconds``."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from ..errors import UserError

    # Each face alone first: the reference every later result is checked against.
    chosen, references = [], []
    for photo in faces:
        try:
            references.append(flow(Client(url, verbose=False), photo))
        except AppError:
            continue  # no usable face in this photo: take the next one
        chosen.append(photo)
        if len(chosen) == sessions:
            break
    if len(chosen) < sessions:
        raise UserError(f"only {len(chosen)} of the photos have a usable face; {sessions} sessions need one each")
    if not distinct(references):
        raise UserError("two of the faces give results too alike to tell apart: use other photos")

    clients = [Client(url, verbose=False) for _ in chosen]
    files_before = temp_files(server_tmp) if server_tmp is not None else None
    lock = threading.Lock()
    flows = [0] * sessions
    errors: list[str] = []
    cross_talk: list[str] = []
    times: list[float] = []
    sampler = Sampler(pid)
    sampler.start()
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                result = flow(clients[index], chosen[index])
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"session {index}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            wrong = own_results(result, index, references)
            with lock:
                flows[index] += 1
                times.append(time.perf_counter() - started)
                cross_talk.extend(f"session {index}: {w}" for w in wrong)

    threads = [threading.Thread(target=work, args=(i,), name=f"soak-{i}") for i in range(sessions)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    memory = sampler.summary(elapsed)
    checks = sum(flows) * len(references[0])
    result = {
        "sessions": sessions,
        "seconds": round(elapsed, 1),
        "faces": [p.name for p in chosen],
        "flows": sum(flows),
        "flows_per_session": flows,
        "flow_s": {"median": round(statistics.median(times), 2), "max": round(max(times), 2)} if times else None,
        "errors": len(errors),
        "error_samples": errors[:5],
        "cross_talk_checks": checks,
        "cross_talk": len(cross_talk),
        "cross_talk_samples": cross_talk[:5],
        "server_rss": memory,
        # Sessions opened: one per face alone, then one per concurrent session.
        "server_temp_files": {"sessions_opened": 2 * sessions, "before": files_before,
                              "after": temp_files(server_tmp) if server_tmp is not None else None},  # fmt: skip
        "goals": GOALS,
    }
    result["passed"] = bool(result["errors"] == 0 and result["cross_talk"] == 0 and all(flows)
                            and memory["growth"] < GOALS["rss_growth"])  # fmt: skip
    return result


def bench_soak(weights: Path | None, data: Path | None, sessions: int, minutes: float) -> dict:
    """``sessions`` concurrent sessions for ``minutes`` on the app started with model folder ``weights``."""
    faces = candidate_faces(data, sessions)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        server_tmp = Path(tmp) / "server"
        server_tmp.mkdir()
        app = App(weights, Path(tmp) / "app.log", env={"TMPDIR": str(server_tmp)})
        try:
            result = soak(app.url, app.proc.pid, faces, sessions, minutes * 60, server_tmp)
        finally:
            app.stop()
    result.update({"concurrent_jobs": os.environ.get("STUDIO_CONCURRENT_JOBS", "default"), "cpu_count": os.cpu_count(),
                   "load_average_1min": round(os.getloadavg()[0], 2)})  # fmt: skip
    return result
