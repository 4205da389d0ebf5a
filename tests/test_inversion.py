"""Inversion on a tiny random generator: it optimises, reports, stops, and never touches the generator."""

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.errors import UserError
from pipeline.latent.inversion import BASELINE, DEFAULTS, invert, learning_rate, noise_regularization
from pipeline.models.encoder import Encoder, EncoderConfig
from pipeline.models.generator import Generator, GeneratorConfig
from pipeline.models.render import to_uint8

TINY = GeneratorConfig(resolution=32, style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16})
# SqueezeNet at the images' own 32 px keeps each step to milliseconds.
FAST = replace(DEFAULTS, perceptual_resize=None, mean_w_samples=1000, patience=0)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return Generator(TINY).eval()


@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(1)
    return Encoder(EncoderConfig(32, 32, TINY.n_latent, channels=[16, 16, 16], hidden=64)).eval()


@pytest.fixture(scope="module")
def target(gen):
    with torch.no_grad():
        return gen([torch.randn(1, 32, generator=torch.Generator().manual_seed(5))], randomize_noise=False)[0]


def test_invert_reduces_the_loss(gen, enc, target):
    result = invert(gen, target, enc, steps=40, settings=FAST)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < 0.6 * first
    assert result.wplus.shape == (1, gen.n_latent, gen.style_dim) and result.image.shape == target.shape
    assert result.steps == 40 and result.stopped == "done" and result.generator is None and result.noise is None
    with torch.no_grad():  # the start is the encoder's guess
        assert torch.allclose(result.start_image, gen.synthesis(enc.wplus(target.clamp(-1, 1)), noise=gen.noise_buffers()), atol=1e-5)
    assert all(p.grad is None for p in gen.parameters())


def test_w_space_keeps_layers_equal_and_uint8_input_works(gen, target):
    result = invert(gen, to_uint8(target)[0], None, steps=15, space="w", settings=FAST)
    assert result.space == "w"
    assert torch.equal(result.wplus, result.wplus[:, :1].expand_as(result.wplus))
    assert result.latent("tiny").latent.shape == (1, gen.style_dim)


def test_callback_gets_previews_and_can_stop(gen, target):
    calls = []
    invert(gen, target, steps=12, settings=FAST, preview_every=5, callback=lambda s, loss, img: calls.append((s, loss, img)))
    assert [c[0] for c in calls] == [0, 5, 10, 12]  # every 5 steps, then the final result
    for _, loss, img in calls:
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and math.isfinite(loss)
    stopped = invert(gen, target, steps=50, settings=FAST, preview_every=1, callback=lambda s, loss, img: s >= 3)
    assert stopped.steps == 4 and stopped.stopped == "cancelled"


def test_cancel_event_stops_early(gen, target):
    cancel = threading.Event()

    def progress(step, loss, image):
        if step == 2:
            cancel.set()

    result = invert(gen, target, steps=100, settings=FAST, preview_every=1, callback=progress, cancel=cancel)
    assert result.stopped == "cancelled" and result.steps == 3
    assert torch.isfinite(result.image).all()


def test_patience_stops_when_the_loss_stalls(gen, target):
    result = invert(gen, target, steps=200, settings=replace(FAST, lr=0.0, patience=5))
    assert result.stopped == "converged" and result.steps == 6


def test_noise_optimisation_keeps_noise_normalised(gen, target):
    result = invert(gen, target, steps=10, optimize_noise=True, settings=FAST)
    assert len(result.noise) == len(gen.noise_buffers())
    for n, b in zip(result.noise, gen.noise_buffers()):
        assert n.shape == b.shape
        assert abs(float(n.mean())) < 1e-4 and abs(float(n.square().mean()) - 1) < 1e-3


def test_pti_tunes_a_copy_and_leaves_g_untouched(gen, target):
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    settings = replace(FAST, pti_steps=25, pti_lr=3e-3)
    plain = invert(gen, target, steps=10, settings=settings)
    tuned = invert(gen, target, steps=10, pti=True, settings=settings)
    assert tuned.generator is not None and tuned.generator is not gen and tuned.pti_steps == 25
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    changed = [k for k, v in tuned.generator.state_dict().items() if not torch.equal(before[k], v)]
    assert changed and not any(k.startswith("style.") for k in changed)  # synthesis tuned, mapping kept
    assert tuned.history[-1]["loss"] < 0.9 * plain.history[-1]["loss"]
    with torch.no_grad():  # the result image is the tuned generator's rendering of the pivot
        again = tuned.generator.synthesis(tuned.wplus, noise=gen.noise_buffers())
    assert torch.allclose(again, tuned.image, atol=1e-5)


def test_baseline_follows_the_published_schedule(gen, target):
    assert (BASELINE.steps, BASELINE.space, BASELINE.init, BASELINE.lr) == (1000, "w", "mean", 0.1)
    assert (BASELINE.lr_rampup, BASELINE.lr_rampdown, BASELINE.latent_noise, BASELINE.latent_noise_ramp) == (
        0.05, 0.25, 0.05, 0.75)  # fmt: skip
    assert BASELINE.optimize_noise and BASELINE.noise_reg == 1e5 and BASELINE.mse == 0
    assert learning_rate(0, 1000, 0.1, 0.05, 0.25) == 0
    assert learning_rate(50, 1000, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert learning_rate(500, 1000, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert learning_rate(875, 1000, 0.1, 0.05, 0.25) == pytest.approx(0.05)  # half-way down the cosine
    assert learning_rate(999, 1000, 0.1, 0.05, 0.25) < 1e-5

    fast_baseline = replace(BASELINE, perceptual_resize=None, mean_w_samples=1000)
    result = invert(gen, target, steps=40, settings=fast_baseline)
    lrs = [h["lr"] for h in result.history if "lr" in h]
    assert len(lrs) == 40 and lrs[0] == 0 and lrs[2] == pytest.approx(0.1) and lrs[-1] < 0.003
    assert result.space == "w" and result.noise is not None and result.steps == 40
    assert torch.equal(result.wplus, result.wplus[:, :1].expand_as(result.wplus))
    start = invert(gen, target, steps=0, settings=fast_baseline)  # the mean-W start
    assert torch.allclose(start.wplus, gen.mean_w(1000)[:, None].expand(1, gen.n_latent, -1), atol=1e-6)


def test_noise_regularisation_penalises_correlated_noise():
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn(1, 1, 32, 32, generator=gen)]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 16, 16, generator=gen), scale_factor=2)]
    assert noise_regularization(smooth) > 10 * noise_regularization(white)


def test_bad_images_are_refused(gen):
    with pytest.raises(UserError, match="align"):
        invert(gen, np.zeros((40, 32, 3), np.uint8), steps=1, settings=FAST)
    with pytest.raises(UserError, match="uint8"):
        invert(gen, np.zeros((32, 32, 3), np.float32), steps=1, settings=FAST)
    with pytest.raises(UserError, match="space"):
        invert(gen, np.zeros((32, 32, 3), np.uint8), steps=1, space="z", settings=FAST)


def _rescaled_w(gen: Generator, factor: float) -> Generator:
    """The same generator with W in other units: mapping outputs times ``factor``, styles divided by it."""
    import copy

    other = copy.deepcopy(gen)
    last = other.style[-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)
        for name, p in other.named_parameters():
            if name.endswith("modulation.weight"):
                p.div_(factor)
    return other


def test_the_latent_step_size_follows_w_spread_not_w_units(gen, target):
    """A model whose W has ten times the spread is inverted the same way (the embedded model's W grew
    11-fold in spread with training, and a step size fixed in W's units slowed its inversion)."""
    wide = _rescaled_w(gen, 10.0)
    with torch.no_grad():
        w = gen.mean_w(1000)[:, None].expand(1, gen.n_latent, -1)
        assert torch.allclose(wide.synthesis(w * 10, randomize_noise=False), gen.synthesis(w, randomize_noise=False), atol=1e-4)
    def last_lpips(g: Generator, settings) -> float:
        return [h["lpips"] for h in invert(g, target, steps=15, settings=settings).history if "lpips" in h][-1]

    mean_start = replace(FAST, init="mean")
    lpips = [last_lpips(g, mean_start) for g in (gen, wide)]
    assert lpips[1] == pytest.approx(lpips[0], rel=0.02)
    absolute = replace(mean_start, lr=0.03, lr_unit="absolute")
    lpips = [last_lpips(g, absolute) for g in (gen, wide)]
    assert lpips[1] > lpips[0] * 1.5  # the same absolute steps cover a tenth of the wider W


def test_a_grown_refiner_starts_as_its_encoder_and_learns_to_correct_it(gen, enc):
    from pipeline.models.encoder import IterativeEncoder, refiner_from

    torch.manual_seed(2)
    with torch.no_grad():  # faces the generator draws, so a perfect code exists
        faces = gen([torch.randn(4, 32)], randomize_noise=False)[0].clamp(-1, 1)
    iterative = IterativeEncoder(enc, refiner_from(enc), gen, steps=2).eval()
    with torch.no_grad():
        w0, offsets0 = enc(faces)
        w1, offsets1 = iterative(faces)
    assert torch.equal(w0, w1) and torch.equal(offsets0, offsets1)  # corrects nothing at first

    def error() -> float:
        with torch.no_grad():
            return float((gen.synthesis(iterative.wplus(faces), noise=gen.noise_buffers()) - faces).abs().mean())

    before = error()
    opt = torch.optim.Adam(iterative.refiner.parameters(), lr=1e-3)
    iterative.train()
    for _ in range(40):
        loss = (gen.synthesis(iterative.wplus(faces), noise=gen.noise_buffers()) - faces).abs().mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in enc.parameters())  # the encoder is kept as it is
        opt.step()
    iterative.eval()
    assert error() < 0.8 * before
