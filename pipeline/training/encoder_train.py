"""Fine-tuning the encoder into a W+ encoder for a fixed generator.

The embedded model's encoder was trained jointly with a generator that kept
changing; once the generator is frozen, a short fine-tune against it gives a
better first guess for inversion. Each batch mixes

* generated pairs: ``z -> w -> image``; the encoder must return ``w`` (latent loss,
  in units of W's spread) and reproduce the image (L1 + perceptual): the generator's
  own images have an exactly known answer;
* real training faces: reconstruction L1 + perceptual distance;
* a regulariser on the per-layer offsets that keeps W+ near a single W (e4e's
  argument: codes far from W reconstruct better but edit worse).

Given an :class:`~pipeline.models.encoder.IterativeEncoder`, the same batches train its
refiner instead, the encoder kept as it is: each batch takes a random number of corrections.

Resumable (``run_dir/state.pt``); the result is written with its held-out numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..faces.attributes import IDENTITY_SAME
from ..faces.imaging import save_grid
from ..latent.inversion import w_prior
from ..models.encoder import Encoder, IterativeEncoder, save_encoder
from ..models.generator import Generator
from ..models.perceptual import PerceptualDistance, perceptual_distance, psnr
from ..models.render import from_uint8
from .precision import arithmetic, describe, use_bf16


@dataclass(frozen=True)
class EncoderRecipe:
    batch: int = 16
    synthetic: int = 8  # generated pairs per batch (the rest are real faces)
    lr: float = 2e-4
    pixel: float = 1.0  # L1 weight
    perceptual: float = 1.0
    # The calibrated LPIPS (what the inversion optimises and the benchmarks read) instead of
    # SqueezeNet's features weighted equally, as in the joint training; about 20 times larger.
    calibrated: bool = False
    latent: float = 1.0  # generated pairs: squared W error / W spread^2
    offset_reg: float = 0.1  # mean squared per-layer offset / W spread^2
    ema_half_life: int = 2000  # images


@dataclass
class EncoderTrainState:
    step: int = 0
    images_seen: int = 0
    wall_seconds: float = 0.0


def trained_part(encoder: Encoder | IterativeEncoder) -> Encoder:
    """What training changes: an iterative encoder's refiner (its encoder stays as it is), else the encoder."""
    return encoder.refiner if isinstance(encoder, IterativeEncoder) else encoder


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


class EncoderTrainer:
    def __init__(self, G: Generator, encoder: Encoder | IterativeEncoder, recipe: EncoderRecipe, seed: int = 0):
        torch.manual_seed(seed)
        self.G = G.eval().requires_grad_(False)
        self.E = encoder.train().requires_grad_(False)
        self.trained = trained_part(self.E).requires_grad_(True)
        self.E_ema = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.recipe = recipe
        self.opt = torch.optim.Adam(self.trained.parameters(), lr=recipe.lr, betas=(0.9, 0.99))
        self.perceptual = PerceptualDistance(calibrated=recipe.calibrated, resize=None)
        self.w_mean, self.w_spread = w_prior(G)
        self.state = EncoderTrainState()

    def step(self, real: torch.Tensor) -> dict[str, float]:
        r, G, E = self.recipe, self.G, self.E
        n_syn = min(r.synthetic, r.batch)
        with torch.no_grad():
            w_true = G.mapping(torch.randn(n_syn, G.style_dim))
            fake = G.synthesis(w_true[:, None].expand(-1, G.n_latent, -1))  # random noise, like photos
        images = torch.cat([fake.clamp(-1, 1), real])
        w, offsets = E(images)
        wplus = w[:, None] + offsets
        recon = G.synthesis(wplus, noise=G.noise_buffers())
        spread2 = self.w_spread**2 / G.style_dim  # per-dimension variance of W
        l1 = (recon - images).abs().mean()
        lp = self.perceptual(recon, images).mean()
        latent = (wplus[:n_syn] - w_true[:, None]).square().mean() / spread2
        offset = offsets.square().mean() / spread2
        loss = r.pixel * l1 + r.perceptual * lp + r.latent * latent + r.offset_reg * offset
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        decay = 0.5 ** (images.shape[0] / r.ema_half_life)
        with torch.no_grad():
            for pe, p in zip(trained_part(self.E_ema).parameters(), self.trained.parameters()):
                pe.lerp_(p, 1 - decay)
        self.state.step += 1
        self.state.images_seen += images.shape[0]
        return {"l1": l1.item(), "lpips": lp.item(), "latent": latent.item(), "offset": offset.item()}

    def save(self, path: Path, generator_digest: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"E": self.E.state_dict(), "E_ema": self.E_ema.state_dict(), "opt": self.opt.state_dict(),
                    "state": asdict(self.state), "recipe": asdict(self.recipe), "generator": generator_digest}, tmp)  # fmt: skip
        tmp.replace(path)

    def load(self, path: Path, generator_digest: str) -> bool:
        """Resume from ``path`` if it was made against the same generator file."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("generator") != generator_digest:
            return False
        self.E.load_state_dict(ckpt["E"])
        self.E_ema.load_state_dict(ckpt["E_ema"])
        self.opt.load_state_dict(ckpt["opt"])
        self.state = EncoderTrainState(**ckpt["state"])
        return True


@torch.no_grad()
def evaluate_encoder(
    G: Generator, E: Encoder | IterativeEncoder, faces: np.ndarray, identity: Callable | None = None, batch: int = 50
) -> dict[str, float]:
    """Held-out reconstruction of the encoder alone: PSNR, LPIPS (calibrated, 128 px), identity.

    ``identity`` maps a uint8 face to a dlib identity descriptor (see ``inversion_bench``).
    """
    from ..models.render import to_uint8

    net = perceptual_distance(True, 128)
    scores: dict[str, list] = {"psnr": [], "lpips": [], "identity": []}
    seconds = 0.0
    for i in range(0, len(faces), batch):
        real = from_uint8(np.array(faces[i : i + batch]))
        started = time.perf_counter()
        recon = G.synthesis(E.wplus(real), noise=G.noise_buffers())
        seconds += time.perf_counter() - started
        recon = from_uint8(to_uint8(recon))  # score what gets saved
        scores["psnr"].append(psnr(recon, real))
        scores["lpips"].append(net(recon, real))
        if identity is not None:
            rec_u8 = to_uint8(recon)
            scores["identity"] += [float(np.linalg.norm(identity(a) - identity(b))) for a, b in zip(rec_u8, faces[i : i + batch])]
    out = {"psnr": float(torch.cat(scores["psnr"]).mean()), "lpips": float(torch.cat(scores["lpips"]).mean()),
           "seconds_per_image": seconds / len(faces), "n": len(faces)}  # fmt: skip
    if scores["identity"]:
        ids = np.asarray(scores["identity"], dtype=np.float64)
        out["identity"] = float(ids.mean())
        out["identity_below_0.6"] = float((ids < IDENTITY_SAME).mean())
    return out


def train_encoder(
    G: Generator,
    encoder: Encoder | IterativeEncoder,
    train_faces: np.ndarray,
    eval_faces: np.ndarray,
    run_dir: Path,
    generator_digest: str,
    recipe: EncoderRecipe = EncoderRecipe(),
    max_minutes: float | None = None,
    max_images: int | None = None,
    resume: bool = True,
    identity: Callable | None = None,
    checkpoint_minutes: float = 5.0,
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> tuple[Encoder, dict]:
    """Fine-tune ``encoder`` against frozen ``G``; returns the EMA encoder and its numbers."""
    trainer = EncoderTrainer(G, copy.deepcopy(encoder), recipe)
    ckpt = run_dir / "state.pt"
    if resume and ckpt.exists():
        if trainer.load(ckpt, generator_digest):
            log(f"resumed from {ckpt} at {trainer.state.images_seen} images")
        else:
            log(f"{ckpt} was made for another generator: starting over")
    before = evaluate_encoder(G, encoder.eval(), eval_faces, identity)
    log(f"held-out before: {before}")
    bf16 = use_bf16(precision, "cpu")
    log(describe("cpu", bf16))
    rng = np.random.default_rng(trainer.state.step)
    n_real = recipe.batch - min(recipe.synthetic, recipe.batch)
    start, base = time.time(), trainer.state.wall_seconds
    last_log = last_ckpt = start
    acc: dict[str, list[float]] = {}

    def finished() -> bool:
        return bool((max_images is not None and trainer.state.images_seen >= max_images)
                    or (max_minutes is not None and time.time() - start >= max_minutes * 60))  # fmt: skip

    while not finished():
        idx = np.sort(rng.integers(0, len(train_faces), n_real))
        batch = np.asarray(train_faces[idx])
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        with arithmetic("cpu", bf16):
            logs = trainer.step(from_uint8(batch))
        for k, v in logs.items():
            acc.setdefault(k, []).append(v)
        trainer.state.wall_seconds = base + time.time() - start
        now = time.time()
        if now - last_log >= 60 or finished():
            log(f"[encoder] images={trainer.state.images_seen} " + " ".join(f"{k}={np.mean(v):.4f}" for k, v in acc.items()))
            acc.clear()
            last_log = now
        if now - last_ckpt >= checkpoint_minutes * 60 or finished():
            trainer.save(ckpt, generator_digest)
            last_ckpt = now
    E = trainer.E_ema.eval()
    after = evaluate_encoder(G, E, eval_faces, identity)
    log(f"held-out after: {after}")
    with torch.no_grad():
        real = from_uint8(np.array(eval_faces[:8]))
        grid = [real, G.synthesis(encoder.wplus(real), noise=G.noise_buffers()), G.synthesis(E.wplus(real), noise=G.noise_buffers())]
    save_grid(torch.cat(grid), run_dir / "heldout_before_after.png", nrow=8)
    info = {"recipe": asdict(recipe), "train": asdict(trainer.state), "heldout_before": before, "heldout_after": after,
            "generator_sha1_16": generator_digest}  # fmt: skip
    return E, info


def write_encoder(E: Encoder | IterativeEncoder, info: dict, out_dir: Path) -> Path:
    """encoder.safetensors (+ .json config; refiner.safetensors for an iterative encoder) and
    encoder_training.json with the numbers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_encoder(E, out_dir / "encoder.safetensors")
    (out_dir / "encoder_training.json").write_text(json.dumps(info, indent=2))
    return out_dir / "encoder.safetensors"
