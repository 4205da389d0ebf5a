"""GAN inversion: find the latent code (and optionally noise / a tuned generator) of a face.

Two recipes share one optimisation loop:

* ours (:data:`DEFAULTS`): start from the encoder's W+ guess, optimise W+ with a
  perceptual distance plus pixel MSE, a short ramp-up and cosine decay of the
  learning rate, and stop as soon as the loss stops improving;
* the reference (:data:`BASELINE`): the StyleGAN2-ADA projector's published
  defaults (mean W start, W space, 1,000 steps, lr 0.1 with 5% ramp-up and 25%
  cosine ramp-down, decaying latent noise, optimised noise maps with the
  multi-scale autocorrelation penalty), with our SqueezeNet distance in place of VGG16.

Optionally, pivotal tuning (PTI, Roich et al. 2021) fine-tunes a copy of the
generator around the found code so that fine detail is reproduced, while a
locality term keeps the copy's outputs unchanged for codes around the pivot (so
edits still behave). The caller's generator is never modified.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import limits
from ..errors import UserError
from ..models.encoder import Encoder
from ..models.generator import Generator
from ..models.perceptual import perceptual_distance
from ..models.render import from_uint8, to_uint8
from .files import Latent, Space

# callback(step, loss, preview (H, W, 3) uint8) -> True to stop.
ProgressCallback = Callable[[int, float, np.ndarray], "bool | None"]


class CancelToken(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class InversionSettings:
    steps: int = 100
    space: Space = "wplus"
    init: Literal["encoder", "mean"] = "encoder"  # mean W when no encoder is given either way
    # The latent's step size. "w_spread": in units of W's spread per axis, so one setting suits
    # every generator (the embedded model's W grew 11-fold in spread between its 127.6k- and 321k-image
    # weights, and an absolute 0.03 went from 0.11 to 0.01 of it); "absolute": in W's own units.
    lr: float = 0.03
    lr_unit: Literal["w_spread", "absolute"] = "w_spread"
    noise_lr: float | None = 0.03  # the noise maps' step size (unit variance); None: the latent's
    lr_rampup: float = 0.05  # fraction of the steps spent ramping the lr up (linearly)
    lr_rampdown: float = 0.25  # fraction spent ramping it down (cosine)
    perceptual: float = 1.0  # weight of the perceptual distance
    perceptual_calibrated: bool = True  # LPIPS linear weights, or equal channel weights
    perceptual_resize: int | None = 128  # images are resized to this before SqueezeNet
    mse: float = 1.0  # weight of the pixel MSE (images in [-1, 1])
    wplus_reg: float = 0.0  # pulls the W+ layers towards their mean (editability)
    latent_noise: float = 0.0  # initial std of noise added to W, in units of W's spread
    latent_noise_ramp: float = 0.75  # fraction of the steps over which it decays to 0
    optimize_noise: bool = False
    noise_reg: float = 1e5  # weight of the noise maps' autocorrelation penalty
    mean_w_samples: int = 10_000
    patience: int = 20  # stop after this many steps without a better loss (0: never)
    min_improvement: float = 1e-3  # relative decrease that counts as better
    keep_best: bool = True  # return the best code seen, not the last
    # Pivotal tuning
    pti_steps: int = 60
    pti_lr: float = 3e-4
    pti_perceptual: float = 1.0
    pti_mse: float = 1.0
    pti_locality: float = 0.1  # weight of the locality regulariser
    pti_radius: float = 0.5  # locality samples' distance from the pivot, in units of W's spread
    pti_stop_lpips: float = 0.0  # stop tuning once the perceptual distance is below this


DEFAULTS = InversionSettings()

# StyleGAN2-ADA projector (projector.py) defaults, VGG16 replaced by our SqueezeNet LPIPS.
BASELINE = InversionSettings(
    steps=1000,
    space="w",
    init="mean",
    lr=0.1,
    lr_unit="absolute",
    noise_lr=None,
    lr_rampup=0.05,
    lr_rampdown=0.25,
    perceptual=1.0,
    mse=0.0,
    latent_noise=0.05,
    latent_noise_ramp=0.75,
    optimize_noise=True,
    noise_reg=1e5,
    patience=0,
    keep_best=False,
)


@dataclass
class InversionResult:
    wplus: torch.Tensor  # (1, n_latent, style_dim)
    noise: list[torch.Tensor] | None  # optimised noise maps, None: the generator's own
    image: torch.Tensor  # (1, 3, H, W) in [-1, 1]: the reconstruction (by the tuned generator with PTI)
    start_image: torch.Tensor  # (1, 3, H, W): the starting guess (encoder or mean W)
    generator: Generator | None  # the PTI-tuned copy, or None
    space: Space
    steps: int  # latent optimisation steps run
    pti_steps: int
    seconds: float  # wall time, without the callback's
    cpu_seconds: float
    stopped: Literal["done", "converged", "cancelled"]
    history: list[dict[str, float]] = field(default_factory=list)

    def latent(self, model: str, alignment: str = "unknown") -> Latent:
        code = self.wplus[:, 0] if self.space == "w" else self.wplus
        return Latent(latent=code.detach().clone(), model=model, space=self.space, alignment=alignment, noise=self.noise)


# --------------------------------------------------------------------------- pieces


def learning_rate(step: int, steps: int, lr: float, rampup: float, rampdown: float) -> float:
    """The StyleGAN2 projector's schedule: linear ramp-up, cosine ramp-down."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return lr * ramp


def noise_regularization(noise: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map at one-pixel shifts, over a pyramid down to 8x8.

    Keeps the optimiser from hiding image content in the noise inputs.
    """
    reg = noise[0].new_zeros(())
    for n in noise:
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean().square()
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean().square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


@torch.no_grad()
def normalize_noise(noise: list[torch.Tensor]) -> None:
    """Back to zero mean, unit variance after each step (as the projector does)."""
    for n in noise:
        n.sub_(n.mean())
        n.mul_(n.square().mean().rsqrt())


@torch.no_grad()
def w_prior(G: Generator, n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Mean W (1, dim) and the RMS distance of W samples from it (the projector's ``w_std``)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.style_dim, generator=gen).to(G.device)
    w = torch.cat([G.mapping(chunk) for chunk in z.split(2048)])
    mean = w.mean(0, keepdim=True)
    return mean, float((w - mean).square().sum(1).mean().sqrt())


def prepare_target(image: torch.Tensor | np.ndarray | Image.Image, resolution: int) -> torch.Tensor:
    """An aligned face as (1, 3, res, res) in [-1, 1]: uint8 HWC array/PIL image or float NCHW tensor."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise UserError(f"image arrays must be uint8, got {image.dtype}")
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise UserError(f"expected an (H, W, 3) image, got shape {image.shape}")
        image = image[..., :3]
        if image.shape[0] != image.shape[1]:
            raise UserError(f"image is {image.shape[1]}x{image.shape[0]}: align the face first (aligned faces are square)")
        if image.shape[0] != resolution:
            image = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.Resampling.LANCZOS))
        return from_uint8(np.array(image))[None]  # a writable copy: torch warns on read-only arrays
    if not isinstance(image, torch.Tensor):
        raise UserError(f"unsupported image type {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise UserError(f"expected an image tensor of shape (1, 3, H, W), got {tuple(image.shape)}")
    if image.shape[2] != image.shape[3]:
        raise UserError("image is not square: align the face first")
    image = image.detach().float()
    if image.shape[-1] != resolution:
        image = F.interpolate(image, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return image.clamp(-1, 1)


class _Loss:
    """Perceptual distance to a fixed target (its features computed once) + pixel MSE."""

    def __init__(self, target: torch.Tensor, perceptual: float, mse: float, calibrated: bool, resize: int | None):
        self.net = perceptual_distance(calibrated, resize)
        self.target, self.perceptual_weight, self.mse_weight = target, perceptual, mse
        with torch.no_grad():
            self.target_feats = self.net.raw_features(target)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lp = self.net.distance_from_features(self.net.raw_features(image), self.target_feats).mean()
        mse = (image - self.target).square().mean()
        return self.perceptual_weight * lp + self.mse_weight * mse, lp, mse


class _Progress:
    """Calls the user's callback every ``every`` steps, checks for cancellation, keeps time.

    Time spent in the callback is excluded from the reported timings. CPU time is kept
    beside wall time: on a shared machine it is the steadier measure of the work done.
    """

    def __init__(self, callback: ProgressCallback | None, cancel: CancelToken | None, every: int):
        self.callback, self.cancel, self.every = callback, cancel, max(1, every)
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.callback_wall = self.callback_cpu = 0.0

    def elapsed(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall0 - self.callback_wall,
                "cpu_seconds": time.process_time() - self.cpu0 - self.callback_cpu}  # fmt: skip

    def _call(self, step: int, loss: float, image: torch.Tensor) -> bool:
        wall, cpu = time.perf_counter(), time.process_time()
        stop = bool(self.callback(step, loss, to_uint8(image[0])))
        self.callback_wall += time.perf_counter() - wall
        self.callback_cpu += time.process_time() - cpu
        return stop

    def __call__(self, step: int, loss: float, image: torch.Tensor) -> bool:
        """True when the run should stop."""
        stop = self.callback is not None and step % self.every == 0 and self._call(step, loss, image)
        return stop or (self.cancel is not None and self.cancel.is_set())

    def final(self, step: int, loss: float, image: torch.Tensor) -> None:
        """The last preview: the returned reconstruction."""
        if self.callback is not None:
            self._call(step, loss, image)


def _params_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> None:
    # Gradients for our variables only: the generator's weights get no .grad and
    # their gradients are not even computed (the generator may be shared by threads).
    for p, g in zip(params, torch.autograd.grad(loss, params)):
        p.grad = g


# --------------------------------------------------------------------------- inversion


def _settings(s: InversionSettings, steps: int | None, space: Space | None, optimize_noise: bool | None,
              pti: bool) -> InversionSettings:  # fmt: skip
    """``s`` with the given overrides, checked (the space, and the step counts against the limit)."""
    s = replace(
        s,
        steps=s.steps if steps is None else steps,
        space=s.space if space is None else space,
        optimize_noise=s.optimize_noise if optimize_noise is None else optimize_noise,
    )
    if s.space not in ("w", "wplus"):
        raise UserError(f"unknown latent space {s.space!r}: use 'w' or 'wplus'")
    if s.steps < 0:
        raise UserError("steps must be >= 0")
    most = limits.max_steps()
    if s.steps > most or (pti and s.pti_steps > most):
        raise UserError(f"{max(s.steps, s.pti_steps if pti else 0)} optimisation steps is over the limit of {most} "
                        "(STUDIO_MAX_STEPS)")  # fmt: skip
    return s


@torch.no_grad()
def _start_code(G: Generator, s: InversionSettings, target: torch.Tensor, init: torch.Tensor | None,
                encoder: Encoder | None, w_mean: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """Where the search starts: ``init``, else the encoder's guess, else mean W; (1, 1 or n_latent, dim)."""
    if init is not None:
        code = init.detach().to(G.device, torch.float32)
        code = code[:, None] if code.ndim == 2 else code
        if code.shape[0] != 1 or code.shape[2] != G.style_dim or code.shape[1] not in (1, G.n_latent):
            raise UserError(f"starting code of shape {tuple(init.shape)} does not fit this generator")
        return code.mean(1, keepdim=True) if s.space == "w" else code.expand(-1, G.n_latent, -1)
    if s.init == "encoder" and encoder is not None:
        w0, offsets = encoder(target)
        return w0[:, None] if s.space == "w" else w0[:, None] + offsets
    return w_mean[:, None] if s.space == "w" else w_mean[:, None].repeat(1, G.n_latent, 1)


@torch.no_grad()
def _final_code(latent: torch.Tensor, noise: list[torch.Tensor] | None, best: tuple, keep_best: bool, synth, loss_fn):
    """The last code and noise, or the best ones seen when they are better: (code, noise, image, loss)."""
    final_latent = latent.detach().clone()
    final_noise = [n.detach().clone() for n in noise] if noise is not None else None
    image_out = synth(final_latent, final_noise)
    final_loss = float(loss_fn(image_out)[0])
    if keep_best and best[0] < final_loss:
        final_latent, final_noise = best[1], (best[2] or None)
        image_out = synth(final_latent, final_noise)
        final_loss = float(loss_fn(image_out)[0])
    return final_latent, final_noise, image_out, final_loss


def invert(
    G: Generator,
    image: torch.Tensor | np.ndarray | Image.Image,
    encoder: Encoder | None = None,
    init: torch.Tensor | None = None,
    steps: int | None = None,
    space: Space | None = None,
    optimize_noise: bool | None = None,
    pti: bool = False,
    baseline: bool = False,
    settings: InversionSettings | None = None,
    callback: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 10,
    seed: int = 0,
) -> InversionResult:
    """Invert an aligned face ``image`` into ``G``'s latent space.

    The search starts from ``init`` (a W (1, dim) or W+ (1, n_latent, dim) code, e.g. a
    saved latent to refine), else from the encoder's guess, else from mean W.
    ``settings`` (default :data:`DEFAULTS`, or :data:`BASELINE` with ``baseline=True``)
    holds every knob; ``steps``, ``space`` and ``optimize_noise`` override it.
    ``callback(step, loss, preview)`` is called every ``preview_every`` steps and at
    the end, with the current reconstruction as (H, W, 3) uint8; returning True, or
    setting ``cancel``, stops the run and returns the best result so far.
    """
    s = _settings(settings or (BASELINE if baseline else DEFAULTS), steps, space, optimize_noise, pti)
    progress = _Progress(callback, cancel, preview_every)  # the clock starts here
    device = G.device
    target = prepare_target(image, G.config.resolution).to(device)
    loss_fn = _Loss(target, s.perceptual, s.mse, s.perceptual_calibrated, s.perceptual_resize)
    torch.manual_seed(seed)

    # Starting point.
    w_mean, w_spread = None, 0.0
    # W's spread sets the step size only when there are steps: a steps=0 call (the encoder's
    # guess, the app's first view) samples nothing for it.
    steps_in_spread = s.lr_unit == "w_spread" and s.steps > 0
    if s.latent_noise > 0 or s.init == "mean" or encoder is None or pti or steps_in_spread:
        w_mean, w_spread = w_prior(G, s.mean_w_samples, seed)
    lr_base = s.lr * (w_spread / math.sqrt(G.style_dim) if s.lr_unit == "w_spread" else 1.0)
    start = _start_code(G, s, target, init, encoder, w_mean)
    latent = start.detach().clone().requires_grad_(True)  # (1, 1 or n_latent, dim)

    noise: list[torch.Tensor] | None = None
    if s.optimize_noise:
        gen = torch.Generator().manual_seed(seed)
        noise = [torch.randn(b.shape, generator=gen).to(device).requires_grad_(True) for b in G.noise_buffers()]
    fixed_noise = G.noise_buffers()
    params = [latent] + (noise or [])
    groups = [{"params": [latent], "lr_base": lr_base}]
    if noise:
        groups.append({"params": noise, "lr_base": lr_base if s.noise_lr is None else s.noise_lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), lr=lr_base)

    def synth(code: torch.Tensor, noise_maps: list[torch.Tensor] | None) -> torch.Tensor:
        wplus = code.expand(-1, G.n_latent, -1)
        return G.synthesis(wplus, noise=noise_maps if noise_maps is not None else fixed_noise)

    with torch.no_grad():
        start_image = synth(start, noise)
    history: list[dict[str, float]] = []
    best = (math.inf, latent.detach().clone(), [n.detach().clone() for n in noise or []])
    since_best = 0
    stopped = "done"
    step = 0
    for step in range(s.steps):
        lr = learning_rate(step, s.steps, lr_base, s.lr_rampup, s.lr_rampdown)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, s.steps, group["lr_base"], s.lr_rampup, s.lr_rampdown)
        code = latent
        if s.latent_noise > 0:
            scale = w_spread * s.latent_noise * max(0.0, 1.0 - step / (s.steps * s.latent_noise_ramp)) ** 2
            code = latent + torch.randn_like(latent) * scale
        image_now = synth(code, noise)
        loss, lp, mse = loss_fn(image_now)
        total = loss
        if s.wplus_reg > 0 and s.space == "wplus":
            total = total + s.wplus_reg * (latent - latent.mean(1, keepdim=True)).square().sum(2).mean()
        if noise is not None and s.noise_reg > 0:
            total = total + s.noise_reg * noise_regularization(noise)
        # The state *before* this step's update is what ``image_now`` shows.
        value = loss.item()
        history.append({"step": step, "loss": value, "lpips": lp.item(), "mse": mse.item(), "lr": lr,
                        **progress.elapsed()})  # fmt: skip
        if value < best[0] * (1 - s.min_improvement):
            best = (value, latent.detach().clone(), [n.detach().clone() for n in noise or []])
            since_best = 0
        else:
            since_best += 1
        if progress(step, value, image_now.detach()):
            stopped = "cancelled"
            break
        if s.patience and since_best >= s.patience:
            stopped = "converged"
            break
        optimizer.zero_grad(set_to_none=True)
        _params_grad(total, params)
        optimizer.step()
        if noise is not None:
            normalize_noise(noise)
    steps_run = len(history)

    final_latent, final_noise, image_out, final_loss = _final_code(latent, noise, best, s.keep_best, synth, loss_fn)
    wplus = final_latent.expand(-1, G.n_latent, -1).contiguous()
    history.append({"step": steps_run, "loss": final_loss, **progress.elapsed()})

    tuned, pti_run = None, 0
    if pti and stopped != "cancelled":
        tuned, image_out, pti_run, pti_stopped = pivotal_tuning(
            G, target, wplus, final_noise, s, w_mean, w_spread, progress, steps_run, history
        )
        stopped = pti_stopped if pti_stopped == "cancelled" else stopped
    progress.final(steps_run + pti_run, history[-1]["loss"], image_out)
    return InversionResult(
        wplus=wplus.detach(),
        noise=final_noise,
        image=image_out.detach(),
        start_image=start_image.detach(),
        generator=tuned,
        space=s.space,
        steps=steps_run,
        pti_steps=pti_run,
        **progress.elapsed(),
        stopped=stopped,
        history=history,
    )


def pivotal_tuning(
    G: Generator,
    target: torch.Tensor,
    pivot: torch.Tensor,
    noise: list[torch.Tensor] | None,
    s: InversionSettings,
    w_mean: torch.Tensor,
    w_spread: float,
    progress: _Progress,
    step_offset: int,
    history: list[dict[str, float]],
) -> tuple[Generator, torch.Tensor, int, str]:
    """Fine-tune a copy of ``G`` so that ``pivot`` reproduces ``target`` (PTI).

    Locality regulariser: for random codes at distance ``pti_radius * w_spread`` from
    the pivot (towards random W samples), the tuned copy must keep producing what
    ``G`` produces, so the change stays local to the pivot and edits still work.
    """
    tuned = copy.deepcopy(G).train(False).requires_grad_(True)
    tuned.style.requires_grad_(False)  # mapping untouched: sampling and W statistics stay valid
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=s.pti_lr)
    loss_fn = _Loss(target, s.pti_perceptual, s.pti_mse, s.perceptual_calibrated, s.perceptual_resize)
    fixed = noise if noise is not None else [b.clone() for b in G.noise_buffers()]
    near_loss = perceptual_distance(s.perceptual_calibrated, s.perceptual_resize)
    image = None
    stopped = "done"
    run = 0
    for i in range(s.pti_steps):
        image = tuned.synthesis(pivot, noise=fixed)
        loss, lp, _ = loss_fn(image)
        total = loss
        if s.pti_locality > 0:
            with torch.no_grad():
                w_z = G.mapping(torch.randn(1, G.style_dim, device=pivot.device))
                direction = w_z[:, None] - pivot
                near = pivot + s.pti_radius * w_spread * direction / direction.norm(dim=2, keepdim=True).clamp_min(1e-8)
                reference = G.synthesis(near, noise=fixed)
            moved = tuned.synthesis(near, noise=fixed)
            reg = (moved - reference).square().mean() + near_loss(moved, reference).mean()
            total = total + s.pti_locality * reg
        value = loss.item()
        history.append({"step": step_offset + i, "phase_pti": 1.0, "loss": value, "lpips": lp.item(),
                        **progress.elapsed()})  # fmt: skip
        run = i + 1
        if progress(step_offset + i, value, image.detach()):
            stopped = "cancelled"
            break
        if s.pti_stop_lpips and lp.item() < s.pti_stop_lpips:
            break
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    tuned.requires_grad_(False).eval()
    with torch.no_grad():
        image = tuned.synthesis(pivot, noise=fixed)
        history.append({"step": step_offset + run, "phase_pti": 1.0, "loss": float(loss_fn(image)[0]),
                        **progress.elapsed()})  # fmt: skip
    return tuned, image, run, stopped
