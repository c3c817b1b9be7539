"""MobileNet v1 for 32x32 inputs (CIFAR strides, as in kuangliu/pytorch-cifar).

A 3x3 stride-1 stem with 32 channels, then 13 depthwise-separable blocks
(3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU) with stride 2 at the
128, 256, 512 and 1024-channel transitions (32 -> 16 -> 8 -> 4 -> 2), global
average pool and a linear head. ``width`` scales every channel count.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model

# (out_channels, stride)
_CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c = lambda n: max(8, int(n * width))  # noqa: E731
        cin = c(32)
        self.stem = nn.Sequential(nn.Conv2d(3, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        blocks = []
        for cout, stride in _CFG:
            blocks.append(DepthwiseSeparable(cin, c(cout), stride))
            cin = c(cout)
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@register_model
def mobilenetv1(num_classes: int = 10, width: float = 1.0) -> nn.Module:
    return MobileNetV1(num_classes, width=width)
