"""Training the embedded generator on a CPU budget.

A textbook StyleGAN2 GAN sees too few images per CPU-hour to learn faces, so the
recipes here train the generator jointly with an encoder from every image
(reconstruction + perceptual losses, optionally adversarial ones, as VAE-GAN and
pSp/e4e-style training do). Sampling needs a prior over W: the running Gaussian of
the encoded latents during training; at export the mapping network becomes the
Gaussian fitted to the encoded W (PixelNorm + one linear layer), so sampling goes
through ``mapping(z)`` as with any StyleGAN2: one generator code path. (The
training config's mapping layers are unused while training: latents come from the
encoder.)

Recipes are data (:data:`RECIPES`), compared with ``python -m pipeline bench generator``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..faces.imaging import save_grid
from ..models.checkpoints import save_native
from ..models.encoder import Encoder, EncoderConfig, save_encoder
from ..models.generator import Generator, GeneratorConfig
from ..models.perceptual import TAP_CHANNELS, PerceptualDistance, unit_normalize
from .data import HELDOUT_COUNT, age_balance_weights, heldout_split, list_images, load_faces
from .precision import arithmetic, describe, use_bf16
from .prior_fit import chosen_faces, fit_to_faces


@dataclass(frozen=True)
class Recipe:
    name: str
    perceptual: float = 1.0  # weight of the LPIPS-style loss
    pixel: float = 1.0  # weight of the L1 loss
    adversarial: float = 0.0  # weight of the non-saturating GAN loss on reconstructions
    prior_adversarial: float = 0.0  # ... and on samples from the running W prior
    adversarial_after: int = 2000  # images seen before the GAN losses switch on
    latent_noise: float = 0.2  # std of noise added to encoded w (in units of W's std)
    offset_reg: float = 1.0  # keeps per-layer offsets near zero
    # Share of each batch reconstructed from W alone (offsets dropped). Samples come from one
    # W per face, so W itself must carry the face, not only W + the encoder's offsets.
    offset_dropout: float = 0.0
    r1_gamma: float = 1.0
    r1_every: int = 16
    lr: float = 0.001
    d_lr: float = 0.0002  # a slower critic: pretrained features make it strong early
    batch: int = 16
    resolution: int | None = None  # None: the config's; a larger one grows the model (see :mod:`.sharp`)
    critic: str = "features"  # "features": frozen SqueezeNet taps; "patch": PatchGAN on pixels, hinge
    manifold_codes: int = 0  # decodes per step of codes with no reconstruction target (critic only)
    freeze_images: int = 0  # after growing, images for which only the new blocks train
    # Only the generator's top block trains, whatever the images seen; the encoder is frozen: the
    # texture changes, the codes do not, so the prior and directions stay the model's.
    top_only: bool = False
    edit_range: float = 3.0  # the critic's edited codes move up to this many sd along a direction
    # Encoded W's variance per axis held near this (0: free). Nothing else fixes W's scale, and
    # every run past 862.5k images let it climb while truncated samples lost quality.
    w_variance: float = 0.0
    w_variance_weight: float = 1.0
    # Faces drawn with their age bin's count to this power (0: as the data has them). UTKFace
    # is mostly 20-35 years old, and the decoder reconstructs age compressed towards that.
    age_balance: float = 0.0
    cutout: float = 0.0  # side of the square DiffAugment's cutout hides from the pixel critic (0: none)
    ema_half_life: int = 10_000  # images over which the averaged weights (what ships) forget half


# Grown to 128 px, then a VQGAN-style decoder: L1 + perceptual + hinge PatchGAN weighted
# adaptively, the critic also seeing decodes of prior samples, interpolations and edits.
# ``adversarial_after`` and ``freeze_images`` count from the growth.
SHARP_128 = Recipe(
    "sharp-128", resolution=128, critic="patch", adversarial=0.5, adversarial_after=6000,
    manifold_codes=8, freeze_images=20_000, lr=0.0005, d_lr=0.0002, r1_gamma=0.0,
)  # fmt: skip


def _sharp(name: str, **changes) -> Recipe:
    return replace(SHARP_128, name=name, **changes)


# sharp-128-adv3 with both learning rates halved; the recipes after it vary this one.
ADV3_ANNEAL = _sharp("sharp-128-adv3-anneal", adversarial=3.0, lr=0.00025, d_lr=0.0001)
ANNEAL2 = replace(ADV3_ANNEAL, name="sharp-128-adv3-anneal2", lr=0.000125, d_lr=0.00005)
ANCHOR = replace(ANNEAL2, name="sharp-128-adv3-anchor", w_variance=120.0, w_variance_weight=10.0)
R1_SLOW = replace(
    ANCHOR, name="sharp-128-r1-slow-anchor-ages", age_balance=0.5, r1_gamma=0.05, lr=0.0000625, d_lr=0.000025,
    ema_half_life=20_000,
)

RECIPES = {
    # Reconstruction only: L1 + perceptual distance.
    "ae": Recipe("ae"),
    # ... with half of each batch decoded from W alone, the way samples are made.
    "ae-w": Recipe("ae-w", offset_dropout=0.5),
    # + a discriminator on frozen SqueezeNet features (the taps the perceptual loss
    # computes anyway), on reconstructions and on samples from the W prior.
    "ae-pgan": Recipe("ae-pgan", adversarial=0.05, prior_adversarial=0.05, adversarial_after=4000, r1_gamma=10.0),
    "sharp-128": SHARP_128,
    # The critic's say tripled: against sharp-128 the critic wins (hinge loss ~0.3) and sample
    # sharpness stalls near 0.28 from 642.5k images on.
    "sharp-128-adv": _sharp("sharp-128-adv", adversarial=1.5),
    # sharp-128-adv with the edited codes kept within 1.5 sd: resumed at 704.2k images with
    # edits up to 3 sd, sample sharpness fell from 0.78 to 0.51 by 791.7k.
    "sharp-128-near": _sharp("sharp-128-near", adversarial=1.5, edit_range=1.5),
    # The critic's say doubled again: where 0.5 -> 1.5 took sample sharpness from 0.28 to 0.78,
    # 3.0 took KID from 1092 to 786 and held the encoded W's spread (which runs away under weaker critics).
    "sharp-128-adv3": _sharp("sharp-128-adv3", adversarial=3.0),
    # sharp-128-adv with both learning rates halved: a late, annealed stage of the same game.
    "sharp-128-anneal": _sharp("sharp-128-anneal", adversarial=1.5, lr=0.00025, d_lr=0.0001),
    # sharp-128-adv3 annealed the same way: from 790k images on, adv3's KID held near 670; 30.7k
    # annealed images from 831.9k took it to 340-390. Watch W's spread (w_var), which ran away under
    # sharp-128-anneal.
    "sharp-128-adv3-anneal": ADV3_ANNEAL,
    # sharp-128-adv3-anneal with twice the critic's codes off the data: at 862.5k its faces aged
    # cleanly at +1.5σ but paled and smeared at +3σ (blue patches under the nose), and 8 such codes
    # a step, split between prior samples, mixes and edits along 20 directions, show the critic
    # only about 40 age edits per 10k images.
    "sharp-128-adv3-edits": replace(ADV3_ANNEAL, name="sharp-128-adv3-edits", manifold_codes=16),
    # Annealed again (a quarter of adv3's learning rates), from the 862.5k state: past it the
    # half-rate run held KID flat to 886.3k (382/358 against 340/390) and, as sharp-128-adv3-edits,
    # lost ground by 931.6k (543/636) while W's variance per axis climbed from 139 to 207.
    "sharp-128-adv3-anneal2": ANNEAL2,
    # sharp-128-adv3-anneal2 with the encoded W's spread held, where anneal2 let it climb from 139
    # per axis (862.5k) to 162 by 884k. Held from above only at first, batch noise took it down
    # to 120 by 887.0k, with KID 318/304 (anneal2 at 884k: 325/324): from there held both ways at 120.
    "sharp-128-adv3-anchor": ANCHOR,
    # sharp-128-adv3-anchor with the ages drawn flatter (each face weighted by its 5-year bin's
    # count to the power -0.5): faces over 60 go from about a tenth of each batch to a fifth.
    "sharp-128-adv3-anchor-ages": replace(ANCHOR, name="sharp-128-adv3-anchor-ages", age_balance=0.5),
    # sharp-128-adv3-anchor-ages with the critic's say doubled again. Past 906.2k that recipe drifted
    # in float32 and bfloat16 alike (KID 261 -> 338 by 944k, 683 by 1015.7k; sample sharpness 0.90 ->
    # 0.70) while the adaptive weight fell from 0.03 to 0.015 and the generator's critic loss rose:
    # reconstruction took over again, as it did before each earlier step up of this weight.
    "sharp-128-adv6-anchor-ages": replace(ANCHOR, name="sharp-128-adv6-anchor-ages", age_balance=0.5, adversarial=6.0),
    # sharp-128-adv3-anchor-ages with the pixel critic held smooth (R1, lazily every 16 steps) and
    # shown faces with a square hidden (cutout 0.5, DiffAugment's third policy). Past 906.2k a
    # stronger critic kept the samples sharp (adv6) but KID drifted all the same while the critic's
    # gradients on the fakes grew against reconstruction's: the signs of a critic sharpening on a
    # small data set (UTKFace: ~20k faces, each seen ~45 times). At gamma 1 the penalty (R1 about 41
    # a face at 906.2k) swamped the hinge loss: the critic went blind to the fakes, the adaptive weight
    # rose tenfold and L1 went from 0.13 to 0.23 in 4k images, so that run was stopped.
    "sharp-128-r1-cutout-anchor-ages": replace(ANCHOR, name="sharp-128-r1-cutout-anchor-ages", age_balance=0.5, r1_gamma=1.0, cutout=0.5),
    # The same with R1 alone, at gamma 0.05: on a par with the hinge loss on the steps it is applied.
    "sharp-128-r1-anchor-ages": replace(ANCHOR, name="sharp-128-r1-anchor-ages", age_balance=0.5, r1_gamma=0.05),
    # sharp-128-r1-anchor-ages at half its learning rates, its averaged weights forgetting half as
    # fast. Every run from 906.2k held or improved for 20-40k images and then drifted (R1 at gamma
    # 0.05: KID 298/292 by 944.4k, 531/455 by 982.0k), and each halving of the rates so far took
    # KID down (adv3 -> anneal: 643 -> 340); snapshots (--snapshot-every) keep the best on the way.
    # From 906.2k its untruncated KID was lowest at 950k (231/230 against 261/317), then drifted again
    # (320/297 by 990k) while the truncated samples' KID kept falling (924 -> 693).
    "sharp-128-r1-slow-anchor-ages": R1_SLOW,
    # Halved once more, from the 950k state: past it the half-rate run's truncated KID kept falling
    # while the untruncated one drifted back.
    "sharp-128-r1-quarter-anchor-ages": replace(
        R1_SLOW, name="sharp-128-r1-quarter-anchor-ages", lr=0.00003125, d_lr=0.0000125, ema_half_life=40_000
    ),
    # Only the 128-px block trains, from the 950k state, at the slow recipe's rates: every whole-model
    # run drifted within 20-40k images, and what still tells samples from photos (real-vs-sample
    # accuracy 0.72) is texture: samples have more flat pixels (lowest Laplacian bins) and fewer
    # mid-contrast ones than photos, which the top block draws. (With the encoder's offsets head
    # training too, 20k images took the accuracy to 0.67 but KID to 202 / 264 with a prior fitted
    # again, 384 with the old one: the codes had moved; `bench/generator_sharp-128-top_970k.json`.
    # With the encoder frozen, 20k images: accuracy 0.69, sharpness 1.10, KID 235 / 247 against 168 /
    # 166; `bench/generator_sharp-128-top-frozen-encoder_970k.json`; 40k: 0.66, 219 / 234 (`..._990k.json`).
    # Its averaged encoder still
    # drifts towards the frozen one it averages.)
    "sharp-128-top": replace(R1_SLOW, name="sharp-128-top", top_only=True),
    # The same without the off-data codes: the critic sees reconstructions only.
    "sharp-128-rec": _sharp("sharp-128-rec", manifold_codes=0),
}

EMBEDDED_CONFIG = GeneratorConfig(
    resolution=64, style_dim=256, n_mlp=4, channels={4: 256, 8: 256, 16: 128, 32: 64, 64: 32}
)
FEATURE_TAPS = (1, 2, 4, 6)


def grown_config(config: GeneratorConfig, resolution: int) -> GeneratorConfig:
    """``config`` with synthesis blocks up to ``resolution``, halving channels per doubling."""
    channels = dict(config.channels)
    while max(channels) < resolution:
        top = max(channels)
        channels[top * 2] = max(channels[top] // 2, 8)
    return replace(config, resolution=resolution, channels=channels)  # SqueezeNet taps the feature discriminator reads


def load_critic(critic: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Load a stored critic; one of another architecture is dropped (the critic starts afresh,
    the generator keeps its training). Returns whether it was loaded."""
    try:
        critic.load_state_dict(state)
    except RuntimeError:
        print("the stored critic has another architecture: starting a fresh one", flush=True)
        return False
    return True


class FeatureDiscriminator(torch.nn.Module):
    """Small convolutional heads on frozen SqueezeNet taps (a projected-GAN-style critic).

    Pretrained features make the critic useful after a few thousand images, which a
    pixel discriminator trained from scratch is not on a CPU budget.
    """

    def __init__(self, tap_channels: list[int], taps: tuple[int, ...] = FEATURE_TAPS, width: int = 64):
        super().__init__()
        self.taps = taps
        self.heads = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Conv2d(tap_channels[t], width, 1), torch.nn.LeakyReLU(0.2),
                torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.LeakyReLU(0.2),
                torch.nn.Conv2d(width, 1, 1),
            )  # fmt: skip
            for t in taps
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Per-image logit: the mean over heads and positions.

        Taps are unit-normalised along channels first (raw Caffe-scale activations are
        in the hundreds and make the critic's logits explode).
        """
        logits = [head(unit_normalize(feats[t]) * feats[t].shape[1] ** 0.5) for head, t in zip(self.heads, self.taps)]
        return sum(logit.mean((1, 2, 3)) for logit in logits) / len(self.taps)


@dataclass
class TrainState:
    images_seen: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    step: int = 0
    grown_at: int = 0  # images seen when the model last grew
    bf16_images: int = 0  # images trained with bfloat16 arithmetic (see ``use_bf16``)


class RunningGaussian:
    """Exponentially weighted mean and covariance of encoded W (the sampling prior in training).

    Moments are bias-corrected (as Adam's are), so the estimate is right from the first batch.
    """

    def __init__(self, dim: int, decay: float = 0.995, device: torch.device | str = "cpu"):
        self.dim, self.decay, self.device = dim, decay, torch.device(device)
        self.moments = {
            "m1": torch.zeros(dim, device=device), "m2": torch.zeros(dim, dim, device=device),
            "weight": torch.zeros((), device=device),
        }  # fmt: skip

    def load(self, moments: dict[str, torch.Tensor]) -> None:
        self.moments = {k: moments[k].float().to(self.device) for k in self.moments}

    def update(self, w: torch.Tensor) -> None:
        w = w.detach().float()
        m, a = self.moments, 1 - self.decay
        m["m1"].mul_(self.decay).add_(a * w.mean(0))
        m["m2"].mul_(self.decay).add_(a * (w.t() @ w) / w.shape[0])
        m["weight"].mul_(self.decay).add_(a)

    @property
    def mean(self) -> torch.Tensor:
        return self.moments["m1"] / self.moments["weight"].clamp_min(1e-12)

    @property
    def cov(self) -> torch.Tensor:
        if self.moments["weight"] == 0:
            return torch.eye(self.dim, device=self.device)
        mean = self.mean
        return self.moments["m2"] / self.moments["weight"] - torch.outer(mean, mean)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator).to(self.device)
        return self.mean + z @ gaussian_factor(self.cov).t()


def gaussian_factor(cov: torch.Tensor) -> torch.Tensor:
    """A matrix L with L L^T = cov, robust to a rank-deficient or slightly indefinite estimate."""
    eigvals, eigvecs = torch.linalg.eigh(cov.double())
    return (eigvecs * eigvals.clamp_min(0).sqrt()).to(cov.dtype)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ema_update(target: torch.nn.Module, source: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pt, ps in zip(target.parameters(), source.parameters()):
            pt.lerp_(ps, 1 - decay)
        for bt, bs in zip(target.buffers(), source.buffers()):
            bt.copy_(bs)


def to_tensor(batch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.array(batch)).to(device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)


class Trainer:
    def __init__(
        self, recipe: Recipe, config: GeneratorConfig, run_dir: Path, seed: int = 0, device: torch.device | str = "cpu"
    ):
        torch.manual_seed(seed)
        self.recipe, self.config, self.run_dir, self.device = recipe, config, run_dir, torch.device(device)
        self.G = Generator(config).to(device)
        self.E = Encoder(self.encoder_config(config)).to(device)
        self.perceptual = PerceptualDistance(calibrated=False, resize=None).to(device)
        self.D = self.make_critic()
        if self.D is not None:
            self.D.to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.E_ema = copy.deepcopy(self.E).eval().requires_grad_(False)
        params = [*self.G.convs.parameters(), *self.G.to_rgbs.parameters(), *self.G.conv1.parameters(),
                  *self.G.to_rgb1.parameters(), *self.G.input.parameters()]  # fmt: skip
        self.opt_g = torch.optim.Adam([{"params": params}, {"params": self.E.parameters()}], lr=recipe.lr, betas=(0.5, 0.99))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=recipe.d_lr, betas=(0.0, 0.99)) if self.D else None
        self.prior = RunningGaussian(config.style_dim, device=device)
        self.state = TrainState()
        self.w_std = 1.0

    def encoder_config(self, config: GeneratorConfig) -> EncoderConfig:
        return EncoderConfig(config.resolution, config.style_dim, config.n_latent)

    def make_critic(self) -> torch.nn.Module | None:
        gan = self.recipe.adversarial or self.recipe.prior_adversarial
        return FeatureDiscriminator(TAP_CHANNELS) if gan else None

    # ---- persistence

    def full_state(self) -> dict:
        nets = {"G": self.G, "E": self.E, "G_ema": self.G_ema, "E_ema": self.E_ema}
        if self.D:
            nets["D"] = self.D
        return {
            "nets": {k: v.state_dict() for k, v in nets.items()},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "prior": self.prior.moments,
            "state": asdict(self.state),
            "recipe": asdict(self.recipe),
            "config": self.config.to_dict(),
        }

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "state.pt.tmp"
        torch.save(self.full_state(), tmp)
        tmp.replace(self.run_dir / "state.pt")

    def load(self, path: Path) -> dict:
        """Resume from a full state; returns it (subclasses read their own entries)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        nets = {"G": self.G, "E": self.E, "G_ema": self.G_ema, "E_ema": self.E_ema, "D": self.D}
        critic_kept = True
        for k, sd in ckpt["nets"].items():
            if k == "D" and self.D is not None:
                critic_kept = load_critic(self.D, sd)
            elif nets.get(k) is not None:
                nets[k].load_state_dict(sd)
        self.opt_g.load_state_dict(ckpt["opt_g"])
        if self.opt_d and ckpt.get("opt_d") and critic_kept:
            self.opt_d.load_state_dict(ckpt["opt_d"])
        # The stored moments, but this recipe's learning rates: a state may go on under another
        # recipe (an annealed stage), and the optimiser's stored groups carry the old rates.
        for opt, lr in ((self.opt_g, self.recipe.lr), (self.opt_d, self.recipe.d_lr)):
            for group in opt.param_groups if opt else ():
                group["lr"] = lr
        if set(ckpt["prior"]) == set(self.prior.moments):  # older states kept mean/cov only
            self.prior.load(ckpt["prior"])
        self.state = TrainState(**ckpt["state"])
        return ckpt

    def use_edit_directions(self, path: Path) -> None:
        raise UserError(f"recipe {self.recipe.name!r} decodes no edited codes (only the patch-critic recipes do)")

    def save_compact(self, path: Path) -> None:
        """Half-precision weights of every network, no optimiser moments (committable)."""
        tensors = {}
        nets = {"G": self.G, "E": self.E, "G_ema": self.G_ema, "E_ema": self.E_ema, "D": self.D}
        for name, net in nets.items():
            if net is not None:
                for k, v in net.state_dict().items():
                    tensors[f"{name}.{k}"] = v.detach().half().cpu().contiguous()
        for k, v in self.prior.moments.items():
            tensors[f"prior.{k}"] = v.cpu().contiguous()
        meta = {"state": json.dumps(asdict(self.state)), "recipe": json.dumps(asdict(self.recipe)),
                "config": json.dumps(self.config.to_dict())}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=meta)

    def load_compact(self, path: Path) -> None:
        tensors = load_file(str(path))
        nets = {"G": self.G, "E": self.E, "G_ema": self.G_ema, "E_ema": self.E_ema, "D": self.D}
        for name, net in nets.items():
            if net is None:
                continue
            sd = {k[len(name) + 1 :]: v.float() for k, v in tensors.items() if k.startswith(name + ".")}
            if sd and name == "D":
                load_critic(net, sd)
            elif sd:
                net.load_state_dict(sd)
        self.prior.load({k: tensors[f"prior.{k}"] for k in self.prior.moments})
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            self.state = TrainState(**json.loads(f.metadata()["state"]))

    # ---- one step

    def reconstruct(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w, offsets, decoded face) of a batch: the encoder's code, updating the W prior, with latent
        noise, and decoded from W alone for the recipe's share of the batch."""
        r = self.recipe
        w, offsets = self.E(real)
        self.prior.update(w)
        scale = self.prior.cov.diagonal().mean().sqrt().item()
        w_in = w + r.latent_noise * scale * torch.randn_like(w)
        used = offsets
        if r.offset_dropout:
            used = offsets * (torch.rand(offsets.shape[0], 1, 1, device=offsets.device) >= r.offset_dropout).to(offsets)
        return w, offsets, self.G.synthesis(w_in.unsqueeze(1) + used)

    def step(self, real: torch.Tensor) -> dict[str, float]:
        r, G, D = self.recipe, self.G, self.D
        n_latent = self.config.n_latent
        gan_on = D is not None and self.state.images_seen >= r.adversarial_after
        logs: dict[str, float] = {}

        w, offsets, fake = self.reconstruct(real)
        P = self.perceptual
        with torch.no_grad():
            feats_real = P.raw_features(real)
        feats_fake = P.raw_features(fake)
        l1 = (fake - real).abs().mean()
        lp = P.distance_from_features(feats_fake, feats_real).mean()
        loss = r.pixel * l1 + r.perceptual * lp + r.offset_reg * offsets.square().mean()
        logs["l1"], logs["lpips"] = l1.item(), lp.item()
        fake_feats = []
        if gan_on:
            adv = F.softplus(-D(feats_fake)).mean()
            loss = loss + r.adversarial * adv
            logs["g_adv"] = adv.item()
            fake_feats.append(feats_fake)
            if r.prior_adversarial:
                ws = self.prior.sample(real.shape[0]).unsqueeze(1).repeat(1, n_latent, 1)
                feats_prior = P.raw_features(G.synthesis(ws))
                padv = F.softplus(-D(feats_prior)).mean()
                loss = loss + r.prior_adversarial * padv
                logs["g_prior_adv"] = padv.item()
                fake_feats.append(feats_prior)
        descend(self.opt_g, loss)

        if gan_on:
            detached = [[t.detach() for t in f] for f in fake_feats]
            d_loss = F.softplus(-D(feats_real)).mean() + sum(F.softplus(D(f)).mean() for f in detached) / len(detached)
            if self.state.step % r.r1_every == 0:
                taps = [t.detach().requires_grad_(True) for t in feats_real]
                grads = torch.autograd.grad(D(taps).sum(), [taps[t] for t in D.taps], create_graph=True)
                r1 = sum(g.square().sum((1, 2, 3)).mean() for g in grads)
                d_loss = d_loss + r.r1_gamma / 2 * r1 * r.r1_every
            descend(self.opt_d, d_loss)
            logs["d"] = d_loss.item()

        self.update_averages(real.shape[0])
        return logs

    def update_averages(self, batch: int) -> None:
        decay = 0.5 ** (batch / self.recipe.ema_half_life)
        decay = min(decay, (1 + self.state.step) / (10 + self.state.step))  # fast warm-up
        ema_update(self.G_ema, self.G, decay)
        if not self.recipe.top_only:  # a frozen encoder's average would drift to the raw encoder, moving the codes
            ema_update(self.E_ema, self.E, decay)
        self.state.step += 1
        self.state.images_seen += batch

    # ---- samples

    @torch.no_grad()
    def sample_grid(self, real: torch.Tensor, path: Path, n: int = 8) -> None:
        recon = self.G_ema.synthesis(self.E_ema.wplus(real[:n]), randomize_noise=False)
        gen = torch.Generator().manual_seed(0)
        ws = self.prior.sample(2 * n, generator=gen).unsqueeze(1).repeat(1, self.config.n_latent, 1)
        samples = self.G_ema.synthesis(ws, randomize_noise=False)
        save_grid(torch.cat([real[:n], recon, samples]), path, nrow=n)


def train(
    data_dir: Path,
    recipe: Recipe,
    run_dir: Path,
    config: GeneratorConfig = EMBEDDED_CONFIG,
    max_images: int | None = None,
    max_minutes: float | None = None,
    max_cpu_minutes: float | None = None,
    resume: bool = True,
    compact_state: Path | None = None,
    threads: int | None = None,
    checkpoint_minutes: float = 10.0,
    heldout_count: int = HELDOUT_COUNT,
    trainer_class: type[Trainer] = Trainer,
    edit_directions: Path | None = None,
    device: str = "cpu",
    precision: str = "auto",
    snapshot_every: int | None = None,
    log=print,
) -> Trainer:
    """Train until a limit; with ``snapshot_every``, keep a compact state each time that many more
    images are seen (``run_dir/snapshots``), so the best point of a drifting run can be benchmarked."""
    if recipe.resolution and recipe.resolution != config.resolution:
        config = grown_config(config, recipe.resolution)
    if threads:
        torch.set_num_threads(threads)
    files = list_images(data_dir)
    train_files, _ = heldout_split(files, heldout_count)
    faces = load_faces(data_dir, train_files, config.resolution, cache_dir=run_dir.parent / "cache")
    trainer = trainer_class(recipe, config, run_dir, device=device)
    if resume and (run_dir / "state.pt").exists():
        trainer.load(run_dir / "state.pt")
        log(f"resumed from {run_dir / 'state.pt'} at {trainer.state.images_seen} images")
    elif resume and compact_state and compact_state.exists():
        trainer.load_compact(compact_state)
        log(f"resumed from {compact_state} at {trainer.state.images_seen} images (no optimiser moments)")
    if edit_directions is not None:
        trainer.use_edit_directions(edit_directions)
        log(f"edited codes move along the {len(trainer.directions)} directions of {edit_directions}")
    elif recipe.manifold_codes and not len(trainer.directions):
        log("no edit directions: the critic's edited codes stay unedited (give --edit-directions)")
    bf16 = use_bf16(precision, device)
    log(describe(device, bf16))
    rng = np.random.default_rng(trainer.state.step)
    drawn = age_balance_weights(train_files, recipe.age_balance) if recipe.age_balance else None
    fixed = to_tensor(np.array(faces[:8]), device)
    start_wall, start_cpu = time.time(), time.process_time()
    base_wall, base_cpu = trainer.state.wall_seconds, trainer.state.cpu_seconds
    last_ckpt = last_log = time.time()
    logs_acc: dict[str, list[float]] = {}
    images_at_log = trainer.state.images_seen
    def finished(now: float) -> bool:
        return bool(
            (max_images is not None and trainer.state.images_seen >= max_images)
            or (max_minutes is not None and now - start_wall >= max_minutes * 60)
            or (max_cpu_minutes is not None and trainer.state.cpu_seconds >= max_cpu_minutes * 60)
        )

    while not finished(time.time()):
        idx = rng.choice(len(faces), recipe.batch, p=drawn) if drawn is not None else rng.integers(0, len(faces), recipe.batch)
        batch = faces[np.sort(idx)]
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        with arithmetic(device, bf16):
            logs = trainer.step(to_tensor(batch, device))
        trainer.state.bf16_images += recipe.batch if bf16 else 0
        for k, v in logs.items():
            logs_acc.setdefault(k, []).append(v)
        trainer.state.wall_seconds = base_wall + time.time() - start_wall
        trainer.state.cpu_seconds = base_cpu + time.process_time() - start_cpu
        if snapshot_every and trainer.state.images_seen // snapshot_every != (trainer.state.images_seen - recipe.batch) // snapshot_every:
            trainer.save_compact(run_dir / "snapshots" / f"state_{trainer.state.images_seen:08d}.safetensors")
        now = time.time()
        done = finished(now)
        if now - last_log >= 60 or done:
            rate = (trainer.state.images_seen - images_at_log) / (now - last_log)
            parts = " ".join(f"{k}={np.mean(v):.4f}" for k, v in logs_acc.items())
            log(f"[{recipe.name}] images={trainer.state.images_seen} {parts} img/s={rate:.1f} cpu_h={trainer.state.cpu_seconds / 3600:.2f}")
            logs_acc.clear()
            last_log, images_at_log = now, trainer.state.images_seen
        if now - last_ckpt >= checkpoint_minutes * 60 or done:
            trainer.save()
            trainer.sample_grid(fixed, run_dir / f"samples_{trainer.state.images_seen:08d}.png")
            last_ckpt = now
    return trainer


# --------------------------------------------------------------------------- export


def gaussian_mapping(G: Generator, w_data: torch.Tensor) -> Generator:
    """A copy of ``G`` whose mapping is the Gaussian fitted to the encoded latents.

    The mapping becomes PixelNorm + one linear layer: PixelNorm puts z on the sphere of
    radius sqrt(dim), nearly a standard normal in high dimensions, so
    ``mapping(z) = mean + L z`` with ``L L^T`` the covariance of the encoded W.
    Synthesis weights are copied unchanged.
    """
    config = replace(G.config, n_mlp=1, mapping_linear=True)
    out = Generator(config)
    state = {k: v for k, v in G.state_dict().items() if not k.startswith("style.")}
    mean = w_data.mean(0)
    chol = gaussian_factor(torch.cov(w_data.t()))
    layer = out.style[1]
    # EqualLinear computes x @ (weight * scale).T + bias * lr_mul
    state["style.1.weight"] = chol / layer.scale
    state["style.1.bias"] = mean / layer.lr_mul
    out.load_state_dict(state, strict=True)
    return out.eval()


def prior_fit(G: Generator, w_data: torch.Tensor, n: int = 20_000) -> dict[str, float]:
    """How well mapping(z) matches the encoded W distribution (relative errors)."""
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.style_dim))
    mean, cov = w_data.mean(0), torch.cov(w_data.t())
    return {
        "mean_error": (w.mean(0) - mean).norm().item() / mean.norm().clamp_min(1e-8).item(),
        "cov_error": (torch.cov(w.t()) - cov).norm().item() / cov.norm().item(),
    }


@torch.no_grad()
def encode_all(E: Encoder, faces: np.ndarray, batch: int = 256) -> torch.Tensor:
    device = next(E.parameters()).device
    return torch.cat([E(to_tensor(faces[i : i + batch], device))[0] for i in range(0, len(faces), batch)])


def export(
    trainer: Trainer, data_dir: Path, out_dir: Path, heldout_count: int = HELDOUT_COUNT, log=print
) -> dict:
    """Write the shippable model: EMA generator (with fitted mapping), encoder, held-out list."""
    files = list_images(data_dir)
    train_files, heldout = heldout_split(files, heldout_count)
    faces = load_faces(data_dir, train_files, trainer.config.resolution, cache_dir=trainer.run_dir.parent / "cache")
    w_data = encode_all(trainer.E_ema, faces)
    G = gaussian_mapping(trainer.G_ema, w_data)
    fit = prior_fit(G, w_data)
    log(f"prior fit: {fit}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_native(G, out_dir, "generator")
    save_encoder(trainer.E_ema, out_dir / "encoder.safetensors")
    # Random faces are drawn from a mixture fitted to the encoded W+ (see latent.prior).
    chosen = chosen_faces(len(faces))
    fit_to_faces(trainer.E_ema, faces[chosen]).save(out_dir / "prior.safetensors")
    (out_dir / "heldout.txt").write_text(
        "# UTKFace files held out from all training (generator, encoder, classifiers)\n" + "\n".join(heldout) + "\n"
    )
    info = {"recipe": asdict(trainer.recipe), "train": asdict(trainer.state), "prior_fit": fit, "train_files": len(train_files)}
    (out_dir / "training.json").write_text(json.dumps(info, indent=2))
    return info


def recipe_with(name: str, **overrides) -> Recipe:
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
