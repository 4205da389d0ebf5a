"""The soak in short: concurrent sessions through the app's API, each receiving only its own results."""

from __future__ import annotations

import numpy as np
import pytest
from test_app_api import small_model

from pipeline.bench.app import App
from pipeline.bench.soak import candidate_faces, distinct, own_results, soak


def results(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"edited": rng.integers(0, 256, (64, 64, 3)).astype(np.float32), "latent": rng.standard_normal((1, 10, 8)).astype(np.float32)}


def test_another_sessions_result_is_caught():
    references = [results(0), results(1), results(2)]
    assert distinct(references)
    assert own_results(results(1), 1, references) == []
    swapped = {**results(1), "edited": references[2]["edited"]}  # one output from someone else
    assert [w.split(":")[0] for w in own_results(swapped, 1, references)] == ["edited"]
    assert not distinct([results(0), results(0)])


@pytest.mark.slow
def test_three_sessions_for_twenty_seconds(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "server").mkdir()
    app = App(small_model(tmp_path / "model"), tmp_path / "app.log", env={"TMPDIR": str(tmp_path / "server")})
    try:
        result = soak(app.url, app.proc.pid, candidate_faces(None, 3), sessions=3, seconds=20, server_tmp=tmp_path / "server")
    finally:
        app.stop()
    assert result["errors"] == 0, result["error_samples"]
    assert result["cross_talk"] == 0, result["cross_talk_samples"]
    assert all(result["flows_per_session"]) and result["cross_talk_checks"] >= 3 * 4
    assert result["server_rss"]["growth"] < 0.2, result["server_rss"]
    # One folder per session that wrote a download, none elsewhere.
    assert result["server_temp_files"]["after"]["session_folders"] == result["server_temp_files"]["sessions_opened"]
