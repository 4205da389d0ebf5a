"""The random-face prior: fitted to encoded faces, sampled with truncation towards the nearest mode,
shipped beside a model and used wherever the studio and the commands make random faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_app_api import small_model

from pipeline import studio as studio_module
from pipeline.bench.evaluate import generate
from pipeline.cli import main
from pipeline.errors import UserError
from pipeline.latent.prior import load_prior, sample_wplus
from pipeline.models.checkpoints import load_native
from pipeline.studio import Studio
from pipeline.training.prior_fit import FACES_PER_COMPONENT, fit_prior

DATA = Path(__file__).parent / "data"


def two_kinds_of_faces(n: int = 400, n_latent: int = 4, dim: int = 8, gap: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Codes in two clusters along one axis (like children and adults), and that axis."""
    rng = np.random.default_rng(0)
    axis = np.zeros((n_latent, dim))
    axis[:, 0] = 1 / np.sqrt(n_latent)
    side = rng.choice([-1.0, 1.0], n)
    codes = rng.normal(size=(n, n_latent, dim)) * 0.5 + side[:, None, None] * gap / 2 * axis
    return codes, axis


def along(codes: torch.Tensor | np.ndarray, axis: np.ndarray) -> np.ndarray:
    return np.asarray(codes).reshape(len(codes), -1) @ axis.ravel()


def test_samples_keep_the_datas_modes_where_one_gaussian_fills_the_gap():
    codes, axis = two_kinds_of_faces()
    prior = fit_prior(codes, components=2, dims=16)
    samples = along(prior.sample(2000, seed=1), axis)
    # A single Gaussian with the data's variance puts ~40% of samples in the empty middle.
    assert np.mean(np.abs(samples) < 1.5) < 0.05
    assert 0.4 < np.mean(samples > 0) < 0.6  # both kinds, in the data's proportions
    # Truncation pulls each face towards its own mode, not towards the empty average.
    truncated = along(prior.sample(2000, seed=1, truncation=0.0), axis)
    assert np.allclose(np.sort(np.unique(truncated.round(1))), [-3.0, 3.0], atol=0.2)


def test_a_prior_round_trips_and_the_same_seed_gives_the_same_face(tmp_path):
    codes, _ = two_kinds_of_faces()
    prior = fit_prior(codes, components=2, dims=16)
    loaded = load_prior(prior.save(tmp_path / "prior.safetensors"), _shape_only(4, 8))
    assert loaded.info["faces"] == 400 and loaded.components == 2
    assert torch.equal(loaded.sample(3, seed=5), prior.sample(3, seed=5))
    assert not torch.equal(loaded.sample(3, seed=5), loaded.sample(3, seed=6))


def test_a_prior_for_another_generator_or_a_foreign_file_is_refused(tmp_path):
    codes, _ = two_kinds_of_faces()
    path = fit_prior(codes, components=2, dims=16).save(tmp_path / "prior.safetensors")
    with pytest.raises(UserError, match="fitted for codes of 4 x 8"):
        load_prior(path, _shape_only(10, 8))
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not a prior")
    with pytest.raises(UserError, match="not a prior file"):
        load_prior(other, _shape_only(4, 8))


def test_too_few_faces_for_the_components_is_a_clear_error():
    codes, _ = two_kinds_of_faces(n=12)
    with pytest.raises(UserError, match="too few"):
        fit_prior(codes, components=16)


def test_train_prior_ships_beside_the_model_and_random_faces_come_from_it(tmp_path, capsys):
    folder = small_model(tmp_path, directions=False)
    (folder / "prior.safetensors").unlink(missing_ok=True)
    faces = sorted(p.name for p in (DATA / "utkface_mini").iterdir())
    (folder / "heldout.txt").write_text("\n".join(faces[:3]) + "\n")  # the rest are its training faces
    # No --components: the default gives few faces fewer components, one per FACES_PER_COMPONENT.
    assert main(["train", "prior", "--weights", str(folder), "--data", str(DATA / "utkface_mini"), "--n", "20"]) == 0
    assert (folder / "prior.safetensors").is_file() and '"faces": ' in capsys.readouterr().out
    G = load_native(folder / "generator.safetensors")
    prior = load_prior(folder / "prior.safetensors", G)
    assert prior.components == prior.info["faces"] // FACES_PER_COMPONENT > 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(studio_module.OVERRIDE_ENV, str(folder))
        studio_module.load_model.cache_clear()
        try:
            studio = Studio()
            assert studio.model.prior is not None
            latent = studio.random_latent(studio.model, 7)
            again = studio.random_latent(studio.model, 7)
            session = studio.new_session()
            face = studio.random_face(session, seed=7)
        finally:
            studio_module.load_model.cache_clear()
    assert latent.space == "wplus" and torch.equal(latent.latent, again.latent)
    assert torch.allclose(latent.latent, sample_wplus(G, 1, 7, 0.7, prior))  # the shown face is the prior's
    assert face.shape == (G.config.resolution, G.config.resolution, 3) and face.std() > 10  # a face, not a flat image
    # bench generator draws its samples the same way
    assert generate(G, 2, 0.7, seed=7, prior=prior).shape == (2, G.config.resolution, G.config.resolution, 3)


def test_train_prior_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "prior", "--data", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err.strip()
    assert "training data folder not found" in err and len(err.splitlines()) == 1
    assert main(["train", "prior", "--data", str(DATA / "utkface_mini"), "--n", "0"]) != 0
    assert "--n must be a positive" in capsys.readouterr().err


def _shape_only(n_latent: int, style_dim: int):
    """What ``load_prior`` checks a prior against: the generator's code shape."""
    return type("Shape", (), {"n_latent": n_latent, "style_dim": style_dim})()
