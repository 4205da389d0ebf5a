"""The app end to end through its API: a real server in a subprocess, driven by gradio_client.

The app runs on the embedded model's committed weights (the golden StyleGAN2 from ``tests/data``
where they are absent), passed as a model folder with ``--weights`` together with test edit
directions, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app_ui.widgets import slot_names  # noqa: E402
from pipeline.latent.directions import Direction  # noqa: E402
from pipeline.latent.files import load_latent_for  # noqa: E402
from pipeline.models import registry  # noqa: E402
from pipeline.models.checkpoints import generator_from_state_dict, load_native, save_native  # noqa: E402
from pipeline.models.encoder import Encoder, EncoderConfig, save_encoder  # noqa: E402
from pipeline.models.generator import Generator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
PHOTO = DATA / "faces" / "astronaut.png"
SPEECH = DATA / "audio" / "cmu_arctic_us_aew_a0001.wav"
MODEL = registry.default_model().name  # the model name the local folder stands in for
EMBEDDED = ROOT / "weights" / "utkface-64"  # the smaller embedded model: the folder's fast weights


def small_model(folder: Path, directions: bool = True) -> Path:
    """A model folder for the app: the embedded model's weights (the golden StyleGAN2 with a
    fixed random encoder where they are absent) and, optionally, edit directions = the top
    principal components of W (GANSpace), the last one on the middle and fine layers only."""
    if (EMBEDDED / "generator.safetensors").is_file():
        for name in ("generator.safetensors", "generator.json", "encoder.safetensors", "encoder.json"):
            (folder / name).symlink_to(EMBEDDED / name)
        for name in ("talk_map.safetensors", "prior.safetensors"):  # fitted on these weights: Talk, random faces
            if (EMBEDDED / name).is_file():
                (folder / name).symlink_to(EMBEDDED / name)
        G = load_native(folder / "generator.safetensors")
    else:
        G = golden_generator()
        save_native(G, folder, half=False)
        torch.manual_seed(0)
        encoder = Encoder(EncoderConfig(64, G.style_dim, G.n_latent, channels=[16, 16, 16], hidden=64))
        save_encoder(encoder, folder / "encoder.safetensors", half=False)
    (folder / "model.json").write_text(json.dumps({"alignment": "utkface"}))
    if directions:
        with torch.no_grad():
            w = G.mapping(torch.randn(2000, G.style_dim, generator=torch.Generator().manual_seed(0)))
        _, _, v = torch.pca_lowrank(w - w.mean(0), q=3, center=False)
        tensors = {f"pc{i}": v[:, i].contiguous() for i in range(3)}
        save_file(tensors, str(folder / "directions.safetensors"), metadata={"layers": json.dumps({"pc2": [4, 10]})})
    return folder


def edit_inputs(values: dict[str, float], conditioning=(), keep: bool = True, own_layers: bool = True,
                first: int = 0, last: int = 9, paste: bool = False) -> list:  # fmt: skip
    """/edit's inputs for the small model's directions (pc0..pc2), each value in its slider's slot."""
    stub = {f"pc{i}": Direction(f"pc{i}", torch.ones(1), (0, 10), kind="published") for i in range(3)}
    return [list(conditioning), keep, own_layers, first, last, paste, *(values.get(n, 0.0) for n in slot_names(stub))]


def golden_generator() -> Generator:
    return generator_from_state_dict(load_file(str(DATA / "golden" / "stylegan2_rosinality_small64_weights.safetensors")))


def model_generator() -> Generator:
    """The generator the test model uses (to check latent files against)."""
    if (EMBEDDED / "generator.safetensors").is_file():
        return load_native(EMBEDDED / "generator.safetensors")
    return golden_generator()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(model: Path, log_dir: Path, env: dict[str, str] | None = None):
    """Run ``app.py --weights model`` on a free port; yield its URL, stop it afterwards."""
    port = free_port()
    log = log_dir / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--weights", str(model), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 180
    while "Running on" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start (exit status {proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    yield from launch_app(small_model(tmp_path_factory.mktemp("model")), tmp_path_factory.mktemp("log"))


@pytest.fixture(scope="module")
def client(app):
    return Client(app, verbose=False)


def image(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_every_step_through_the_api(client):
    annotated, picker, aligned = client.predict(handle_file(str(PHOTO)), api_name="/upload")
    assert image(annotated).shape == image(str(PHOTO)).shape  # the photo, boxes drawn on it
    assert [c[1] for c in picker["choices"]] == [0] and picker["value"] == 0
    assert image(aligned).shape[0] == image(aligned).shape[1] >= 64

    shown, recon, scores, table, latent_file = client.predict(api_name="/encode")
    assert image(recon).shape == image(shown).shape
    assert 0 <= scores["lpips"] and "psnr_db" in scores
    assert {"age", "gender", "emotion", "identity_distance", "same_person"} <= scores.keys()
    assert scores["input"]["gender"].startswith("female")  # Eileen Collins
    G = model_generator()
    encoded = load_latent_for(latent_file, G, MODEL)
    assert encoded.space == "wplus" and encoded.latent.shape == (1, G.n_latent, G.style_dim)

    job = client.submit(10, "wplus", False, False, api_name="/optimise")
    updates = list(job)
    assert len(updates) >= 3  # live previews, then the result
    preview, status, optimised_file = job.outputs()[-1]
    assert status.startswith("done: 10 steps"), status
    optimised = load_latent_for(optimised_file, G, MODEL)
    assert not torch.equal(optimised.latent, encoded.latent)

    # The edit moves the face; pasting back gives a photo of the original size.
    before, after, scores, table, edited_file, composite, composite_file, model_before, model_after = client.predict(
        *edit_inputs({"pc0": 3.0}, paste=True), api_name="/edit"
    )
    assert np.abs(image(after).astype(int) - image(before).astype(int)).mean() > 1
    # Before / after at the photo's resolution: the download is the face at its size in the photo
    # (larger than the model's 64 px), the screen shows it at least that large ...
    assert image(after).shape == image(before).shape
    assert 64 < image(edited_file).shape[0] <= image(after).shape[0]
    # ... and the model's own faces beside them.
    assert np.abs(image(model_after).astype(int) - image(model_before).astype(int)).mean() > 1
    assert composite_file["visible"] and image(composite_file["value"]).shape == image(str(PHOTO)).shape
    assert {"age", "gender", "emotion", "identity_distance", "lpips"} <= scores.keys()

    # Conditional editing and a chosen layer range; an empty range is a clear error.
    _, after_fine, *_ = client.predict(*edit_inputs({"pc0": 3.0}, ["pc1"], own_layers=False, first=8), api_name="/edit")
    assert not np.array_equal(image(after_fine), image(after))
    with pytest.raises(AppError, match="empty layer range"):
        client.predict(*edit_inputs({"pc0": 3.0}, own_layers=False, first=6, last=2), api_name="/edit")

    if (EMBEDDED / "generator.safetensors").is_file() and (EMBEDDED / "talk_map.safetensors").is_file():
        import imageio.v2 as imageio

        # The face alone, at the photo's resolution, moved by the AT-net...
        video, video_file = client.predict("Hello there.", "en-us", 160, None, "atnet", False, api_name="/talk")
        assert Path(video_file).read_bytes()[4:8] == b"ftyp"  # an MP4 container
        face_only = imageio.get_reader(video_file, "ffmpeg").get_data(0).shape[:2]
        # ... and by default the whole uploaded photo talks (512 px; the face alone is smaller).
        _, pasted = client.predict("Hello there.", "en-us", 160, None, api_name="/talk")
        assert imageio.get_reader(pasted, "ffmpeg").get_data(0).shape[:2] == image(str(PHOTO)).shape[:2] != face_only
        with pytest.raises(AppError, match="recordings have no phoneme timings"):
            client.predict("", "en-us", 160, handle_file(str(SPEECH)), "phonemes", False, api_name="/talk")
    else:  # the golden stand-in model has no talk map
        with pytest.raises(AppError, match="talk map"):
            client.predict("Hello there.", "en-us", 160, None, api_name="/talk")

    mixed, mixed_file, note = client.predict(None, 3, 0.5, ["coarse"], api_name="/mix")
    assert image(mixed_file).shape[0] > 64  # the mix at the photo's resolution (the face is 108 px there)
    assert "Identity distance to A: " in note and " · to B: " in note


def test_stop_ends_an_optimisation_early(app):
    client = Client(app, verbose=False)
    client.predict(handle_file(str(PHOTO)), api_name="/upload")
    job = client.submit(1000, "w", False, False, api_name="/optimise")
    for _ in job:  # the first preview: it is running
        break
    client.predict(api_name="/stop")
    _, status, latent_file = job.result(timeout=120)
    assert status.startswith("cancelled"), status
    assert load_latent_for(latent_file, model_generator(), MODEL).space == "w"


def test_sessions_are_separate(app, client):
    client.predict(handle_file(str(PHOTO)), api_name="/upload")
    stranger = Client(app, verbose=False)
    with pytest.raises(AppError, match="align a face first"):
        stranger.predict(api_name="/encode")


def test_random_face_then_edit_has_nothing_to_paste_into(app):
    client = Client(app, verbose=False)
    face, latent_file = client.predict(7, api_name="/random_face")
    assert image(face).shape[0] >= 64 and Path(latent_file).is_file()
    with pytest.raises(AppError, match="needs an uploaded photo"):
        client.predict(*edit_inputs({"pc0": 1.0}, paste=True), api_name="/edit")


def test_group_photo_offers_each_face(app, tmp_path):
    astronaut = image(str(PHOTO))
    mona = Image.open(DATA / "faces" / "mona_lisa.jpg").convert("RGB").resize((512, 512))
    group = tmp_path / "group.png"
    Image.fromarray(np.hstack([astronaut, np.asarray(mona)])).save(group)
    client = Client(app, verbose=False)
    _, picker, largest = client.predict(handle_file(str(group)), api_name="/upload")
    assert [c[1] for c in picker["choices"]] == [0, 1] and picker["value"] == 0
    _, picker, second = client.predict(1, api_name="/align")
    assert picker["value"] == 1
    assert np.abs(image(largest).astype(int) - image(second).astype(int)).mean() > 10
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(2, api_name="/align")


def test_a_text_file_is_a_clear_error(client, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(AppError, match="notes.txt is not an image"):
        client.predict(handle_file(str(notes)), api_name="/upload")


# --------------------------------------------------------------------------- happy paths of the other endpoints

TABS = ("encode", "optimise", "edit", "talk", "mix", "create")  # each has a "Start from something else" row


def test_pick_model_shows_the_model(client):
    about, note, conditioning, first, last, *sliders = client.predict(MODEL, api_name="/pick_model")
    assert MODEL in about and "3 edit directions" in about
    assert "Move a slider" in note
    assert [c[1] for c in conditioning["choices"]] == ["pc0", "pc1", "pc2"]
    G = model_generator()
    assert first["value"] == 0 and last["value"] == G.n_latent - 1
    # Every direction has a slider, in its group (principal components: "Discovered"); no slot is left over.
    labels = [s.get("label") for s in sliders if s.get("visible")]
    assert labels == ["pc0", "pc1", "pc2"] and len(sliders) == len(edit_inputs({})) - 6


def test_start_from_a_latent_file_on_every_tab(app, tmp_path):
    """A valid latent file continues on every tab: the face it holds, and the same code handed back."""
    client = Client(app, verbose=False)
    face, latent_file = client.predict(7, api_name="/random_face")
    G = model_generator()
    code = load_latent_for(latent_file, G, MODEL).latent
    for tab in TABS:
        shown, again = client.predict(handle_file(latent_file), api_name=f"/start_from_file_{tab}")
        assert np.array_equal(image(shown), image(face)), tab
        assert torch.equal(load_latent_for(again, G, MODEL).latent, code), tab
    # ... and the face can be edited from there.
    _, after, *_ = client.predict(*edit_inputs({"pc0": 3.0}), api_name="/edit")
    assert np.abs(image(after).astype(int) - image(face).astype(int)).mean() > 1


def test_start_from_a_photo(app):
    client = Client(app, verbose=False)
    shown, latent_file = client.predict(handle_file(str(PHOTO)), api_name="/start_from_file_edit")
    assert image(shown).shape[0] >= 64
    assert load_latent_for(latent_file, model_generator(), MODEL).space == "wplus"  # the encoder's code


def test_random_face_on_every_tab(app):
    client = Client(app, verbose=False)
    first, first_file = client.predict(3, api_name="/random_face")
    G = model_generator()
    for tab in TABS:
        face, latent_file = client.predict(3, api_name=f"/random_face_{tab}")
        assert np.array_equal(image(face), image(first)), tab  # the same seed, the same face
        assert torch.equal(load_latent_for(latent_file, G, MODEL).latent, load_latent_for(first_file, G, MODEL).latent)
