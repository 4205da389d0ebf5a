"""The generator reproduces the reference StyleGAN2 and loads the public checkpoint layout."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.models.checkpoints import config_from_state_dict, generator_from_state_dict, random_state_dict
from pipeline.models.generator import Discriminator, Generator, GeneratorConfig

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="module")
def golden():
    weights = load_file(str(GOLDEN / "stylegan2_rosinality_small64_weights.safetensors"))
    io = load_file(str(GOLDEN / "stylegan2_rosinality_small64_io.safetensors"))
    return generator_from_state_dict(weights), io


def test_golden_config_is_inferred(golden):
    gen, _ = golden
    cfg = gen.config
    assert (cfg.resolution, cfg.style_dim, cfg.n_mlp, cfg.n_latent) == (64, 64, 4, 10)
    assert set(cfg.channels.values()) == {32}


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_golden_outputs(golden, reference):
    gen, io = golden
    trunc_latent = io["trunc_latent"] if "trunc_latent" in io else gen.mean_w()
    with torch.no_grad():
        w = gen.mapping(io["z"])
        assert (w - io["w"]).abs().max() < 1e-4
        cases = {
            "img_z": gen([io["z"]], randomize_noise=False, reference=reference)[0],
            "img_w": gen([io["w"]], input_is_latent=True, randomize_noise=False, reference=reference)[0],
            "img_trunc07": gen(
                [io["z"]], truncation=0.7, truncation_latent=trunc_latent, randomize_noise=False, reference=reference
            )[0],
            "img_mix3": gen([io["z"], io["z2"]], inject_index=3, randomize_noise=False, reference=reference)[0],
            "img_wplus": gen([io["wplus"]], input_is_latent=True, randomize_noise=False, reference=reference)[0],
        }
    for name, out in cases.items():
        err = (out - io[name]).abs().max().item()
        assert err <= 1e-4, f"{name}: max abs error {err}"


def test_ffhq_1024_manifest_loads_strictly():
    manifest = json.loads((GOLDEN / "stylegan2_ffhq_config_f_1024_g_ema_manifest.json").read_text())
    shapes = manifest["state_dict_shapes"]
    state = random_state_dict(shapes)
    cfg = config_from_state_dict(state)
    assert cfg == GeneratorConfig.rosinality(1024, 512, 8, 2)
    gen = Generator(cfg)
    own = {k: list(v.shape) for k, v in gen.state_dict().items()}
    assert own == shapes  # every key, every shape
    gen.load_state_dict(state, strict=True)
    assert sum(v.numel() for v in state.values()) == sum(v.numel() for v in gen.state_dict().values())


def test_noise_modes_and_batching(golden):
    gen, io = golden
    z = io["z"][:1].repeat(2, 1)
    with torch.no_grad():
        stored = gen([z], randomize_noise=False)[0]
        fresh = gen([z])[0]
        given = gen([z], noise=gen.make_noise(2, seed=3))[0]
        given2 = gen([z], noise=gen.make_noise(2, seed=3))[0]
    assert torch.equal(stored[0], stored[1])  # same latent + stored noise -> same image
    assert not torch.allclose(fresh[0], fresh[1])  # fresh noise differs per sample
    assert torch.equal(given, given2)


def test_discriminator_shapes_and_gradients():
    d = Discriminator(32, {4: 16, 8: 16, 16: 16, 32: 16})
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    out = d(x)
    assert out.shape == (4, 1)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mirrored_and_read_only_faces_convert_to_tensors():
    import numpy as np

    from pipeline.models.render import from_uint8

    faces = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    faces.setflags(write=False)
    mirrored = faces[:, :, ::-1]  # the training loops' flip: a view with a negative stride
    assert torch.equal(from_uint8(mirrored), from_uint8(faces).flip(-1))
    assert from_uint8(faces[0]).shape == (3, 8, 8) and from_uint8(faces).min() >= -1
