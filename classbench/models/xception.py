"""Xception for 32x32 inputs (CIFAR adaptation in the manner of weiaicunzai/pytorch-cifar100).

Entry flow: two 3x3 stride-1 convs (32, 64), then three residual blocks of
separable convs ending in a 3x3/2 max-pool (128, 256, 728 channels) with 1x1
stride-2 projection shortcuts (32 -> 16 -> 8 -> 4). Middle flow: 8 residual
blocks of 3 x (ReLU, separable conv 728, BN). Exit flow: a residual block to
1024 channels with a max-pool (-> 2), separable convs to 1536 and 2048, global
average pool and a linear head.

Options for other layouts (defaults: the layout above):

* ``stem_stride``: 2 makes the first conv halve the input (32 -> 16 -> 8 -> 4 -> 2 -> 1).
* ``conv_bias``: whether every conv (separable parts and shortcuts too) has a bias.
* ``shortcut_norm``: a BatchNorm after each 1x1 projection shortcut.
* ``exit_norm``: a BatchNorm after each of the two exit sep-convs.
* ``middle_shortcut``: ``identity`` (x + F(x), the paper) or ``relu`` (relu(x) + F(x)):
  the function Fanziyang-v/PyTorch-Classification's middle blocks compute, because their
  first in-place ReLU also rewrites the tensor the shortcut holds.
* ``init``: ``kaiming_fan_out`` (convs Kaiming-normal fan-out, conv biases 0) or
  ``torch`` (PyTorch's module defaults).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.init import kaiming_relu_
from .registry import register_model


class SeparableConv2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, bias: bool = False):
        super().__init__(
            nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=bias),
            nn.Conv2d(cin, cout, 1, bias=bias),
        )


def _norm(channels: int, use: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use else nn.Identity()


class DownBlock(nn.Module):
    """[ReLU] sep-conv BN ReLU sep-conv BN, max-pool /2, plus a 1x1 stride-2 projection [+ BN]."""

    def __init__(self, cin: int, cmid: int, cout: int, relu_first: bool = True, bias: bool = False,
                 shortcut_norm: bool = True):
        super().__init__()
        self.residual = nn.Sequential(
            *([nn.ReLU()] if relu_first else []),
            SeparableConv2d(cin, cmid, bias=bias), nn.BatchNorm2d(cmid), nn.ReLU(inplace=True),
            SeparableConv2d(cmid, cout, bias=bias), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=bias), _norm(cout, shortcut_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class MiddleBlock(nn.Module):
    def __init__(self, c: int = 728, bias: bool = False, relu_shortcut: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ReLU(), SeparableConv2d(c, c, bias=bias), nn.BatchNorm2d(c)]
        self.residual = nn.Sequential(*layers)
        self.relu_shortcut = relu_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.relu(x) if self.relu_shortcut else x) + self.residual(x)


class Xception(nn.Module):
    def __init__(self, num_classes: int = 10, middle_blocks: int = 8, *, stem_stride: int = 1, conv_bias: bool = False,
                 shortcut_norm: bool = True, exit_norm: bool = True, middle_shortcut: str = "identity",
                 init: str = "kaiming_fan_out"):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2; got {stem_stride!r}")
        if middle_shortcut not in ("identity", "relu"):
            raise ValueError(f"middle_shortcut must be identity or relu; got {middle_shortcut!r}")
        if init not in ("kaiming_fan_out", "torch"):
            raise ValueError(f"init must be kaiming_fan_out or torch; got {init!r}")
        b = dict(bias=conv_bias, shortcut_norm=shortcut_norm)
        self.entry = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=stem_stride, padding=1, bias=conv_bias), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            DownBlock(64, 128, 128, relu_first=False, **b),
            DownBlock(128, 256, 256, **b),
            DownBlock(256, 728, 728, **b),
        )
        self.middle = nn.Sequential(*(MiddleBlock(728, conv_bias, middle_shortcut == "relu")
                                      for _ in range(middle_blocks)))
        self.exit = nn.Sequential(
            DownBlock(728, 728, 1024, **b),
            SeparableConv2d(1024, 1536, bias=conv_bias), _norm(1536, exit_norm), nn.ReLU(inplace=True),
            SeparableConv2d(1536, 2048, bias=conv_bias), _norm(2048, exit_norm), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        if init == "kaiming_fan_out":
            kaiming_relu_(self, "fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.exit(self.middle(self.entry(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model
def xception(num_classes: int = 10, stem_stride: int = 1, conv_bias: bool = False, shortcut_norm: bool = True,
             exit_norm: bool = True, middle_shortcut: str = "identity", init: str = "kaiming_fan_out") -> nn.Module:
    return Xception(num_classes, stem_stride=stem_stride, conv_bias=conv_bias, shortcut_norm=shortcut_norm,
                    exit_norm=exit_norm, middle_shortcut=middle_shortcut, init=init)
