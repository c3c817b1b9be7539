"""Toy nets for quick experiments.

``toy_dilated``: four 3x3 convs of 32 channels with dilation 1, 2, 4, 8
(padding = dilation keeps the size), each followed by BN and GELU, then
global average pooling and a linear head. ``conv_bias`` gives the convs a bias
(redundant before BatchNorm, but enhuiz/image-classification's toy net has one).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.norms import make_input_norm
from .registry import register_model


class ToyDilated(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8),
                 conv_bias: bool = False, input_norm: str = "dataset"):
        super().__init__()
        self.input_norm = make_input_norm(input_norm)
        layers: list[nn.Module] = []
        cin = 3
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d, bias=conv_bias), nn.BatchNorm2d(width), nn.GELU()]
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(self.input_norm(x))), 1))


@register_model
def toy_dilated(num_classes: int = 10, width: int = 32, conv_bias: bool = False,
                head_classes: int | None = None, input_norm: str = "dataset") -> nn.Module:
    """``head_classes``: outputs of the head if not ``num_classes`` (e.g. an untailored 1000-way head);
    ``input_norm``: as the ResNets' (``dataset``, ``scalar_ema``, ``per_channel_ema``, ``none``)."""
    return ToyDilated(head_classes or num_classes, width=width, conv_bias=conv_bias, input_norm=input_norm)
