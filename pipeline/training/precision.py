"""The arithmetic training runs in: bfloat16 autocast where the hardware runs it natively.

Only convolutions and matrix products run in bfloat16 (autocast); weights, optimiser moments,
EMA copies and the latent codes stay float32. bfloat16 has float32's exponent range, so no loss
scaling is needed. On 2 cores with AMX a 128-px generator step of batch 32 takes 1.21 s instead
of 3.65 s, and one step's gradient keeps a cosine of ~0.96 to float32's: far closer than two
batches' gradients are to each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# PyTorch is imported inside the functions: the CLI's parser reads PRECISIONS without it.
PRECISIONS = ("auto", "fp32", "bf16")


def bf16_is_fast(device: str) -> bool:
    """Whether bfloat16 arithmetic runs natively on ``device`` (CPUs with AMX or AVX512-BF16;
    elsewhere it is emulated and slower than float32)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and (
        torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    )


def use_bf16(precision: str, device: str) -> bool:
    """``auto``: bfloat16 where it is fast; ``bf16`` or ``fp32``: as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and bf16_is_fast(device))


def arithmetic(device: str, bf16: bool) -> torch.autocast:
    """The context a training step runs in."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


def describe(device: str, bf16: bool) -> str:
    return f"arithmetic: {'bfloat16 autocast' if bf16 else 'float32'} on {device}"
