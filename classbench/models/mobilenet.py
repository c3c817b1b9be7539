"""MobileNet v1 for 32x32 inputs (CIFAR strides, as in kuangliu/pytorch-cifar).

A 3x3 stride-1 stem with 32 channels, then 13 depthwise-separable blocks
(3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU) with stride 2 at the
128, 256, 512 and 1024-channel transitions (32 -> 16 -> 8 -> 4 -> 2), global
average pool and a linear head. ``width`` scales every channel count.

Options for other layouts:

* ``stem_stride``: 2 halves the input in the stem, as the ImageNet MobileNet
  (32 -> 16 -> 8 -> 4 -> 2 -> 1).
* ``conv_bias``: whether the convs have a bias (redundant before BatchNorm).
* ``init``: ``kaiming_fan_out`` (convs Kaiming-normal fan-out, conv biases 0) or
  ``torch`` (PyTorch's module defaults).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.init import kaiming_relu_
from .registry import register_model

# (out_channels, stride)
_CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int, bias: bool = False):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=bias), nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, *, stem_stride: int = 1, conv_bias: bool = False,
                 init: str = "kaiming_fan_out"):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2; got {stem_stride!r}")
        if init not in ("kaiming_fan_out", "torch"):
            raise ValueError(f"init must be kaiming_fan_out or torch; got {init!r}")
        c = lambda n: max(8, int(n * width))  # noqa: E731
        cin = c(32)
        self.stem = nn.Sequential(nn.Conv2d(3, cin, 3, stride=stem_stride, padding=1, bias=conv_bias),
                                  nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        blocks = []
        for cout, stride in _CFG:
            blocks.append(DepthwiseSeparable(cin, c(cout), stride, bias=conv_bias))
            cin = c(cout)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        if init == "kaiming_fan_out":
            kaiming_relu_(self, "fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@register_model
def mobilenetv1(num_classes: int = 10, width: float = 1.0, stem_stride: int = 1, conv_bias: bool = False,
                init: str = "kaiming_fan_out") -> nn.Module:
    return MobileNetV1(num_classes, width=width, stem_stride=stem_stride, conv_bias=conv_bias, init=init)
