"""A sharp decoder: the shipped generator grown a resolution and trained against a PatchGAN.

An autoencoder trained on L1 + perceptual losses decodes blurry faces, and only the codes its
encoder produces. This trainer follows the VQGAN / latent-diffusion autoencoders:

- reconstruction (L1 + perceptual) stays the anchor, so the adversarial term cannot collapse
  the model;
- a hinge PatchGAN on pixels, weighted adaptively by the ratio of the gradient norms of the
  reconstruction and adversarial losses at the last layer, switched on after the grown block
  has settled; DiffAugment (colour, translation) on everything the critic sees;
- the critic also sees decodes of codes that have no reconstruction target (samples of the W
  prior, interpolations between encoded faces, encoded faces moved along the model's edit
  directions), so every code the app decodes is pushed onto the face manifold (as ALAE does);
- growing rather than restarting: a new synthesis block whose ToRGB starts at zero (the
  skip architecture then outputs the upsampled old image, so nothing is lost at the switch)
  and a detail branch of the encoder, trained alone first, then everything fine-tuned.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError
from ..models.encoder import EncoderConfig
from ..models.generator import GeneratorConfig
from .generator_train import Recipe, Trainer, TrainState, descend

DIRECTIONS_FILE = "directions.safetensors"
ADAPTIVE_EVERY = 4  # steps between re-estimates of the adaptive adversarial weight


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix / taming's NLayerDiscriminator): one logit per ~70-px patch.

    Normalised per image (group norm), not per batch: real and fake batches pass separately,
    and batch statistics let a critic tell them apart without looking at a single face (it then
    wins outright, its loss at zero, and teaches the generator nothing).
    """

    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.GroupNorm(8, out), nn.LeakyReLU(0.2)]
            ch = out
        blocks.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


def diff_augment(images: torch.Tensor, translation: float = 0.125, cutout: float = 0.0) -> torch.Tensor:
    """DiffAugment's colour and translation policies (and cutout when ``cutout`` > 0):
    differentiable, fresh per image."""
    n = images.shape[0]
    rand = lambda: torch.rand(n, 1, 1, 1, device=images.device)  # noqa: E731
    x = images + (rand() - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (rand() * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (rand() + 0.5) + mean
    x = random_translate(x, translation)
    return random_cutout(x, cutout) if cutout > 0 else x


def random_cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """DiffAugment's cutout: a square of ``ratio`` of the side zeroed in each image, where it
    falls; a critic that cannot see the whole face at once memorises the few faces it has less."""
    n, size, device = images.shape[0], images.shape[-1], images.device
    side = int(size * ratio + 0.5)
    corner = torch.randint(-(side // 2), size - side // 2 + 1, (n, 2, 1), device=device)
    grid = torch.arange(size, device=device)
    rows = ((grid - corner[:, 0]) >= 0) & ((grid - corner[:, 0]) < side)
    cols = ((grid - corner[:, 1]) >= 0) & ((grid - corner[:, 1]) < side)
    keep = ~(rows[:, :, None] & cols[:, None, :])
    return images * keep[:, None].to(images.dtype)


def r1_penalty(critic: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): the squared gradient of the critic's mean patch logit with
    respect to each real image, averaged over the batch. It keeps the critic smooth around the
    data instead of sharpening on the few thousand faces it has seen many times."""
    images = images.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(images).mean((1, 2, 3)).sum(), images, create_graph=True)
    return grad.square().sum((1, 2, 3)).mean()


def random_translate(images: torch.Tensor, translation: float = 0.125) -> torch.Tensor:
    """Each image shifted by up to ``translation`` of its size, zeros moving in; one gather for the
    whole batch (a loop over images costs a kernel launch each on a GPU)."""
    n, channels, size, device = images.shape[0], images.shape[1], images.shape[-1], images.device
    shift = int(size * translation + 0.5)
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (n, 2, 1), device=device)
    rows = (offsets[:, 0] + torch.arange(size, device=device))[:, None, :, None]
    cols = (offsets[:, 1] + torch.arange(size, device=device))[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def hinge_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def grow_generator_state(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The old generator's tensors in the grown one; new tensors as initialised, new ToRGB at zero."""
    out = dict(new)
    for k, v in old.items():
        if k in out and out[k].shape == v.shape:
            out[k] = v.float()
    last_rgb = max(int(k.split(".")[1]) for k in new if k.startswith("to_rgbs."))
    for k in (f"to_rgbs.{last_rgb}.conv.weight", f"to_rgbs.{last_rgb}.bias"):
        out[k] = torch.zeros_like(new[k])
    return out


def grow_encoder_state(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The old encoder in the grown one; the offsets of the new W+ rows start at zero."""
    out = dict(new)
    for k, v in old.items():
        if k not in out:
            continue
        if out[k].shape == v.shape:
            out[k] = v.float()
        elif k.startswith("to_offsets."):
            grown = torch.zeros_like(new[k])
            grown[: v.shape[0]] = v.float()
            out[k] = grown
    return out


def edit_axes(path: Path) -> torch.Tensor:
    """The edit directions of a directions file, one unit row each (per-layer entries and the
    variants fitted alone left out): the axes the critic's edited codes move along."""
    found = [v.float() for k, v in load_file(str(path)).items() if v.ndim == 1 and "." not in k]
    if not found:
        raise UserError(f"no edit directions in {path}")
    axes = torch.stack(found)
    return axes / axes.norm(dim=1, keepdim=True)


def is_new_parameter(name: str, n_blocks: int) -> bool:
    """Generator / encoder parameters that growing added (the ones trained alone first)."""
    if name.startswith(("detail", "to_offsets")):
        return True
    parts = name.split(".")
    if parts[0] == "convs":
        return int(parts[1]) >= 2 * (n_blocks - 1)
    if parts[0] == "to_rgbs":
        return int(parts[1]) == n_blocks - 1
    return False


class SharpTrainer(Trainer):
    """:class:`Trainer` with the grown model, a PatchGAN critic and codes off the data."""

    def __init__(
        self, recipe: Recipe, config: GeneratorConfig, run_dir: Path, seed: int = 0, device: torch.device | str = "cpu"
    ):
        super().__init__(recipe, config, run_dir, seed, device)
        self.directions = torch.zeros(0, config.style_dim, device=device)
        self.adaptive_weight = 0.0

    def encoder_config(self, config: GeneratorConfig) -> EncoderConfig:
        # The encoder keeps working at the old resolution, plus a detail branch at the new one.
        return EncoderConfig(
            config.resolution // 2, config.style_dim, config.n_latent, input_resolution=config.resolution
        )

    def make_critic(self) -> nn.Module:
        return PatchDiscriminator()

    # ---- growing from a smaller compact state

    def save_compact(self, path: Path) -> None:
        """As :class:`Trainer`'s, plus the edit directions the critic's edited codes move along."""
        super().save_compact(path)
        if len(self.directions):
            tensors = load_file(str(path))
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
            save_file({**tensors, "directions": self.directions.cpu().contiguous()}, str(path), metadata=meta)

    def load_compact(self, path: Path) -> None:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            stored = f.get_tensor("directions") if "directions" in f.keys() else None
        old_config = GeneratorConfig.from_dict(json.loads(meta["config"]))
        if old_config.resolution == self.config.resolution:
            super().load_compact(path)
            if stored is not None:
                self.directions = stored.float().to(self.device)
            return
        tensors = load_file(str(path))
        for name, net in (("G", self.G), ("G_ema", self.G_ema), ("E", self.E), ("E_ema", self.E_ema)):
            old = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
            grow = grow_generator_state if name.startswith("G") else grow_encoder_state
            net.load_state_dict(grow(old, net.state_dict()))
        self.prior.load({k: tensors[f"prior.{k}"] for k in self.prior.moments})
        state = json.loads(meta["state"])
        self.state = TrainState(**{**state, "grown_at": state["images_seen"]})
        directions = path.parent / DIRECTIONS_FILE
        if directions.exists():
            self.use_edit_directions(directions)

    def use_edit_directions(self, path: Path) -> None:
        self.directions = edit_axes(path).to(self.device)

    def full_state(self) -> dict:
        return {**super().full_state(), "directions": self.directions}

    def load(self, path: Path) -> dict:
        ckpt = super().load(path)
        if "directions" in ckpt:
            self.directions = ckpt["directions"].float().to(self.device)
        elif (path.parent / "directions.pt").exists():  # states written before directions were kept inside
            self.directions = torch.load(path.parent / "directions.pt", weights_only=True).to(self.device)
        return ckpt

    # ---- codes with no reconstruction target

    def manifold_codes(self, w: torch.Tensor, offsets: torch.Tensor, count: int) -> torch.Tensor:
        """W+ codes the app decodes but the data never shows: prior samples, mixes, edits."""
        n_latent, device = self.config.n_latent, w.device
        third = max(count // 3, 1)
        prior = self.prior.sample(third).unsqueeze(1).expand(-1, n_latent, -1)
        pick = torch.randint(0, w.shape[0], (2, third), device=device)
        t = torch.rand(third, 1, 1, device=device)
        codes = w.unsqueeze(1) + offsets
        mixes = torch.lerp(codes[pick[0]], codes[pick[1]], t)
        n_edit = count - 2 * third
        edits = codes[torch.randint(0, w.shape[0], (n_edit,), device=device)]
        if len(self.directions) and n_edit > 0:
            d = self.directions[torch.randint(0, len(self.directions), (n_edit,), device=device)]
            d = d / d.norm(dim=1, keepdim=True)
            sigma = ((d @ self.prior.cov) * d).sum(1).clamp_min(1e-8).sqrt()
            strength = (torch.rand(n_edit, device=device) * 2 - 1) * self.recipe.edit_range * sigma
            edits = edits + (strength[:, None] * d).unsqueeze(1)
        return torch.cat([prior, mixes, edits])

    # ---- one step

    def set_stage(self) -> bool:
        """Train only the grown blocks for the first ``freeze_images`` (or always, for a ``top_only``
        recipe); returns True meanwhile."""
        frozen = self.recipe.top_only or self.state.images_seen - self.state.grown_at < self.recipe.freeze_images
        n_blocks = len(self.G.to_rgbs)
        for name, p in self.G.named_parameters():
            if not name.startswith("style."):
                p.requires_grad_(not frozen or is_new_parameter(name, n_blocks))
        for name, p in self.E.named_parameters():  # top_only: the encoder's codes stay as they are
            p.requires_grad_(not frozen or (is_new_parameter(name, n_blocks) and not self.recipe.top_only))
        return frozen

    def spread_penalty(self, w: torch.Tensor) -> torch.Tensor:
        """Squared relative error of the batch's variance per axis (about the running mean) against
        the recipe's. Both ways: held only from above, the batches' noise alone drove it down
        (139 to 120 in 14k images)."""
        spread = (w - self.prior.mean).square().mean()
        return (spread / self.recipe.w_variance - 1).square()

    def last_layer_weight(self, loss: torch.Tensor, adv: torch.Tensor) -> float:
        """taming's adaptive weight: ||grad rec|| / ||grad adv|| at the generator's last layer."""
        last = self.G.to_rgbs[-1].conv.weight
        g_rec = torch.autograd.grad(loss, last, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adv, last, retain_graph=True)[0]
        return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, 1e4).item()

    def step(self, real: torch.Tensor) -> dict[str, float]:
        r, G, D, P = self.recipe, self.G, self.D, self.perceptual
        frozen = self.set_stage()
        since_growth = self.state.images_seen - self.state.grown_at
        gan_on = since_growth >= r.adversarial_after
        logs: dict[str, float] = {"frozen": float(frozen)}

        w, offsets, fake = self.reconstruct(real)
        with torch.no_grad():
            feats_real = P.raw_features(real)
        l1 = (fake - real).abs().mean()
        lp = P.distance_from_features(P.raw_features(fake), feats_real).mean()
        rec = r.pixel * l1 + r.perceptual * lp
        loss = rec + r.offset_reg * offsets.square().mean()
        logs["l1"], logs["lpips"] = l1.item(), lp.item()
        # The spread of the encoded W: nothing but the losses holds it, and where it ran away
        # (sharp-128-near to a variance of 1532, sharp-128-anneal to 1080) the samples collapsed.
        logs["w_var"] = self.prior.cov.diagonal().mean().item()
        if r.w_variance:
            loss = loss + r.w_variance_weight * self.spread_penalty(w)

        fakes = fake
        if gan_on:
            if r.manifold_codes:
                fakes = torch.cat(
                    [fake, G.synthesis(self.manifold_codes(w.detach(), offsets.detach(), r.manifold_codes))]
                )
            adv = -D(diff_augment(fakes, cutout=r.cutout)).mean()
            if self.state.step % ADAPTIVE_EVERY == 0 or not self.adaptive_weight:
                self.adaptive_weight = self.last_layer_weight(rec, adv)
            loss = loss + r.adversarial * self.adaptive_weight * adv
            logs["g_adv"], logs["adv_weight"] = adv.item(), self.adaptive_weight
        descend(self.opt_g, loss)

        if gan_on:
            real_seen = diff_augment(real, cutout=r.cutout)
            d_loss = hinge_critic_loss(D(real_seen), D(diff_augment(fakes.detach(), cutout=r.cutout)))
            if r.r1_gamma and self.state.step % r.r1_every == 0:  # lazy, as StyleGAN2: every r1_every steps, scaled up
                r1 = r1_penalty(D, real_seen)
                d_loss = d_loss + r.r1_gamma / 2 * r1 * r.r1_every
                logs["r1"] = r1.item()
            descend(self.opt_d, d_loss)
            logs["d"] = d_loss.item()

        self.update_averages(real.shape[0])
        return logs


def trainer_for(recipe: Recipe) -> type[Trainer]:
    """The trainer a recipe needs: the pixel critic comes with growing."""
    return SharpTrainer if recipe.critic == "patch" else Trainer
