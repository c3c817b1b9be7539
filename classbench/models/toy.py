"""Toy nets for quick experiments.

``toy_dilated``: four 3x3 convs of 32 channels with dilation 1, 2, 4, 8
(padding = dilation keeps the size), each followed by BN and GELU, then
global average pooling and a linear head.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


class ToyDilated(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d, bias=False), nn.BatchNorm2d(width), nn.GELU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@register_model
def toy_dilated(num_classes: int = 10, width: int = 32) -> nn.Module:
    return ToyDilated(num_classes, width=width)
