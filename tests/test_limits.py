"""Limits set by environment variables: read where they apply, refused when nonsense, and enforced by
the app (upload size, idle sessions deleted with their files)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_app_api import PHOTO, launch_app, small_model

from pipeline import limits
from pipeline.errors import UserError
from pipeline.latent.inversion import invert
from pipeline.models.generator import Generator, GeneratorConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_limit_is_in_the_readme():
    text = README.read_text()
    for limit in limits.ALL:
        assert f"`{limit.env}`" in text, limit.env


@pytest.mark.parametrize("raw", ["lots", "-1", "0", "inf", "nan"])
def test_a_nonsense_value_is_one_clear_line(monkeypatch, raw):
    monkeypatch.setenv("STUDIO_MAX_STEPS", raw)
    with pytest.raises(UserError, match="STUDIO_MAX_STEPS must be") as info:
        limits.max_steps()
    assert "\n" not in str(info.value)


def test_whole_numbers_where_counts_are_meant(monkeypatch):
    monkeypatch.setenv("STUDIO_CONCURRENT_JOBS", "2.5")
    with pytest.raises(UserError, match="whole number"):
        limits.concurrent_jobs()
    monkeypatch.setenv("STUDIO_CONCURRENT_JOBS", "2")
    assert limits.concurrent_jobs() == 2


def test_optimisation_steps_are_capped(monkeypatch):
    G = Generator(GeneratorConfig(resolution=16, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 32}))
    target = np.full((16, 16, 3), 128, np.uint8)
    monkeypatch.setenv("STUDIO_MAX_STEPS", "3")
    with pytest.raises(UserError, match="over the limit of 3"):
        invert(G, target, steps=4)
    with pytest.raises(UserError, match="over the limit of 3"):
        invert(G, target, steps=2, pti=True)  # tuning steps count too
    torch.manual_seed(0)
    assert invert(G, target, steps=3).steps <= 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with a 0.1 MB upload limit and sessions that expire after 3 idle seconds; its
    temporary files go to a folder of its own, to be counted."""
    tmp = tmp_path_factory.mktemp("tmp")
    env = {"STUDIO_MAX_UPLOAD_MB": "0.1", "STUDIO_SESSION_MINUTES": "0.05", "TMPDIR": str(tmp)}
    for url in launch_app(small_model(tmp_path_factory.mktemp("model")), tmp_path_factory.mktemp("log"), env):
        yield url, tmp


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused(app):
    from gradio_client import Client, handle_file

    url, _ = app
    assert PHOTO.stat().st_size > 0.1 * 2**20
    with pytest.raises(Exception, match=r"(?i)exceed|too large|maximum|size"):
        Client(url, verbose=False).predict(handle_file(str(PHOTO)), api_name="/upload")


@pytest.mark.slow
def test_an_idle_session_is_deleted_with_its_files(app):
    from gradio_client import Client, handle_file

    url, tmp = app
    small = Path(__file__).parent / "data" / "faces" / "mona_lisa.jpg"
    client = Client(url, verbose=False)
    client.predict(handle_file(str(small)), api_name="/upload")
    client.predict(api_name="/encode")  # writes the latent download into the session's folder
    assert len(list(tmp.glob("studio-session-*"))) == 1
    deadline = time.time() + 30
    while list(tmp.glob("studio-session-*")) and time.time() < deadline:
        time.sleep(0.5)
    assert not list(tmp.glob("studio-session-*"))
    # The person simply starts again.
    client.predict(handle_file(str(small)), api_name="/upload")
