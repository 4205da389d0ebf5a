"""Every image and video the studio writes says it was AI-edited, with the model and the tool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from pipeline import provenance
from pipeline.cli import main as cli
from pipeline.faces.images import save_image
from pipeline.faces.imaging import save_grid
from pipeline.talk.video import probe, write_video

GOLDEN = Path(__file__).parent / "data" / "golden" / "stylegan2_rosinality_small64_weights.safetensors"


def face(size: int = 64) -> np.ndarray:
    x = np.linspace(0, 255, size, dtype=np.uint8)
    return np.stack([x[None].repeat(size, 0), x[:, None].repeat(size, 1), np.full((size, size), 90, np.uint8)], -1)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_images_carry_the_model_and_tool(tmp_path, suffix):
    path = save_image(face(), tmp_path / f"edited{suffix}", model="utkface-64")
    found = provenance.read(path)
    assert found["description"].startswith("AI-edited with Face Studio") and "utkface-64" in found["description"]
    assert "Face Studio" in found["software"]


def test_png_chunks_are_plain_text_any_reader_sees(tmp_path):
    path = save_image(face(), tmp_path / "edited.png", model="ffhq-1024")
    with Image.open(path) as im:
        assert im.text["AI-edited"] == "yes" and im.text["Model"] == "ffhq-1024"
    assert b"AI-edited" in path.read_bytes()


def test_sample_grid_from_the_command_line_names_its_model(tmp_path):
    import torch

    ckpt = tmp_path / "golden.pt"
    torch.save({"g_ema": load_file(str(GOLDEN))}, ckpt)
    out = tmp_path / "grid.png"
    assert cli(["sample", "--checkpoint", str(ckpt), "--n", "4", "--out", str(out)]) == 0
    assert "AI-edited" in provenance.read(out)["description"]


def test_visible_mark_is_off_by_default_and_on_with_the_variable(tmp_path, monkeypatch):
    image = face(128)
    plain = save_image(image, tmp_path / "plain.png", model="m")
    assert np.array_equal(np.asarray(Image.open(plain)), image)
    monkeypatch.setenv(provenance.MARK_ENV, "1")
    marked = np.asarray(Image.open(save_image(image, tmp_path / "marked.png", model="m")))
    changed = np.abs(marked.astype(int) - image.astype(int)).sum(-1) > 0
    assert changed[-16:, -64:].mean() > 0.3  # the label sits in the bottom-right corner
    assert not changed[:64, :64].any()  # and nowhere else
    crop = save_image(image, tmp_path / "crop.png", generated=False)  # an aligned crop feeds inversion: unmarked
    assert np.array_equal(np.asarray(Image.open(crop)), image)
    grid = np.asarray(Image.open(save_grid(np.stack([image] * 4), tmp_path / "grid.png", nrow=2)))
    assert grid[-10:, -30:].mean() < 200  # the dark label


def test_videos_carry_the_model_and_tool_even_if_a_caller_sets_a_comment(tmp_path, monkeypatch):
    frames = np.stack([face()] * 10)
    wave = np.zeros(16000, np.float32)
    tags = probe(write_video(frames, wave, 16000, tmp_path / "a.mp4", metadata={"model": "utkface-64", "comment": "x"}))["tags"]
    assert tags["comment"] == provenance.statement("utkface-64") and tags["model"] == "utkface-64"
    assert "Face Studio" in tags["encoder_tool"]
    monkeypatch.setenv(provenance.MARK_ENV, "on")
    import imageio.v2 as imageio

    plain = imageio.get_reader(str(tmp_path / "a.mp4"), "ffmpeg").get_data(0).astype(int)
    marked = imageio.get_reader(str(write_video(frames, wave, 16000, tmp_path / "b.mp4")), "ffmpeg").get_data(0).astype(int)
    diff = np.abs(marked - plain).mean(-1)
    assert diff[-40:, -120:].mean() > 20 and diff[:128, :128].mean() < 3  # the label, bottom right only


def test_every_image_writer_in_the_package_embeds_the_provenance():
    """Read from the code: a PIL ``.save`` that forgets the provenance options fails here."""
    import ast

    package = Path(__file__).resolve().parents[1] / "pipeline"
    not_images = {"torch", "np", "self", "talk_map", "prior", "trainer", "split", "model", "speech", "state"}
    for path in package.rglob("*.py"):
        if "training" in path.parts:
            continue  # checkpoints and caches, no images for people
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "save"):
                continue
            receiver = ast.unparse(node.func.value)
            if receiver.split(".")[0] in not_images:
                continue
            spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
            assert any("provenance.save_options" in s for s in spread), f"{path.name}:{node.lineno} {receiver}.save without provenance"
