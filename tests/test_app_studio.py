"""The studio facade without the web layer: edit maths, layer groups, sessions, and each step
on the test model of ``test_app_api`` (the embedded model's weights, without directions)."""

from __future__ import annotations

import pytest
import torch
from test_app_api import PHOTO, small_model

from pipeline import studio as studio_module
from pipeline.errors import UserError
from pipeline.latent.directions import Direction, layer_groups
from pipeline.latent.edit import apply_edits, orthogonalize
from pipeline.latent.files import load_latent_for
from pipeline.studio import Session, Studio


def unit(v: list[float]) -> torch.Tensor:
    t = torch.tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_layer_groups_cover_every_layer_once():
    for n in (10, 12, 18):
        groups = layer_groups(n)
        rows = [i for lo, hi in groups.values() for i in range(lo, hi)]
        assert rows == list(range(n))
    assert layer_groups(18) == {"coarse": (0, 4), "middle": (4, 8), "fine": (8, 18)}


def test_conditioning_removes_the_kept_component():
    age, smile = unit([1, 1, 0]), unit([0, 1, 0])
    edit = orthogonalize(age, [smile])
    assert abs(float(edit @ smile)) < 1e-6 and abs(float(edit.norm()) - 1) < 1e-6
    with pytest.raises(UserError, match="conditioned on itself"):
        orthogonalize(smile, [smile])


def test_edits_move_only_the_chosen_layers_by_strength_times_scale():
    d = {
        "age": Direction("age", unit([1, 0, 0]), (2, 5), scale=0.5),
        "smile": Direction("smile", unit([0, 1, 0]), (0, 6)),
    }
    w = torch.zeros(1, 6, 3)
    out = apply_edits(w, d, {"age": 2.0})
    assert torch.allclose(out[0, 2:5, 0], torch.ones(3)) and out[0, :2].abs().sum() == 0 and out[0, 5:].abs().sum() == 0
    out = apply_edits(w, d, {"age": 1.0}, layers=(0, 1))
    assert out[0, 0, 0] == 0.5 and out[0, 1:].abs().sum() == 0
    assert torch.equal(apply_edits(w, d, {"age": 0.0}), w)
    with pytest.raises(UserError, match="unknown edit direction"):
        apply_edits(w, d, {"beard": 1.0})
    with pytest.raises(UserError, match="empty layer range"):
        apply_edits(w, d, {"age": 1.0}, layers=(4, 2))


def test_session_close_deletes_its_files():
    session = Session()
    path = session.file("x.png")
    path.write_bytes(b"x")
    folder = session.folder
    assert folder is not None and path.parent == folder
    session.close()
    assert not folder.exists()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    folder = small_model(tmp_path_factory.mktemp("model"), directions=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(studio_module.OVERRIDE_ENV, str(folder))
        studio_module.load_model.cache_clear()
        yield Studio()
        studio_module.load_model.cache_clear()


def test_steps_on_arrays(studio):
    session = studio.new_session()
    faces = studio.open_photo(session, PHOTO)
    assert len(faces) == 1
    aligned = studio.align(session, 0)
    assert aligned.aligned.shape == (64, 64, 3) and aligned.annotated.shape[:2] == (512, 512)
    encoded = studio.encode(session)
    assert encoded.reconstruction.shape == (64, 64, 3) and "identity_distance" in encoded.scores
    seen: list[int] = []
    result = studio.optimise(session, steps=4, callback=lambda step, loss, preview: seen.append(step), preview_every=2)
    assert result.steps == 4 and seen[:3] == [0, 2, 4] and session.origin == "optimised"
    # No directions file: the edit step says so instead of returning an unedited face.
    with pytest.raises(UserError, match="no edit directions yet"):
        studio.edit(session, {})
    composite = studio.paste(session, session.reconstruction)
    assert composite.shape == (512, 512, 3)
    latent = load_latent_for(studio.save_latent(session), studio.model.generator, studio.model.name)
    assert torch.equal(latent.latent, session.latent.latent)
    assert latent.transform["source_size"] == [512, 512]  # enough to paste it back from the command line
    other = studio.other_face(session, seed=5)
    mixed = studio.mix(session, other, 1.0)
    assert mixed.shape == (64, 64, 3)
    assert studio.mix_identity(session, other, mixed)["to_b"] < 0.05  # all the way: face B itself
    assert studio.mix_identity(session, other, studio.mix(session, other, 0.0))["to_a"] < 0.05
    session.close()


def test_a_stop_request_ends_the_stream_with_the_best_code(studio):
    session = studio.new_session()
    studio.open_photo(session, PHOTO)
    studio.align(session, 0)
    events = studio.optimise_stream(session, steps=500, preview_every=1)
    first = next(events)
    assert first.step == 0
    studio.stop(session)
    result = [e for e in events][-1]
    assert result.stopped == "cancelled" and result.steps < 500 and session.latent is not None
    session.close()
