"""Image distances: LPIPS-style perceptual distance on SqueezeNet v1.1 ImageNet features, and PSNR.

The SqueezeNet weights come from the Caffe model (via a Keras conversion), so the
network expects Caffe preprocessing: BGR, 0..255, minus the ImageNet channel mean.
Distances are computed as in LPIPS: unit-normalise each tap's features along the
channel axis, square the difference, weight the channels (the LPIPS v0.1 linear
weights, or equal weights for the ``calibrated=False`` variant), average spatially
and sum over the seven taps.

The LPIPS linear weights were fitted on torchvision's SqueezeNet, whose features
differ in scale from the Caffe network's, hence the uncalibrated variant too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights" / "perceptual"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
FIRE_CHANNELS = {  # name: (squeeze, expand per branch)
    "fire2": (16, 64), "fire3": (16, 64), "fire4": (32, 128), "fire5": (32, 128),
    "fire6": (48, 192), "fire7": (48, 192), "fire8": (64, 256), "fire9": (64, 256),
}  # fmt: skip
TAP_CHANNELS = [64, 128, 256, 384, 384, 512, 512]


class Fire(nn.Module):
    def __init__(self, in_ch: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze1x1 = nn.Conv2d(in_ch, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze1x1(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeFeatures(nn.Module):
    """SqueezeNet v1.1 trunk returning the seven LPIPS taps."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2)
        in_ch = 64
        for name, (squeeze, expand) in FIRE_CHANNELS.items():
            setattr(self, name, Fire(in_ch, squeeze, expand))
            in_ch = 2 * expand
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, 2, ceil_mode=True)  # Caffe pools with ceil mode

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1] -> Caffe BGR 0..255 minus mean."""
        return (image.flip(1) + 1) * 127.5 - self.mean

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.conv1(self.preprocess(image)))
        taps = [x]
        x = self.fire3(self.fire2(self.pool(x)))
        taps.append(x)
        x = self.fire5(self.fire4(self.pool(x)))
        taps.append(x)
        x = self.fire6(self.pool(x))
        taps.append(x)
        for name in ("fire7", "fire8", "fire9"):
            x = getattr(self, name)(x)
            taps.append(x)
        return taps


def unit_normalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().sum(1, keepdim=True) + 1e-10)


class PerceptualDistance(nn.Module):
    """``d(a, b)`` per image (batch,), images RGB in [-1, 1], any size >= 32 px.

    ``resize`` rescales inputs first (SqueezeNet's receptive field suits ~128-256 px).
    """

    def __init__(self, calibrated: bool = True, resize: int | None = None, weights_dir: Path = WEIGHTS_DIR):
        super().__init__()
        self.features = SqueezeFeatures()
        state = load_file(str(weights_dir / "squeezenet1_1.safetensors"))
        self.features.load_state_dict({k.replace("/", "."): v for k, v in state.items()}, strict=False)
        missing = set(self.features.state_dict()) - set(state) - {"mean"}
        if missing:
            raise RuntimeError(f"SqueezeNet weights incomplete: {sorted(missing)[:3]}")
        if calibrated:
            lin = load_file(str(weights_dir / "lpips_squeeze_lin.safetensors"))
            weights = [lin[f"lin{i}"] for i in range(7)]
        else:
            weights = [torch.full((c,), 1.0 / c) for c in TAP_CHANNELS]
        for i, w in enumerate(weights):
            self.register_buffer(f"lin{i}", w.view(1, -1, 1, 1))
        self.resize = resize
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distance_from_features(self.raw_features(a), self.raw_features(b))

    def raw_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The seven taps before normalisation (reusable, e.g. by a feature discriminator)."""
        if self.resize and image.shape[-1] != self.resize:
            image = F.interpolate(image, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True)
        return self.features(image)

    def distance_from_features(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for i, (ta, tb) in enumerate(zip(feats_a, feats_b)):
            total = total + ((unit_normalize(ta) - unit_normalize(tb)).square() * getattr(self, f"lin{i}")).sum(1).mean((1, 2))
        return total

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """A global feature vector per image (spatially pooled last tap), e.g. for KID."""
        x = self.features(image)[-1]
        return x.mean((2, 3))


@lru_cache(maxsize=4)
def perceptual_distance(calibrated: bool = True, resize: int | None = 128) -> PerceptualDistance:
    """Shared read-only instance (models are loaded once per process)."""
    return PerceptualDistance(calibrated=calibrated, resize=resize)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))
