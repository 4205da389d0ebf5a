"""Happy paths of the commands no other test runs end to end: valid input -> the output a user expects.

(The other commands' happy paths: align, paste in test_cli_align; invert, train encoder, bench inversion
in test_invert_cli; directions, edit, bench edit in test_edit; mix, transfer, augment, showcase, batch in
test_creative; talk in test_talking_head; attributes in test_attributes; sample in test_provenance.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_app_api import small_model

from pipeline import studio as studio_module
from pipeline.cli import main
from pipeline.talk.video import probe

DATA = Path(__file__).parent / "data"


def run(capsys, *argv) -> dict | list:
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip()
    try:
        return json.loads(out)
    except json.JSONDecodeError:  # progress lines, then one line of JSON
        return json.loads(out.splitlines()[-1])


def test_models_lists_the_default_model_first(capsys):
    models = run(capsys, "models", "--json")
    assert models[0]["name"] == "utkface-128" and models[0]["default"] is True
    assert {"status", "resolution", "alignment"} <= models[0].keys()


def test_lipsync_writes_a_preview_and_the_track(tmp_path, capsys):
    out, track = tmp_path / "lipsync.mp4", tmp_path / "track.npz"
    assert main(["lipsync", "--text", "Hello there.", "--out", str(out), "--landmarks", str(track)]) == 0
    assert "frames" in capsys.readouterr().out
    assert probe(out)["duration"] > 0.3
    saved = np.load(track)
    assert saved["landmarks"].ndim == 3 and saved["landmarks"].shape[1:] == (68, 2) and int(saved["fps"]) == 25


def test_bench_generator_speed(tmp_path, capsys):
    out = tmp_path / "speed.json"
    result = run(capsys, "bench", "generator-speed", "--batch", 2, "--train-batch", 2, "--repeats", 1, "--threads", 1,
                 "--out", out, "--json")  # fmt: skip
    assert result["train_step"]["ours_images_per_second"] > 0
    assert json.loads(out.read_text()) == result


def test_bench_align(capsys):
    result = run(capsys, "bench", "align", "--data", DATA / "utkface_mini", "--n", 3, "--json")
    assert result["paste_back"]["size_64"]["pixels_changed_outside_mask"] == 0
    assert "held-out images" in result["files"]


@pytest.mark.slow
def test_train_talkmap_writes_the_model_folders_talk_map(tmp_path, capsys):
    """Without --out the talk map goes beside the model folder's weights (the folder given in place of the registry's)."""
    folder = small_model(tmp_path, directions=False)
    (folder / "talk_map.safetensors").unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(studio_module.OVERRIDE_ENV, str(folder))
        studio_module.load_model.cache_clear()
        try:
            info = run(capsys, "train", "talkmap", "--faces", 24, "--trial-faces", 4, "--calibration-faces", 8)
        finally:
            studio_module.load_model.cache_clear()
    assert Path(info["talk_map"]) == folder / "talk_map.safetensors" and (folder / "talk_map.safetensors").is_file()
    assert set(info["layers"]) == {"mouth", "eyes"}
