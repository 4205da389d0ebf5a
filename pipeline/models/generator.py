"""StyleGAN2 generator (mapping + synthesis) and discriminator in plain PyTorch.

Module and parameter names follow rosinality's ``stylegan2-pytorch`` so that the
public FFHQ checkpoints load with ``load_state_dict(strict=True)``.

Two numerically equivalent execution paths exist:

* ``fast`` (default): modulation is applied to the activations so one shared
  convolution serves the whole batch, blur is a depthwise convolution and the
  ToRGB upsampling a strided depthwise transposed convolution. This is what makes
  the model usable for inference and training on a CPU.
* ``reference``: the paper's per-sample weight modulation with grouped
  convolutions and a generic ``upfirdn2d``; kept to prove the fast path changes
  nothing (tests compare both against golden outputs).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


# --------------------------------------------------------------------------- config


@dataclass
class GeneratorConfig:
    """Everything needed to build a generator; saved next to the weights as JSON."""

    resolution: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    channels: dict[int, int] = field(default_factory=dict)  # resolution -> channels
    blur_kernel: list[int] = field(default_factory=lambda: [1, 3, 3, 1])
    lr_mlp: float = 0.01
    # A linear last mapping layer lets the mapping be an exact Gaussian prior
    # (w = mean + L z), as our embedded model uses; the public models keep False.
    mapping_linear: bool = False

    def __post_init__(self) -> None:
        log = math.log2(self.resolution)
        if self.resolution < 4 or log != int(log):
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        self.channels = {int(k): int(v) for k, v in self.channels.items()}
        missing = [r for r in self.resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"channels missing for resolutions {missing}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.log_size + 1)]

    @property
    def n_latent(self) -> int:
        """Number of per-layer latents (the length of a W+ code)."""
        return self.log_size * 2 - 2

    @property
    def num_noise_layers(self) -> int:
        return (self.log_size - 2) * 2 + 1

    @classmethod
    def rosinality(
        cls, resolution: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2, **kw
    ) -> GeneratorConfig:
        """The channel layout of rosinality's / NVIDIA's config-e/f generators."""
        table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
        channels = {r: (c if r <= 32 else c * channel_multiplier) for r, c in table.items()}
        channels = {r: c for r, c in channels.items() if r <= resolution}
        return cls(resolution=resolution, style_dim=style_dim, n_mlp=n_mlp, channels=channels, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        d = dict(d)
        d["channels"] = {int(k): int(v) for k, v in d["channels"].items()}
        return cls(**d)


# --------------------------------------------------------------------------- primitive ops


def make_kernel(k: list[int] | torch.Tensor) -> torch.Tensor:
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Generic upsample / FIR filter / downsample, as in the reference implementation.

    Straightforward and slow (one single-channel convolution over batch*channels);
    used by the reference path only.
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x.reshape(n * c, 1, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
    out = out.reshape(n * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).view(1, 1, kh, kw).to(out.dtype)
    out = F.conv2d(out, weight)
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[-2], out.shape[-1])


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), LRELU_SLOPE) * LRELU_GAIN


def depthwise_blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """FIR filter as one depthwise convolution (the fast equivalent of upfirdn2d)."""
    c = x.shape[1]
    weight = torch.flip(kernel, [0, 1])[None, None].to(x.dtype).expand(c, 1, -1, -1)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, weight, groups=c)


# --------------------------------------------------------------------------- layers


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights scaled at run time)."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    def __init__(self, kernel: list[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if reference:
            return upfirdn2d(x, self.kernel, pad=self.pad)
        return depthwise_blur(x, self.kernel, self.pad)


class Upsample(nn.Module):
    """2x upsampling with an FIR filter (used on the RGB skip path)."""

    def __init__(self, kernel: list[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if reference:
            return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)
        # Zero-insertion + FIR == strided transposed depthwise conv; crop to match padding.
        c = x.shape[1]
        k = self.kernel.shape[0]
        weight = self.kernel[None, None].to(x.dtype).expand(c, 1, -1, -1)
        out = F.conv_transpose2d(x, weight, stride=self.factor, groups=c)
        # Full transposed output has size (h-1)*f + k; the reference keeps a window
        # starting at offset k-1-pad0 of length h*f.
        start = k - 1 - self.pad[0]
        h, w = x.shape[-2] * self.factor, x.shape[-1] * self.factor
        return out[:, :, start : start + h, start : start + w]


class ModulatedConv2d(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: list[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        self.padding = kernel_size // 2
        if upsample:
            factor = 2
            p = len(blur_kernel) - factor - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor, reference: bool = False) -> torch.Tensor:
        if reference:
            return self._forward_grouped(x, style)
        batch = x.shape[0]
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        style = self.modulation(style)  # (batch, in)
        x = x * style.view(batch, -1, 1, 1).to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # Demodulation coefficient of the per-sample weight, computed without building it.
            dcoef = torch.rsqrt(style.square() @ weight.square().sum((2, 3)).t() + 1e-8)  # (batch, out)
            out = out * dcoef.view(batch, -1, 1, 1).to(out.dtype)
        return out

    def _forward_grouped(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The paper's formulation: one modulated weight per sample, grouped conv."""
        batch, in_ch, h, w = x.shape
        k = self.kernel_size
        style = self.modulation(style).view(batch, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            demod = torch.rsqrt(weight.square().sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_ch, 1, 1, 1)
        x = x.reshape(1, batch * in_ch, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            out = out.view(batch, self.out_ch, out.shape[-2], out.shape[-1])
            return self.blur(out, reference=True)
        weight = weight.view(batch * self.out_ch, in_ch, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_ch, h, w)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel=(1, 3, 3, 1),
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise=None, reference: bool = False):
        out = self.conv(x, style, reference=reference)
        out = self.noise(out, noise)
        return self.activate(out)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias.to(x.dtype))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(list(blur_kernel))
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None, reference: bool = False):
        out = self.conv(x, style, reference=reference) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip, reference=reference)
        return out


# --------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style`` (z -> W) and the synthesis network."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, sd, bk = config.channels, config.style_dim, config.blur_kernel
        self.style_dim = sd
        self.n_latent = config.n_latent
        self.num_layers = config.num_noise_layers

        self.style = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(
                    sd, sd, lr_mul=config.lr_mlp, activation=not (config.mapping_linear and i == config.n_mlp - 1)
                )
                for i in range(config.n_mlp)
            ],
        )
        self.input = ConstantInput(c[4])
        self.conv1 = StyledConv(c[4], c[4], 3, sd, blur_kernel=bk)
        self.to_rgb1 = ToRGB(c[4], sd, upsample=False)

        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_ch = c[4]
        for res in config.resolutions[1:]:
            out_ch = c[res]
            self.convs.append(StyledConv(in_ch, out_ch, 3, sd, upsample=True, blur_kernel=bk))
            self.convs.append(StyledConv(out_ch, out_ch, 3, sd, blur_kernel=bk))
            self.to_rgbs.append(ToRGB(out_ch, sd, blur_kernel=bk))
            in_ch = out_ch

    # ---- latent helpers

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (batch, style_dim) -> W (batch, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_w(self, n: int = 10_000, seed: int = 0) -> torch.Tensor:
        """Mean W over ``n`` random z (1, style_dim); the truncation centre."""
        return self.w_stats(n, seed)[0]

    @torch.no_grad()
    def w_stats(self, n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (1, style_dim) and per-dimension std (1, style_dim) of W."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=gen).to(self.device)
        w = torch.cat([self.mapping(chunk) for chunk in z.split(2048)])
        return w.mean(0, keepdim=True), w.std(0, keepdim=True)

    def noise_buffers(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch: int = 1, seed: int | None = None) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return [
            torch.randn(batch, 1, b.shape[-2], b.shape[-1], generator=gen).to(self.device) for b in self.noise_buffers()
        ]

    def to_wplus(
        self,
        latents: list[torch.Tensor],
        input_is_latent: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
    ) -> torch.Tensor:
        """Turn one or two z/W/W+ inputs into a W+ code (batch, n_latent, style_dim)."""
        if not input_is_latent:
            latents = [self.mapping(z) for z in latents]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (see mean_w)")
            latents = [truncation_latent + truncation * (w - truncation_latent) for w in latents]
        n = self.n_latent

        def expand(w: torch.Tensor, count: int) -> torch.Tensor:
            return w.unsqueeze(1).repeat(1, count, 1) if w.ndim == 2 else w

        if len(latents) == 1:
            return expand(latents[0], n)
        if len(latents) != 2:
            raise ValueError("style mixing takes exactly two latents")
        if inject_index is None:
            inject_index = random.randint(1, n - 1)
        first = expand(latents[0], n)[:, :inject_index]
        second = expand(latents[1], n)[:, inject_index:]
        return torch.cat([first, second], 1)

    # ---- synthesis

    def synthesis(
        self,
        wplus: torch.Tensor,
        noise: list[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        reference: bool = False,
    ) -> torch.Tensor:
        """W+ (batch, n_latent, style_dim) -> image (batch, 3, res, res), range about [-1, 1]."""
        if wplus.ndim != 3 or wplus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(
                f"expected W+ of shape (batch, {self.n_latent}, {self.style_dim}), got {tuple(wplus.shape)}"
            )
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.noise_buffers()
        dtype = next(self.parameters()).dtype
        wplus = wplus.to(dtype)
        out = self.input(wplus.shape[0])
        out = self.conv1(out, wplus[:, 0], noise=noise[0], reference=reference)
        skip = self.to_rgb1(out, wplus[:, 1], reference=reference)
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv_up(out, wplus[:, i], noise=n1, reference=reference)
            out = conv(out, wplus[:, i + 1], noise=n2, reference=reference)
            skip = to_rgb(out, wplus[:, i + 2], skip, reference=reference)
            i += 2
        return skip

    def forward(
        self,
        styles: list[torch.Tensor],
        input_is_latent: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
        noise: list[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        return_latents: bool = False,
        reference: bool = False,
    ):
        """Same call signature as rosinality's ``Generator.forward``."""
        wplus = self.to_wplus(styles, input_is_latent, truncation, truncation_latent, inject_index)
        image = self.synthesis(wplus, noise=noise, randomize_noise=randomize_noise, reference=reference)
        return (image, wplus) if return_latents else (image, None)


# --------------------------------------------------------------------------- discriminator


class ConvLayer(nn.Sequential):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel=(1, 3, 3, 1),
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        stride, padding = 1, kernel_size // 2
        if downsample:
            p = len(blur_kernel) - 2 + (kernel_size - 1)
            layers.append(Blur(list(blur_kernel), pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        for layer in self:
            x = layer(x, reference=reference) if isinstance(layer, Blur) else layer(x)
        return x


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        return (self.conv2(self.conv1(x), reference) + self.skip(x, reference)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator with a minibatch standard-deviation layer."""

    def __init__(self, resolution: int, channels: dict[int, int], blur_kernel=(1, 3, 3, 1), stddev_group: int = 4):
        super().__init__()
        channels = {int(k): int(v) for k, v in channels.items()}
        log_size = int(math.log2(resolution))
        convs: list[nn.Module] = [ConvLayer(3, channels[resolution], 1)]
        in_ch = channels[resolution]
        for i in range(log_size, 2, -1):
            out_ch = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(in_ch + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 16, channels[4], activation=True), EqualLinear(channels[4], 1)
        )

    def forward(self, x: torch.Tensor, reference: bool = False) -> torch.Tensor:
        out = self.convs[0](x)
        for block in self.convs[1:]:
            out = block(out, reference)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        while b % group:
            group -= 1
        std = out.view(group, -1, 1, c, h, w)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        std = std.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.view(b, -1))
