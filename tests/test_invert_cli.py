"""``invert``, ``bench inversion`` and ``train encoder`` end to end on a tiny model folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import cli
from pipeline.latent.files import Latent, load_latent, load_latent_for, save_latent
from pipeline.models.checkpoints import save_native
from pipeline.models.encoder import Encoder, EncoderConfig, IterativeEncoder, load_encoder, save_encoder
from pipeline.models.generator import Generator, GeneratorConfig

MINI = Path(__file__).parent / "data" / "utkface_mini"
TINY = GeneratorConfig(resolution=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16})


@pytest.fixture(autouse=True)
def only_these_commands(monkeypatch):
    # The commands under test, independent of the other modules' registration.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["invert"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    save_native(Generator(TINY).eval(), folder, half=False)
    save_encoder(Encoder(EncoderConfig(32, 32, TINY.n_latent, channels=[16, 16, 16], hidden=64)), folder / "encoder.safetensors")
    files = sorted(p.name for p in MINI.glob("*.jpg"))
    (folder / "heldout.txt").write_text("# held out\n" + "\n".join(files[:3]) + "\n")
    return folder


def face() -> Path:
    return sorted(MINI.glob("*.jpg"))[0]


def test_invert_writes_a_latent_and_a_preview(tmp_path, model_dir, capsys):
    out, preview = tmp_path / "face.safetensors", tmp_path / "face.png"
    args = ["invert", str(face()), "--weights", str(model_dir), "--model", "tiny", "--aligned", "--steps", "3", "--out", str(out),
            "--preview", str(preview), "--json"]  # fmt: skip
    assert cli.main(args) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["steps"] == 3 and info["space"] == "wplus" and not info["aligned_here"]
    assert 0 < info["lpips"] < 1 and info["psnr"] > 0 and "identity_distance" in info
    G = Generator(TINY)
    latent = load_latent_for(out, G, "tiny")
    assert latent.latent.shape == (1, TINY.n_latent, 32)
    assert np.asarray(Image.open(preview)).shape == (32, 32, 3)

    # Refining from that file in W space gives one code.
    out_w = tmp_path / "w.safetensors"
    args = ["invert", str(face()), "--weights", str(model_dir), "--model", "tiny", "--aligned", "--steps", "2", "--space", "w",
            "--init", str(out), "--out", str(out_w)]  # fmt: skip
    assert cli.main(args) == 0
    assert load_latent_for(out_w, G, "tiny").latent.shape == (1, 32)


def test_pti_writes_the_tuned_copy_beside_the_latent(tmp_path, model_dir):
    before = (model_dir / "generator.safetensors").read_bytes()
    out = tmp_path / "p.safetensors"
    args = ["invert", str(face()), "--weights", str(model_dir), "--aligned", "--steps", "2", "--tune", "--pti-steps", "3", "--out", str(out)]
    assert cli.main(args) == 0
    latent = load_latent_for(out, Generator(TINY), model_dir.name)
    assert latent.generator == "p.pti.safetensors" and (tmp_path / latent.generator).is_file()
    assert (model_dir / "generator.safetensors").read_bytes() == before


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_non_image_is_one_line_error(tmp_path, model_dir, capsys):
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    assert cli.main(["invert", str(junk), "--weights", str(model_dir), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "not an image" in one_line_error(capsys)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (80, 40)).save(wide)
    assert cli.main(["invert", str(wide), "--weights", str(model_dir), "--aligned", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "an aligned face is square" in one_line_error(capsys)
    # A photo needs the model's alignment template to be cut out; a bare folder has none.
    assert cli.main(["invert", str(wide), "--weights", str(model_dir), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "alignment template is unknown" in one_line_error(capsys)


def test_wrong_latent_file_is_one_line_error(tmp_path, model_dir, capsys):
    other = save_latent(tmp_path / "other.safetensors", Latent(torch.zeros(1, TINY.n_latent, 32), "ffhq-1024"))
    base = ["invert", str(face()), "--weights", str(model_dir), "--model", "tiny", "--aligned", "--steps", "1",
            "--out", str(tmp_path / "y.safetensors")]  # fmt: skip
    assert cli.main([*base, "--init", str(other)]) == 2
    assert "made for model 'ffhq-1024'" in one_line_error(capsys)
    not_latent = tmp_path / "junk.safetensors"
    not_latent.write_bytes(b"\x00" * 64)
    assert cli.main([*base, "--init", str(not_latent)]) == 2
    assert "not a latent file" in one_line_error(capsys)


def test_bench_inversion_reports_both_methods(tmp_path, model_dir, capsys, monkeypatch):
    from dataclasses import replace

    from pipeline.latent import inversion

    # Shorter runs of the same two recipes, so the test takes seconds.
    monkeypatch.setattr(inversion, "BASELINE", replace(inversion.BASELINE, steps=20, perceptual_resize=None, mean_w_samples=500))
    monkeypatch.setattr(inversion, "DEFAULTS", replace(inversion.DEFAULTS, steps=10, perceptual_resize=None))
    grid = tmp_path / "grid.png"
    args = ["bench", "inversion", "--data", str(MINI), "--weights", str(model_dir), "--n", "2", "--grid", str(grid), "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    held = (model_dir / "heldout.txt").read_text().split()
    assert len(report["faces"]) == 2 and all(r["face"] in held for r in report["faces"])
    summary = report["summary"]
    assert summary["baseline"]["steps"] == 20 and summary["ours"]["steps"] <= 10
    assert {"lpips", "psnr", "seconds"} <= set(summary["encoder"])
    assert "fraction_reached" in summary["reach_baseline"]
    assert Image.open(grid).size[0] > 4 * 32  # input | encoder | baseline | ours


def test_train_encoder_resumes_and_writes_numbers(tmp_path, model_dir, capsys):
    out = tmp_path / "model-out"
    args = ["train", "encoder", "--data", str(MINI), "--weights", str(model_dir), "--out", str(out),
            "--run-dir", str(tmp_path / "run"), "--max-images", "32", "--n-eval", "3"]  # fmt: skip
    assert cli.main(args) == 0
    first = json.loads((out / "encoder_training.json").read_text())
    assert first["train"]["images_seen"] >= 32 and {"psnr", "lpips"} <= set(first["heldout_after"])
    assert cli.main([*args[:-4], "--max-images", "64", "--n-eval", "3"]) == 0
    second = json.loads((out / "encoder_training.json").read_text())
    assert second["train"]["images_seen"] >= 64 and second["train"]["step"] > first["train"]["step"]
    assert "resumed" in capsys.readouterr().err
    assert isinstance(load_encoder(out / "encoder.safetensors"), Encoder)


def test_train_encoder_with_refine_steps_writes_a_refiner_the_model_then_uses(tmp_path, model_dir, capsys):
    import shutil

    out = tmp_path / "model-out"
    shutil.copytree(model_dir, out)
    args = ["train", "encoder", "--data", str(MINI), "--weights", str(out), "--refine-steps", "2",
            "--run-dir", str(tmp_path / "run"), "--max-images", "32", "--n-eval", "3"]  # fmt: skip
    assert cli.main(args) == 0
    assert (out / "refiner.safetensors").is_file()
    assert json.loads((out / "refiner.json").read_text())["in_channels"] == 6
    G = Generator(TINY)
    loaded = load_encoder(out / "encoder.safetensors", G)
    assert isinstance(loaded, IterativeEncoder) and loaded.steps == 2
    assert isinstance(load_encoder(out / "encoder.safetensors"), Encoder)  # no generator: the encoder alone
    # The encoder itself is unchanged; the refiner is what trained.
    before = load_encoder(model_dir / "encoder.safetensors").state_dict()
    assert all(torch.equal(v, loaded.encoder.state_dict()[k]) for k, v in before.items())
    assert any(v.abs().sum() > 0 for k, v in loaded.refiner.state_dict().items() if k.startswith("to_w"))
    capsys.readouterr()

    # invert on that folder starts from the refined guess and writes a latent.
    latent = tmp_path / "face.safetensors"
    args = ["invert", str(face()), "--weights", str(out), "--model", "tiny", "--aligned", "--steps", "0",
            "--out", str(latent), "--json"]  # fmt: skip
    assert cli.main(args) == 0
    assert load_latent_for(latent, G, "tiny").latent.shape == (1, TINY.n_latent, 32)

    assert cli.main(["train", "encoder", "--data", str(MINI), "--weights", str(out), "--refine-steps", "-1"]) == 2
    assert "refine-steps" in capsys.readouterr().err


FACES = Path(__file__).parent / "data" / "faces"


def test_a_painting_is_aligned_inverted_and_pasted_back_with_the_embedded_model(tmp_path, capsys, monkeypatch):
    import hashlib

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["invert", "align", "directions"])
    painting = tmp_path / "mona.jpg"
    painting.write_bytes((FACES / "mona_lisa.jpg").read_bytes())
    out = tmp_path / "mona.latent.safetensors"
    assert cli.main(["invert", str(painting), "--steps", "5", "--out", str(out), "--json", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["aligned_here"] and info["model"] == "utkface-128" and info["steps"] <= 5
    assert info["identity_distance"] is not None and 0 < info["lpips"] < 0.5
    # The latent remembers where the face came from: pasting back needs no other file.
    latent = load_latent(out)
    photo = np.asarray(Image.open(painting).convert("RGB"))
    assert latent.source_sha256 == hashlib.sha256(painting.read_bytes()).hexdigest()
    assert latent.transform["source_size"] == [photo.shape[1], photo.shape[0]] and latent.transform["template"] == "utkface"
    preview = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))
    assert preview.shape == (128, 128, 3)  # the model view, at the default model's resolution

    edited = tmp_path / "smile.png"
    assert cli.main(["edit", str(out), "--set", "smile=+1", "-o", str(edited), "--paste-back", str(painting)]) == 0
    composite = np.asarray(Image.open(json.loads(capsys.readouterr().out)["composite"]).convert("RGB"))
    assert composite.shape == photo.shape
    changed = np.abs(composite.astype(int) - photo.astype(int)).max(axis=2) > 8
    ys, xs = np.nonzero(changed)
    box = np.array(latent.transform["face"]["box"])  # (left, top, right, bottom) of the detected face
    assert changed.any() and changed[: photo.shape[0] // 10].sum() == 0  # the top strip is untouched
    assert box[0] - 40 <= np.median(xs) <= box[2] + 40 and box[1] - 40 <= np.median(ys) <= box[3] + 40


def test_a_face_written_by_align_keeps_its_photo_transform(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["invert", "align"])
    aligned = tmp_path / "face.png"
    assert cli.main(["align", str(FACES / "astronaut.png"), "-o", str(aligned)]) == 0
    transform = json.loads(aligned.with_suffix(".json").read_text())
    out = tmp_path / "face.latent.safetensors"
    assert cli.main(["invert", str(aligned), "--steps", "0", "--out", str(out), "--json"]) == 0
    assert not json.loads(capsys.readouterr().out.strip().splitlines()[-1])["aligned_here"]
    stored = load_latent(out).transform
    assert stored["source"].endswith("astronaut.png") and stored["matrix"] == transform["matrix"]


def test_a_photo_without_a_face_is_one_line_error(tmp_path, capsys):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (180, 170, 160)).save(blank)
    assert cli.main(["invert", str(blank), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "face" in one_line_error(capsys)
    assert not (tmp_path / "x.safetensors").exists()
