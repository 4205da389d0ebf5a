"""The bad-input corpus through the package API, the command line and the app's API, counted:
``python -m pipeline.bench.corpus [--weights DIR] [--out bench/corpus.json]``.

The corpus is made on the fly by ``tests/bad_inputs.py`` (the tests run the same cases). For each
surface: cases tried, cases handled (refused with a one-line reason naming the problem, or accepted
where the input is fine) and the ones that were not; whether the app still serves afterwards.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bad_inputs import Outcome, corpus, dims_of, make, summary, through_api, through_app, through_cli  # noqa: E402

from pipeline.bench.app import App  # noqa: E402
from pipeline.errors import UserError  # noqa: E402
from pipeline.latent.files import save_latent  # noqa: E402
from pipeline.studio import OVERRIDE_ENV, Studio  # noqa: E402


def guarded(feed, *args) -> Outcome:
    """A crash is an outcome too: counted as not handled, with its type."""
    try:
        return feed(*args)
    except Exception as exc:  # noqa: BLE001 - the point is to count these
        return Outcome(False, f"crash: {type(exc).__name__}: {str(exc)[:200]}\n")


def run(weights: Path | None) -> dict:
    from gradio_client import Client

    if weights is not None:
        os.environ[OVERRIDE_ENV] = str(weights.resolve())
    studio = Studio()
    cases = corpus()
    results: dict[str, dict[str, bool]] = {"package_api": {}, "command_line": {}, "app_api": {}}
    reasons: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        folder = Path(tmp)
        made = {case.id: make(case, folder / "in", dims_of(studio.model.generator)) for case in cases}
        good = save_latent(folder / "face.safetensors", studio.random_latent(studio.model, 3))
        for case in cases:
            session = studio.new_session()
            try:
                outcome = guarded(through_api, case, made[case.id], studio, session)
            finally:
                session.close()
            results["package_api"][case.id] = outcome.matches(case)
            outcome = guarded(through_cli, case, made[case.id], folder / "out" / case.id, good)
            results["command_line"][case.id] = outcome.matches(case)
        app = App(weights, folder / "app.log")
        try:
            client = Client(app.url, verbose=False)
            for case in cases:
                outcome = guarded(through_app, case, made[case.id], client)
                results["app_api"][case.id] = outcome.matches(case)
                reasons[case.id] = outcome.message.strip() or "accepted"
            try:  # a fresh user after all that
                serving = Path(Client(app.url, verbose=False).predict(5, api_name="/random_face")[0]).is_file()
            except Exception:  # noqa: BLE001
                serving = False
        finally:
            app.stop()
        shell_ran = (folder / "in" / "prompt-shell" / "canary").exists()
    return {"cases": len(cases), **summary(results), "app_serving_afterwards": serving,
            "shell_prompt_ran_anything": shell_ran, "app_messages": reasons,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="a local model folder instead of the default model")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    try:
        result = run(args.weights)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    handled = all(r["handled"] == r["tried"] for r in (result["package_api"], result["command_line"], result["app_api"]))
    return 0 if handled and result["app_serving_afterwards"] else 1


if __name__ == "__main__":
    sys.exit(main())
