"""``python -m pipeline align / paste`` as a user runs them, in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.faces.images import load_image

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(__file__).parent / "data" / "faces"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, match: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory) -> Path:
    """The astronaut beside a larger Mona Lisa, saved as a JPEG."""
    astronaut = load_image(FACES / "astronaut.png")
    mona = Image.fromarray(load_image(FACES / "mona_lisa.jpg")).resize((394, 394), Image.LANCZOS)
    canvas = Image.new("RGB", (906, 512), (128, 128, 128))
    canvas.paste(Image.fromarray(astronaut), (0, 0))
    canvas.paste(mona, (512, 59))
    path = tmp_path_factory.mktemp("group") / "group.jpg"
    canvas.save(path, quality=95)
    return path


def test_list_align_and_paste_a_chosen_face(group_photo, tmp_path):
    listed = cli("align", group_photo, "--list-faces")
    assert listed.returncode == 0, listed.stderr
    faces = json.loads(listed.stdout)["faces"]
    assert [f["index"] for f in faces] == [0, 1] and faces[0]["size"] > faces[1]["size"]
    assert faces[0]["box"][0] >= 512 and faces[1]["box"][2] <= 512

    out = tmp_path / "aligned.png"
    done = cli("align", group_photo, "--model", "utkface-64", "--size", "96", "--face", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    transform = json.loads(out.with_suffix(".json").read_text())
    assert transform["face_index"] == 1 and transform["face"]["box"] == faces[1]["box"]
    assert transform["source_size"] == [906, 512] and transform["template"] == "utkface"
    assert Image.open(out).size == (96, 96)

    # Paste back an edit of the astronaut (face 1): it changes her face only.
    edited = np.asarray(Image.open(out)).copy()
    edited[40:60, 20:76] = (255, 0, 255)
    Image.fromarray(edited).save(tmp_path / "edited.png")
    composite = tmp_path / "composite.png"
    pasted = cli("paste", tmp_path / "edited.png", "--into", group_photo, "--transform", out.with_suffix(".json"),
                 "--out", composite)  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    before, after = load_image(group_photo), load_image(composite)
    changed = np.argwhere((before != after).any(-1))
    assert len(changed) > 100
    assert changed[:, 1].max() < 512  # nothing changed on the Mona Lisa's side


def test_errors_are_one_line_with_exit_2(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(noise)
    assert_one_line_error(cli("align", text, "--out", tmp_path / "a.png"), "not an image")
    assert_one_line_error(cli("align", noise, "--out", tmp_path / "a.png"), "no face found")
    astronaut = FACES / "astronaut.png"
    assert_one_line_error(cli("align", astronaut, "--template", "nope", "--out", tmp_path / "a.png"), "unknown")
    assert_one_line_error(cli("paste", astronaut, "--into", astronaut, "--transform", text, "--out", tmp_path / "c.png"),
                          "not JSON")  # fmt: skip
