"""mini-Xception facial-emotion classifier (Arriaga et al. 2017), as a small PyTorch module.

The network is the FER2013 model of oarriaga/face_classification: two plain 3x3 convs, four
residual depthwise-separable modules (16, 32, 64, 128 channels), a 3x3 conv to the 7 classes and
global average pooling. It reproduces the Keras original (TensorFlow padding rules, batch-norm
epsilon 1e-3); ``tools/convert_emotion_weights.py`` writes its weights from the Keras HDF5 file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
KERAS_BN_EPS = 1e-3  # Keras' default; PyTorch's 1e-5 would shift every normalised activation


def max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max pooling with TensorFlow's 'same' padding: output ceil(n / stride), the extra pad at the end."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, 'same', no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualModule(nn.Module):
    """Two separable convs and a strided max pool, plus a strided 1x1 conv shortcut; halves the size."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.sep1 = SeparableConv(c_in, c_out)
        self.bn1 = nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS)
        self.sep2 = SeparableConv(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)  # TF 'same' needs no pad for 1x1
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = max_pool_same(self.bn2(self.sep2(y)))
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """(N, 1, 64, 64) greyscale in [-1, 1] -> (N, 7) emotion logits, in the order of :data:`EMOTIONS`."""

    def __init__(self, n_classes: int = len(EMOTIONS), widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)  # 'valid': 64 -> 62
        self.bn1 = nn.BatchNorm2d(8, eps=KERAS_BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)  # 62 -> 60
        self.bn2 = nn.BatchNorm2d(8, eps=KERAS_BN_EPS)
        chans = (8, *widths)
        self.blocks = nn.ModuleList(ResidualModule(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(widths[-1], n_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))  # global average pooling; softmax is the caller's
