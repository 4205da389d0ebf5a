"""The app's Create tab through its API: edit to a target, localized edit, expression transfer,
augmentation zip and showcase export, on the embedded model with its own edit directions."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_app_api import EMBEDDED, PHOTO, launch_app, small_model  # noqa: E402

pytestmark = pytest.mark.skipif(not (EMBEDDED / "directions.safetensors").is_file(), reason="no embedded directions")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = small_model(tmp_path_factory.mktemp("model"), directions=False)
    (folder / "directions.safetensors").symlink_to(EMBEDDED / "directions.safetensors")
    app = launch_app(folder, tmp_path_factory.mktemp("log"))
    url = next(app)
    yield Client(url, verbose=False)
    next(app, None)


def image(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_create_tab_needs_a_face_first(client):
    with pytest.raises(AppError, match="encode a face first"):
        client.predict("age", 40, 0, False, api_name="/edit_to_target")


def test_create_tab_end_to_end(client):
    face, _ = client.predict(5, api_name="/random_face")

    result, note, composite, result_file = client.predict("happy", 0.9, 0, False, api_name="/edit_to_target")
    assert note.startswith(("**Reached.**", "**Not reached.**")) and "Steps" in note
    assert image(result_file).shape == (64, 64, 3)
    assert composite is None or not composite.get("visible", True)  # nothing was pasted: no photo shown
    with pytest.raises(AppError, match="probability"):
        client.predict("happy", 3, 0, False, api_name="/edit_to_target")

    before = image(client.predict("happy", 0.0, "mouth", False, api_name="/localized_edit")[3])
    local = image(client.predict("smile", 3.0, "mouth", False, api_name="/localized_edit")[3])
    assert before.shape == local.shape == (64, 64, 3)
    assert np.array_equal(local[:8], before[:8])  # the top of the picture is far from the mouth
    assert not np.array_equal(local, before)

    moved, note, moved_file = client.predict(None, 4, "replace", 1.0, api_name="/transfer")
    assert "Expression from B" in note and image(moved_file).shape == (64, 64, 3)

    archive, agreement = client.predict(4, 0, api_name="/augment")
    with zipfile.ZipFile(archive) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("labels.csv").decode())))
        assert len([n for n in z.namelist() if n.startswith("variant_")]) == len(rows) == 4
    assert 0 <= agreement["all"] <= 1

    gif, video, pair, sheet, files = client.predict(["age"], -2, 2, 6, ["age", "smile"], api_name="/showcase")
    with Image.open(gif) as g:
        assert g.n_frames == 6
    assert Path(video["video"] if isinstance(video, dict) else video).read_bytes()[4:8] == b"ftyp"
    assert image(pair).shape[1] > 2 * image(pair).shape[0] * 0.8 and len(files) == 4


def test_batch_edits_the_good_photos_and_reports_the_bad_one(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a photo")
    archive, report = client.predict([handle_file(str(PHOTO)), handle_file(str(bad))], "age", 2.0, api_name="/batch")
    rows = {r[0]: r for r in report["data"]}
    assert rows["astronaut.png"][1] == "ok" and rows["notes.png"][1] == "failed" and "not an image" in rows["notes.png"][2]
    with zipfile.ZipFile(archive) as z:
        assert {"astronaut.png", "faces/astronaut.png", "report.csv"} <= set(z.namelist())
        edited = np.asarray(Image.open(io.BytesIO(z.read("astronaut.png"))).convert("RGB"))
    assert edited.shape == image(str(PHOTO)).shape
