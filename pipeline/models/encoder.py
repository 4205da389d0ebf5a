"""Image -> W+ encoder: the first guess of an inversion.

It predicts one base latent ``w`` plus a per-layer offset for each of the
generator's ``n_latent`` style inputs (as e4e does): editing works best when W+
stays close to a single W, so the offsets start at zero and are regularised.
"""

from __future__ import annotations

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
        self.stem = nn.Conv2d(3, chans[0], 3, padding=1)
        if config.input_resolution > config.resolution:
            if config.input_resolution != 2 * config.resolution:
                raise ValueError("the detail branch takes an input twice the encoder's resolution")
            self.detail = nn.Sequential(
                nn.Conv2d(3, config.detail_channels, 3, padding=1), nn.LeakyReLU(0.2),
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


def save_encoder(encoder: Encoder, path: str | Path, half: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in encoder.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps(encoder.config.to_dict(), indent=2))


def load_encoder(path: str | Path) -> Encoder:
    path = Path(path)
    if not path.exists():
        raise UserError(f"encoder weights not found: {path}")
    config = EncoderConfig(**json.loads(path.with_suffix(".json").read_text()))
    encoder = Encoder(config)
    encoder.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return encoder.eval()
