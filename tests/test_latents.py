"""Latent files: round trip and every refusal."""

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import UserError
from pipeline.latent.files import Latent, load_latent, load_latent_for, save_latent
from pipeline.models.generator import Generator, GeneratorConfig

TINY = GeneratorConfig(resolution=16, style_dim=8, n_mlp=1, channels={4: 8, 8: 8, 16: 8})


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return Generator(TINY).eval()


def test_round_trip_wplus_with_noise(tmp_path, gen):
    wplus = torch.randn(1, gen.n_latent, gen.style_dim)
    noise = gen.make_noise(1, seed=1)
    path = save_latent(tmp_path / "face.safetensors", Latent(wplus, "tiny", "wplus", "ffhq", noise))
    back = load_latent_for(path, gen, "tiny")
    assert back.model == "tiny" and back.space == "wplus" and back.alignment == "ffhq"
    assert torch.equal(back.latent, wplus)
    assert len(back.noise) == len(noise) and all(torch.equal(a, b) for a, b in zip(back.noise, noise))
    assert torch.equal(back.wplus(gen.n_latent), wplus)


def test_round_trip_w_expands_to_equal_layers(tmp_path, gen):
    w = torch.randn(2, gen.style_dim)
    back = load_latent_for(save_latent(tmp_path / "w.safetensors", Latent(w, "tiny", "w")), gen, "tiny")
    assert back.space == "w" and back.noise is None
    wplus = back.wplus(gen.n_latent)
    assert wplus.shape == (2, gen.n_latent, gen.style_dim) and torch.equal(wplus[:, 3], w)


def test_wrong_model_is_refused(tmp_path, gen):
    path = save_latent(tmp_path / "a.safetensors", Latent(torch.randn(1, gen.n_latent, gen.style_dim), "tiny"))
    with pytest.raises(UserError, match="made for model 'tiny'"):
        load_latent_for(path, gen, "ffhq-1024")


@pytest.mark.parametrize(
    "shape, message",
    [((1, 3, 8), "has 3 layers"), ((1, 6, 5), "width 5"), ((6, 8, 1, 1), "has shape")],
)
def test_wrong_shape_is_refused(tmp_path, gen, shape, message):
    path = tmp_path / "bad.safetensors"
    bad = torch.randn(*shape)
    meta = {"format": "face-studio-latent", "version": "1", "model": "tiny", "space": "wplus", "shape": str(list(shape))}
    save_file({"latent": bad}, str(path), metadata=meta)
    with pytest.raises(UserError, match=message):
        load_latent_for(path, gen, "tiny")


def test_wrong_dtype_and_non_finite_are_refused(tmp_path, gen):
    meta = {"format": "face-studio-latent", "version": "1", "model": "tiny", "space": "w", "shape": "[1, 8]"}
    save_file({"latent": torch.randn(1, 8, dtype=torch.float64)}, str(tmp_path / "f64.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="float32"):
        load_latent_for(tmp_path / "f64.safetensors", gen, "tiny")
    with pytest.raises(UserError, match="NaN"):
        save_latent(tmp_path / "nan.safetensors", Latent(torch.full((1, 8), float("nan")), "tiny", "w"))
    save_file({"latent": torch.tensor([[float("inf")] * 8])}, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="NaN or infinite"):
        load_latent_for(tmp_path / "inf.safetensors", gen, "tiny")


def test_wrong_noise_maps_are_refused(tmp_path, gen):
    noise = gen.make_noise(1)
    noise[2] = torch.randn(1, 1, 3, 3)
    path = save_latent(tmp_path / "n.safetensors", Latent(torch.randn(1, gen.n_latent, 8), "tiny", noise=noise))
    with pytest.raises(UserError, match="noise map 2"):
        load_latent_for(path, gen, "tiny")
    path = save_latent(tmp_path / "n2.safetensors", Latent(torch.randn(1, gen.n_latent, 8), "tiny", noise=noise[:2]))
    with pytest.raises(UserError, match="2 noise maps"):
        load_latent_for(path, gen, "tiny")


def test_other_files_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x89PNG not a tensor file")
    with pytest.raises(UserError, match="not a latent file"):
        load_latent(junk)
    other = tmp_path / "weights.safetensors"
    save_file({"latent": torch.zeros(1, 8)}, str(other), metadata={"format": "stylegan2-rosinality-keys"})
    with pytest.raises(UserError, match="not a latent file"):
        load_latent(other)
    with pytest.raises(UserError, match="not found"):
        load_latent(tmp_path / "missing.safetensors")
    meta = {"format": "face-studio-latent", "version": "1", "model": "tiny", "space": "z", "shape": "[1, 8]"}
    save_file({"latent": torch.zeros(1, 8)}, str(tmp_path / "z.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="unknown latent space"):
        load_latent(tmp_path / "z.safetensors")
