"""Image -> W+ encoder: the first guess of an inversion.

It predicts one base latent ``w`` plus a per-layer offset for each of the
generator's ``n_latent`` style inputs (as e4e does): editing works best when W+
stays close to a single W, so the offsets start at zero and are regularised.

An :class:`IterativeEncoder` corrects that guess a few times (ReStyle, Alaluf et al.
2021): a refiner sees the photo beside what the current code draws and returns a
correction. The generator draws the codes, so it needs one; the refiner ships as
``refiner.safetensors`` beside ``encoder.safetensors``.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import UserError


@dataclass
class EncoderConfig:
    resolution: int = 64
    style_dim: int = 256
    n_latent: int = 10
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    hidden: int = 512
    # A larger input (twice ``resolution``) adds a detail branch whose features join the
    # stem's: how an encoder grows with its generator without forgetting what it learned.
    input_resolution: int = 0
    detail_channels: int = 16
    in_channels: int = 3  # 6 for a refiner: the photo and the photo minus its reconstruction

    @property
    def image_size(self) -> int:
        return max(self.input_resolution, self.resolution)

    def to_dict(self) -> dict:
        return asdict(self)


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class ResidualDown(nn.Module):
    """Two 3x3 convolutions halving the resolution, with an average-pooled skip."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.leaky_relu(self.conv2(out), 0.2)
        return (out + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        levels = int(math.log2(config.resolution)) - 2  # down to 4x4
        chans = list(config.channels)
        chans = chans + [chans[-1]] * (levels - len(chans))
        self.stem = nn.Conv2d(config.in_channels, chans[0], 3, padding=1)
        if config.input_resolution > config.resolution:
            if config.input_resolution != 2 * config.resolution:
                raise ValueError("the detail branch takes an input twice the encoder's resolution")
            self.detail = nn.Sequential(
                nn.Conv2d(config.in_channels, config.detail_channels, 3, padding=1), nn.LeakyReLU(0.2),
                ResidualDown(config.detail_channels, chans[0]),
            )  # fmt: skip
            self.detail_gain = nn.Parameter(torch.zeros(()))  # starts as the grown-from encoder
        blocks = []
        in_ch = chans[0]
        for out_ch in chans[:levels]:
            blocks.append(ResidualDown(in_ch, out_ch))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(in_ch * 16, config.hidden)
        self.to_w = nn.Linear(config.hidden, config.style_dim)
        self.to_offsets = nn.Linear(config.hidden, config.n_latent * config.style_dim)
        nn.init.zeros_(self.to_offsets.weight)
        nn.init.zeros_(self.to_offsets.bias)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        image = resize(image, self.config.image_size)
        x = F.leaky_relu(self.stem(resize(image, self.config.resolution)), 0.2)
        if hasattr(self, "detail"):
            x = x + self.detail_gain * self.detail(image)
        x = self.blocks(x)
        return F.leaky_relu(self.hidden(x.flatten(1)), 0.2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (batch, 3, H, W) in [-1, 1] -> (w (batch, dim), offsets (batch, n_latent, dim))."""
        h = self.features(image)
        offsets = self.to_offsets(h).view(-1, self.config.n_latent, self.config.style_dim)
        # float32 codes whatever the arithmetic (bfloat16 autocast in training): priors, mixes,
        # edits and penalties computed on them need the precision.
        return self.to_w(h).float(), offsets.float()

    def wplus(self, image: torch.Tensor) -> torch.Tensor:
        w, offsets = self(image)
        return w.unsqueeze(1) + offsets


def refiner_from(encoder: Encoder) -> Encoder:
    """A refiner grown from a trained encoder: its features of the photo to start from, the
    residual's input channels and both heads at zero, so that at first it corrects nothing."""
    config = EncoderConfig(**{**encoder.config.to_dict(), "in_channels": 2 * encoder.config.in_channels})
    refiner = Encoder(config)
    state = refiner.state_dict()
    for name, value in encoder.state_dict().items():
        if name.startswith(("to_w", "to_offsets")):
            continue
        if state[name].shape == value.shape:
            state[name] = value.clone()
        else:  # a first convolution: the photo's channels copied, the residual's at zero
            state[name] = torch.zeros_like(state[name])
            state[name][:, : value.shape[1]] = value
    state["to_w.weight"].zero_()
    state["to_w.bias"].zero_()
    refiner.load_state_dict(state)
    return refiner


class IterativeEncoder(nn.Module):
    """The encoder's guess, then ``steps`` corrections by ``refiner`` from (photo, photo - drawn).

    Called like an :class:`Encoder`. Only the last correction carries gradients (the encoder
    and the earlier corrections run without them), which is how the refiner is trained: on the
    codes it will be given, one correction at a time.
    """

    def __init__(self, encoder: Encoder, refiner: Encoder, generator: nn.Module, steps: int = 3):
        super().__init__()
        self.encoder, self.refiner, self.steps = encoder, refiner, steps
        self.__dict__["generator"] = generator  # not a submodule: its weights are not the encoder's

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    def __deepcopy__(self, memo: dict) -> IterativeEncoder:  # copies share the generator
        twin = IterativeEncoder(
            copy.deepcopy(self.encoder, memo), copy.deepcopy(self.refiner, memo), self.generator, self.steps
        )
        return twin.train(self.training)

    def forward(self, image: torch.Tensor, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, offsets) after ``steps`` corrections; in training, a random 1..``self.steps`` of them."""
        if steps is None:
            steps = int(torch.randint(1, self.steps + 1, ())) if self.training else self.steps
        grad = torch.is_grad_enabled()
        with torch.no_grad():
            w, offsets = self.encoder(image)
        G = self.generator
        size = self.refiner.config.image_size
        target = resize(image, size)
        for i in range(steps):
            with torch.no_grad():
                drawn = resize(G.synthesis(w.unsqueeze(1) + offsets, noise=G.noise_buffers()).float(), size)
            with torch.set_grad_enabled(grad and i == steps - 1):
                dw, doffsets = self.refiner(torch.cat([target, target - drawn], 1))
                w, offsets = w + dw, offsets + doffsets
        return w, offsets

    def wplus(self, image: torch.Tensor) -> torch.Tensor:
        w, offsets = self(image)
        return w.unsqueeze(1) + offsets


def with_refiner(encoder: Encoder | IterativeEncoder, generator: nn.Module, steps: int) -> IterativeEncoder:
    """``encoder`` with ``steps`` corrections: its own refiner if it has one, else one grown from it."""
    if isinstance(encoder, IterativeEncoder):
        return IterativeEncoder(encoder.encoder, encoder.refiner, generator, steps)
    return IterativeEncoder(encoder, refiner_from(encoder), generator, steps)


REFINER_FILE = "refiner.safetensors"


def _save_net(net: Encoder, path: Path, half: bool, extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({**net.config.to_dict(), **(extra or {})}, indent=2))


def _load_net(path: Path) -> tuple[Encoder, dict]:
    info = json.loads(path.with_suffix(".json").read_text())
    extra = {k: info.pop(k) for k in list(info) if k not in EncoderConfig.__dataclass_fields__}
    net = Encoder(EncoderConfig(**info))
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return net.eval(), extra


def save_encoder(encoder: Encoder | IterativeEncoder, path: str | Path, half: bool = True) -> None:
    """``encoder.safetensors`` (+ .json); an iterative encoder also writes ``refiner.safetensors`` beside it."""
    path = Path(path)
    if isinstance(encoder, IterativeEncoder):
        _save_net(encoder.refiner, path.with_name(REFINER_FILE), half, {"steps": encoder.steps})
        encoder = encoder.encoder
    _save_net(encoder, path, half)


def load_encoder(path: str | Path, generator: nn.Module | None = None) -> Encoder | IterativeEncoder:
    """The encoder at ``path``; with ``generator`` given and a refiner beside it, the iterative encoder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"encoder weights not found: {path}")
    encoder, _ = _load_net(path)
    refiner_path = path.with_name(REFINER_FILE)
    if generator is None or not refiner_path.is_file():
        return encoder
    refiner, extra = _load_net(refiner_path)
    return IterativeEncoder(encoder, refiner, generator, int(extra.get("steps", 3))).eval()
