"""Xception for 32x32 inputs (CIFAR adaptation in the manner of weiaicunzai/pytorch-cifar100).

Entry flow: two 3x3 stride-1 convs (32, 64), then three residual blocks of
separable convs ending in a 3x3/2 max-pool (128, 256, 728 channels) with 1x1
stride-2 projection shortcuts (32 -> 16 -> 8 -> 4). Middle flow: 8 residual
blocks of 3 x (ReLU, separable conv 728, BN). Exit flow: a residual block to
1024 channels with a max-pool (-> 2), separable convs to 1536 and 2048, global
average pool and a linear head.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


class SeparableConv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(
            nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class DownBlock(nn.Module):
    """[ReLU] sep-conv BN ReLU sep-conv BN, max-pool /2, plus a 1x1 stride-2 projection."""

    def __init__(self, cin: int, cmid: int, cout: int, relu_first: bool = True):
        super().__init__()
        self.residual = nn.Sequential(
            *([nn.ReLU()] if relu_first else []),
            SeparableConv2d(cin, cmid), nn.BatchNorm2d(cmid), nn.ReLU(inplace=True),
            SeparableConv2d(cmid, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class MiddleBlock(nn.Module):
    def __init__(self, c: int = 728):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ReLU(), SeparableConv2d(c, c), nn.BatchNorm2d(c)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


class Xception(nn.Module):
    def __init__(self, num_classes: int = 10, middle_blocks: int = 8):
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            DownBlock(64, 128, 128, relu_first=False),
            DownBlock(128, 256, 256),
            DownBlock(256, 728, 728),
        )
        self.middle = nn.Sequential(*(MiddleBlock(728) for _ in range(middle_blocks)))
        self.exit = nn.Sequential(
            DownBlock(728, 728, 1024),
            SeparableConv2d(1024, 1536), nn.BatchNorm2d(1536), nn.ReLU(inplace=True),
            SeparableConv2d(1536, 2048), nn.BatchNorm2d(2048), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit(self.middle(self.entry(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model
def xception(num_classes: int = 10) -> nn.Module:
    return Xception(num_classes)
