"""Applying edits: per-edit layers, W codes kept as W, argument parsing, and the ``edit`` command
end to end on a tiny model folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import cli
from pipeline.errors import UserError
from pipeline.latent.directions import Direction, save_directions
from pipeline.latent.edit import apply_edits, edit_latent, parse_layers, parse_strength
from pipeline.latent.files import Latent, load_latent_for, save_latent
from pipeline.models.checkpoints import save_native
from pipeline.models.generator import Generator, GeneratorConfig
from pipeline.models.render import to_uint8

ROOT = Path(__file__).resolve().parents[1]
PHOTO = Path(__file__).parent / "data" / "faces" / "astronaut.png"
TINY = GeneratorConfig(resolution=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16})
N_LATENT = TINY.n_latent  # 8


def unit(v) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32)
    return t / t.norm()


@pytest.fixture(autouse=True)
def only_these_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["align", "directions"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model folder with two directions and a W latent of one of its faces."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    G = Generator(TINY).eval()
    save_native(G, folder, half=False)
    directions = {
        "age": Direction("age", unit(torch.randn(32)), (0, 4), 0.8, "attribute", {"accuracy": 0.9}),
        "happy": Direction("happy", unit(torch.randn(32)), (2, 8), 0.5, "attribute", {"accuracy": 0.8}),
    }
    save_directions(folder / "directions.safetensors", directions, "tiny")
    with torch.no_grad():
        w = G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(3)))
    save_latent(folder / "face.safetensors", Latent(w, "tiny", "w", "utkface"))
    return folder


def render_unedited(folder: Path) -> np.ndarray:
    from pipeline.models.checkpoints import load_native

    G = load_native(folder / "generator.safetensors")
    latent = load_latent_for(folder / "face.safetensors", G, "tiny")
    with torch.no_grad():
        return to_uint8(G.synthesis(latent.wplus(G.n_latent), noise=G.noise_buffers()))[0]


def test_per_edit_layers_and_w_codes():
    d = {"age": Direction("age", unit([1, 0, 0]), (0, 4), 1.0), "smile": Direction("smile", unit([0, 1, 0]), (0, 6))}
    w = torch.zeros(1, 6, 3)
    out = apply_edits(w, d, {"age": 1.0, "smile": 2.0}, layers={"age": (4, 6)})
    assert out[0, :4, 0].abs().sum() == 0 and torch.allclose(out[0, 4:, 0], torch.ones(2))  # age on its given rows
    assert torch.allclose(out[0, :, 1], torch.full((6,), 2.0))  # smile on its own default rows
    code = Latent(torch.zeros(1, 3), "m", "w")
    kept = edit_latent(code, 6, d, {"smile": 1.0})
    assert kept.space == "w" and torch.allclose(kept.latent, torch.tensor([[0.0, 1.0, 0.0]]))
    widened = edit_latent(code, 6, d, {"age": 1.0})  # age's default rows are 0-3 of 6
    assert widened.space == "wplus" and widened.latent.shape == (1, 6, 3)
    with pytest.raises(UserError, match="between -10 and 10"):
        apply_edits(w, d, {"age": float("nan")})


def test_parsing_strengths_and_layers():
    assert parse_strength("age=+2") == ("age", 2.0) and parse_strength("happy=-1.5") == ("happy", -1.5)
    for bad in ("age", "age=lots", "=2"):
        with pytest.raises(UserError, match="--set"):
            parse_strength(bad)
    assert parse_layers("age=0:4", 10) == ("age", (0, 4))
    assert parse_layers("age=middle+fine", 10) == ("age", (4, 10))
    for bad in ("age=4:2", "age=0:11", "age=eyes", "age"):
        with pytest.raises(UserError, match="--layers"):
            parse_layers(bad, 10)


def test_edit_command_renders_a_changed_face(tmp_path, model_dir, capsys):
    out = tmp_path / "edited.png"
    args = ["edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir), "--model", "tiny",
            "--set", "age=+3", "--set", "happy=-2", "--condition", "happy", "--out", str(out),
            "--latent-out", str(tmp_path / "edited.safetensors")]  # fmt: skip
    assert cli.main(args) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["space"] == "wplus" and info["edits"] == {"age": 3.0, "happy": -2.0}
    edited = np.asarray(Image.open(out))
    unedited = render_unedited(model_dir)
    assert edited.shape == unedited.shape == (32, 32, 3)
    assert np.abs(edited.astype(int) - unedited.astype(int)).mean() > 1.0

    # Strength 0 renders the face as it was.
    same = tmp_path / "same.png"
    assert cli.main(["edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir), "--model", "tiny",
                     "--set", "age=0", "--out", str(same)]) == 0  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(same)), unedited)

    # Only the rows asked for move: age on the fine rows changes the picture less than on all.
    fine = tmp_path / "fine.png"
    assert cli.main(["edit", str(tmp_path / "edited.safetensors"), "--weights", str(model_dir), "--model", "tiny",
                     "--set", "age=-3", "--layers", "age=6:8", "--out", str(fine)]) == 0  # fmt: skip
    assert not np.array_equal(np.asarray(Image.open(fine)), edited)


def test_edit_lists_directions(model_dir, capsys):
    assert cli.main(["edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir), "--list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert list(listed) == ["age", "happy"] and listed["happy"]["layers"] == [2, 8] and listed["age"]["accuracy"] == 0.9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "beard=+1"], "unknown edit direction 'beard'; this model has age, happy"),
        (["--set", "age=much"], "is not a number"),
        (["--set", "age=+40"], "between -10 and 10"),
        (["--set", "age=1", "--condition", "gender"], "unknown direction to condition on 'gender'"),
    ],
)
def test_bad_edits_exit_2_with_one_line(model_dir, tmp_path, capsys, extra, message):
    args = ["edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir), "--model", "tiny",
            "--out", str(tmp_path / "x.png"), *extra]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "x.png").exists()


def test_edit_process_exit_status(model_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir),
         "--model", "tiny", "--set", "beard=+1", "--out", str(tmp_path / "x.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: unknown edit direction 'beard'; this model has age, happy"]


def test_edit_pastes_back_into_the_photo(model_dir, tmp_path):
    aligned, transform = tmp_path / "aligned.png", tmp_path / "aligned.json"
    assert cli.main(["align", str(PHOTO), "--template", "utkface", "--size", "32", "--out", str(aligned)]) == 0
    out = tmp_path / "edited.png"
    assert cli.main(["edit", str(model_dir / "face.safetensors"), "--weights", str(model_dir), "--model", "tiny",
                     "--set", "age=+2", "--out", str(out), "--paste-back", str(PHOTO), "--transform", str(transform)]) == 0  # fmt: skip
    composite = np.asarray(Image.open(tmp_path / "edited-composite.png").convert("RGB"))
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    assert composite.shape == photo.shape
    changed = np.abs(composite.astype(int) - photo.astype(int)).max(axis=2) > 0
    assert 0 < changed.mean() < 0.5  # the face region changed, the rest of the photo did not


def test_bench_edit_reports_goals_and_draws_the_grid(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["directions"])
    out = tmp_path / "edit_tiny.json"  # the pictures are named after it, so runs on two models keep both
    args = ["bench", "edit", "--weights", str(model_dir), "--model", "tiny", "--n", "2", "--n-real", "0",
            "--leakage-random", "3", "--out", str(out), "--json", "--card"]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(out.read_text())
    samples = result["samples"]
    assert set(samples["directions"]) == {"age", "happy"} and samples["faces"] == 2
    age = samples["directions"]["age"]
    assert {"change_per_sd", "change_at_plus3", "identity_kept_share", "leakage_at_plus2"} <= set(age)
    assert "happy" in age["leakage_at_plus2"] and "age|happy" in samples["conditioning"]
    assert set(result["goals_samples"]) >= {"age_plus3_years", "happy_plus2_probability", "identity_kept_share",
                                            "every_emotion_plus2_probability"}  # fmt: skip
    rise = samples["emotion_rise_at_plus2"]  # the tiny model's only emotion
    assert set(rise) == {"happy"} and result["goals_samples"]["every_emotion_plus2_probability"]["value"] == rise["happy"]
    # rows: the two directions; columns: seven strengths, 64 px tiles after a label column
    grid = tmp_path / "edit_grid_tiny.png"
    assert result["grid"] == str(grid)
    height, width = np.asarray(Image.open(grid)).shape[:2]
    assert width > 7 * 64 and 2 * 64 < height < 3 * 64
    card = (model_dir / "DIRECTIONS.md").read_text()
    assert "| age, holding happy |" in card and "### Edits on 2 random faces" in card
    assert "Each emotion's probability at +2 sd, rise over the unedited faces: happy" in card
    # The leakage matrix: every measured attribute (skin tone too) and identity, per direction, with its picture.
    leakage = result["leakage"]["random"]
    assert leakage["faces"] == 3 and set(leakage["matrix"]) == {"age", "happy"}
    assert {"age", "gender", "skin", "yaw", "identity"} <= set(leakage["matrix"]["age"])
    assert leakage["picture"] == str(tmp_path / "leakage_random_tiny.png") and Path(leakage["picture"]).is_file()
    assert "### Leakage matrix" in card and "leakage_random_tiny.png" in card


def test_bench_edit_pictures_take_the_tail_of_the_json_name():
    from pipeline.commands.directions import picture_tag

    assert picture_tag(Path("bench/edit.json")) == ""  # the default model's pictures keep their names
    assert picture_tag(Path("bench/edit_utkface-128.json")) == "_utkface-128"
    assert picture_tag(Path("runs/trial.json")) == "_trial"


def test_hold_colour_corrects_every_attribute_direction_of_the_model(model_dir, tmp_path, capsys):
    from pipeline.latent.directions import load_directions, read_report

    out = tmp_path / "held.safetensors"
    args = ["directions", "--weights", str(model_dir), "--model", "tiny", "--hold-colour", "--n", "8",
            "--data", str(tmp_path / "no-photos"), "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["faces"] == "random" and set(result["held"]) == {"happy"}  # age is left as fitted
    before = load_directions(model_dir / "directions.safetensors", 32, N_LATENT)
    after = load_directions(out, 32, N_LATENT)
    assert torch.allclose(after["age"].vector, before["age"].vector) and "colour_held" not in after["age"].info
    for name in result["held"]:
        d, held = after[name], result["held"][name]
        assert d.info["colour_held"] == held["held"] in ("skin", "skin+centre")
        assert len(held["change_per_sd_before"]) == (3 if held["held"] == "skin" else 6)
        assert d.layers == before[name].layers and not torch.equal(d.vector, before[name].vector)
    assert read_report(out)["colour_held"] == result["held"]
    from pipeline.bench.edit import colour_text  # DIRECTIONS.md says what each direction holds

    card = "\n".join(colour_text(result["held"]))
    assert f"| happy | {result['held']['happy']['held']} |" in card and "| age |" not in card


@pytest.mark.parametrize("extra, message", [(["--refit-by-gradient", "fear"], "separate steps"),
                                            (["--n", "4"], "at least 8 faces")])  # fmt: skip
def test_hold_colour_bad_arguments(model_dir, capsys, extra, message):
    args = ["directions", "--weights", str(model_dir), "--model", "tiny", "--hold-colour", *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
