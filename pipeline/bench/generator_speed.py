"""Generator speed on this machine: our fast path against the straightforward StyleGAN2 path.

Both paths share the weights (``reference=True`` switches to per-sample weight modulation
with grouped convolutions and a generic ``upfirdn2d``, the textbook formulation), so the
ratios are measured side by side in one run, on the same inputs, with the outputs compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..models.generator import Discriminator, Generator, GeneratorConfig

# The embedded model's layout at 64 px; the same widths continued for 256 px.
CONFIGS = {
    64: GeneratorConfig(resolution=64, style_dim=256, n_mlp=4, channels={4: 256, 8: 256, 16: 128, 32: 64, 64: 32}),
    256: GeneratorConfig(
        resolution=256, style_dim=256, n_mlp=4, channels={4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 32, 256: 16}
    ),
}
# The straightforward path's training step at 64 px with 128 base channels.
TRAIN_CONFIG = GeneratorConfig(
    resolution=64, style_dim=256, n_mlp=4, channels={4: 128, 8: 128, 16: 128, 32: 128, 64: 64}
)


def _seconds(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``fn``. CPU time is what a busy machine
    does not distort, so the ratios are reported on both."""
    fn()  # warm-up: allocator, one-time kernels
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _record(result: dict, name: str, images: int, seconds: tuple[float, float]) -> None:
    wall, cpu = seconds
    result[f"{name}_images_per_second"] = round(images / wall, 2)
    result[f"{name}_cpu_seconds_per_image"] = round(cpu / images, 4)


def _ratios(result: dict) -> None:
    result["speedup"] = round(result["ours_images_per_second"] / result["reference_images_per_second"], 2)
    result["speedup_cpu_time"] = round(
        result["reference_cpu_seconds_per_image"] / result["ours_cpu_seconds_per_image"], 2
    )


def forward_speed(config: GeneratorConfig, batch: int, repeats: int = 3, seed: int = 0) -> dict:
    """Images per second of ``synthesis`` for both paths, and the largest output difference."""
    torch.manual_seed(seed)
    G = Generator(config).eval()
    wplus = G.to_wplus([torch.randn(batch, config.style_dim)])
    noise = G.make_noise(batch, seed=seed)
    result = {"resolution": config.resolution, "batch": batch}
    outputs = {}
    with torch.no_grad():
        for name, reference in (("ours", False), ("reference", True)):

            def run(reference=reference, name=name) -> None:
                outputs[name] = G.synthesis(wplus, noise=noise, reference=reference)

            _record(result, name, batch, _seconds(run, repeats))
    _ratios(result)
    result["max_abs_difference"] = float((outputs["ours"] - outputs["reference"]).abs().max())
    return result


def train_step_speed(config: GeneratorConfig, batch: int, repeats: int = 3, seed: int = 0) -> dict:
    """Images per second of one non-saturating GAN step (G step + D step, with gradients)."""
    torch.manual_seed(seed)
    G = Generator(config)
    D = Discriminator(config.resolution, config.channels)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4)
    real = torch.rand(batch, 3, config.resolution, config.resolution) * 2 - 1
    result = {
        "resolution": config.resolution,
        "batch": batch,
        "channels": {str(k): v for k, v in config.channels.items()},
    }
    for name, reference in (("ours", False), ("reference", True)):

        def step(reference=reference) -> None:
            z = torch.randn(batch, config.style_dim)
            fake = G([z], reference=reference)[0]
            loss_d = F.softplus(D(fake.detach(), reference)).mean() + F.softplus(-D(real, reference)).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-D(fake, reference)).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

        _record(result, name, batch, _seconds(step, repeats))
    _ratios(result)
    return result


def generator_speed(batch: int = 8, train_batch: int = 16, repeats: int = 3, threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    return {
        "threads": torch.get_num_threads(),
        "forward": [forward_speed(config, batch, repeats) for config in CONFIGS.values()],
        "train_step": train_step_speed(TRAIN_CONFIG, train_batch, repeats),
    }
