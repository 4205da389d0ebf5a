"""The web app as a user meets it, timed through its API (``python -m pipeline bench app``).

Starts ``app.py`` in a subprocess on a free port and drives it with ``gradio_client``:
upload -> align -> encode -> edit (default settings, the first direction at strength 1),
twice (the first user after start, then a fresh session), an optimisation of ``--steps``
steps, a video of a ~5 s prompt where talking heads are available, and the app process's
peak resident memory. Prints JSON.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPT_5S = "The quick brown fox jumps over the lazy dog, then rests in the warm afternoon sun."
GOALS = {"upload_to_edit_s": 10.0, "peak_rss_mb": 3072.0}
EDIT_FLAGS = 6  # /edit's inputs before its sliders: conditioning, keep, own layers, first, last, paste


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a process, in MiB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class App:
    """``app.py`` in a subprocess; ``url`` once it serves."""

    def __init__(self, weights: Path | None, log: Path, timeout: float = 300.0, env: dict[str, str] | None = None):
        cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(free_port())]
        if weights is not None:
            cmd += ["--weights", str(weights)]
        self.log = log
        self.started = time.perf_counter()
        with log.open("w") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})})  # fmt: skip
        self.url = f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}/"
        deadline = time.time() + timeout
        while "Running on" not in log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                from ..errors import UserError

                raise UserError(f"the app did not start: {log.read_text()[-500:]}")
            time.sleep(0.2)
        self.startup_s = time.perf_counter() - self.started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def upload_to_edit(url: str, photo: Path) -> dict:
    """One new session from upload to its first edited image; seconds per step."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)
    times: dict[str, float | str | None] = {}
    _, times["upload_align_s"] = timed(client.predict, handle_file(str(photo)), api_name="/upload")
    _, times["encode_s"] = timed(client.predict, api_name="/encode")
    try:
        _, times["edit_s"] = timed(client.predict, *edit_arguments(client), api_name="/edit")
    except AppError as exc:
        times["edit_s"], times["edit_error"] = None, str(exc)
    steps = [v for k, v in times.items() if k.endswith("_s") and isinstance(v, float)]
    times["total_s"] = round(sum(steps), 2)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in times.items()}


def edit_arguments(client, first: float = 1.0) -> list:
    """/edit's inputs: defaults, and ``first`` standard deviations on the first slider (the model's
    first attribute), however many sliders the app has."""
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/edit"]
    sliders = len(endpoint["parameters"]) - EDIT_FLAGS
    return [[], True, True, 0, 0, False, first] + [0.0] * (sliders - 1)


def optimise_time(url: str, photo: Path, steps: int) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(str(photo)), api_name="/upload")
    client.predict(api_name="/encode")
    started = time.perf_counter()
    job = client.submit(steps, "wplus", False, False, api_name="/optimise")
    previews = sum(1 for _ in job)
    seconds = time.perf_counter() - started
    status = job.outputs()[-1][1]
    # "done: 100 steps in 8.1 s, ..." or "converged: 63 steps ..." (early stop)
    ran = int(status.split(":")[1].split("steps")[0].split()[-1]) if ":" in status else steps
    return {"steps": ran, "seconds": round(seconds, 2), "s_per_100_steps": round(100 * seconds / max(1, ran), 2),
            "previews": previews, "status": status}  # fmt: skip


def talk_time(url: str, photo: Path) -> dict:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)
    client.predict(handle_file(str(photo)), api_name="/upload")
    client.predict(api_name="/encode")
    try:
        (video, _), seconds = timed(client.predict, PROMPT_5S, "en-us", 160, None, api_name="/talk")
    except AppError as exc:
        return {"seconds": None, "error": str(exc)}
    return {"seconds": round(seconds, 2), "prompt": PROMPT_5S}


def bench_app(weights: Path | None, photo: Path, steps: int, talk: bool = True) -> dict:
    """The app started with model folder ``weights`` (None: the default model), timed on ``photo``."""
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        app = App(weights, Path(tmp) / "app.log")
        try:
            first = upload_to_edit(app.url, photo)
            second = upload_to_edit(app.url, photo)
            optimise = optimise_time(app.url, photo, steps)
            talked = talk_time(app.url, photo) if talk else None
            rss = peak_rss_mb(app.proc.pid)
        finally:
            app.stop()
    return {
        "app_startup_s": round(app.startup_s, 2),
        "upload_to_edit_first_user": first,
        "upload_to_edit": second,
        "optimise": optimise,
        "talk_5s_prompt": talked,
        "peak_rss_mb": rss,
        "goals": GOALS,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
