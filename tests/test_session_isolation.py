"""One person's choices stay in their session: nothing they do changes what another person gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import studio as studio_module
from pipeline.studio import Studio

EMBEDDED = Path(__file__).resolve().parents[1] / "weights" / "utkface-64" / "generator.safetensors"


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    """The registry with a second model (the embedded weights under another name)."""
    if not EMBEDDED.is_file():
        pytest.skip("the embedded model's weights are not in this checkout")
    extra = tmp_path / "extra.toml"
    extra.write_text(f'[models.copy-64]\ntitle = "copy"\nformat = "native"\nresolution = 64\nalignment = "utkface"\npath = "{EMBEDDED}"\n')
    monkeypatch.setenv("STUDIO_MODELS", str(extra))
    monkeypatch.delenv(studio_module.OVERRIDE_ENV, raising=False)
    studio_module.load_model.cache_clear()
    yield
    studio_module.load_model.cache_clear()


def test_one_persons_model_choice_is_theirs_alone(two_models):
    studio = Studio()
    first, other = studio.new_session(), studio.new_session()
    default = first.model
    assert studio.use_model(first, "copy-64").name == "copy-64" and first.model == "copy-64"
    assert studio.session_model(other).name == default  # someone already working
    assert studio.new_session().model == default  # and someone arriving afterwards


def test_closing_a_session_leaves_the_others_files():
    first, other = studio_module.Session(), studio_module.Session()
    mine, theirs = first.file("edited.png"), other.file("edited.png")
    mine.write_bytes(b"x")
    theirs.write_bytes(b"y")
    assert mine.parent != theirs.parent
    first.close()
    assert not mine.exists() and theirs.read_bytes() == b"y"
    other.close()
