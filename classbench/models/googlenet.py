"""GoogLeNet (Inception v1) for 32x32 inputs.

Default (kuangliu/pytorch-cifar's adaptation): a 3x3 conv stem (192 channels, no
early down-sampling), Inception modules 3a-3b, max-pool, 4a-4e, max-pool, 5a-5b
(32 -> 16 -> 8), global average pool and a linear head. Every conv has BN + ReLU;
the 5x5 branch is two 3x3 convs. No auxiliary classifiers.

Options:

* ``stem``: ``cifar`` (the one 3x3 conv to 192 above) or ``pooled`` (3x3 conv to
  64, 3x3 conv to 192, then a 3x3 stride-2 max-pool, so 3a-3b run at 16x16, 4a-4e
  at 8x8 and 5a-5b at 4x4, as Fanziyang-v/PyTorch-Classification).
* ``branch5``: ``double3x3`` (two 3x3 convs) or ``5x5`` (one 5x5 conv, as the paper).
* ``conv_bias``: whether the convs have a bias (redundant before BatchNorm).
* ``init``: ``kaiming_fan_out`` (convs Kaiming-normal fan-out, conv biases 0, the
  linear layer PyTorch's default) or ``kaiming_fan_in`` (convs and the linear
  layer Kaiming-normal fan-in, biases 0).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..layers.init import kaiming_relu_
from .registry import register_model


def _cbr(cin: int, cout: int, k: int, bias: bool) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Inception(nn.Module):
    def __init__(self, cin: int, n1: int, n3red: int, n3: int, n5red: int, n5: int, pool_proj: int, *,
                 branch5: str = "double3x3", bias: bool = True):
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(cin, n1, 1, bias))
        self.b2 = nn.Sequential(*_cbr(cin, n3red, 1, bias), *_cbr(n3red, n3, 3, bias))
        wide = _cbr(n5red, n5, 5, bias) if branch5 == "5x5" else _cbr(n5red, n5, 3, bias) + _cbr(n5, n5, 3, bias)
        self.b3 = nn.Sequential(*_cbr(cin, n5red, 1, bias), *wide)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *_cbr(cin, pool_proj, 1, bias))
        self.out_channels = n1 + n3 + n5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


# (cin, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), the paper's table 1
_3 = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64)]
_4 = [(480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
      (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128)]
_5 = [(832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 10, *, stem: str = "cifar", branch5: str = "double3x3",
                 conv_bias: bool = True, init: str = "kaiming_fan_out"):
        super().__init__()
        if stem not in ("cifar", "pooled"):
            raise ValueError(f"stem must be cifar or pooled; got {stem!r}")
        if branch5 not in ("double3x3", "5x5"):
            raise ValueError(f"branch5 must be double3x3 or 5x5; got {branch5!r}")
        if init not in ("kaiming_fan_out", "kaiming_fan_in"):
            raise ValueError(f"init must be kaiming_fan_out or kaiming_fan_in; got {init!r}")
        if stem == "pooled":
            self.stem = nn.Sequential(*_cbr(3, 64, 3, conv_bias), *_cbr(64, 192, 3, conv_bias),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(*_cbr(3, 192, 3, conv_bias))

        def stage(specs):
            return [Inception(*spec, branch5=branch5, bias=conv_bias) for spec in specs]

        self.blocks = nn.Sequential(
            *stage(_3), nn.MaxPool2d(3, stride=2, padding=1),
            *stage(_4), nn.MaxPool2d(3, stride=2, padding=1),
            *stage(_5),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)
        mode = "fan_out" if init == "kaiming_fan_out" else "fan_in"
        kaiming_relu_(self, mode, linear=mode == "fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@register_model
def googlenet(num_classes: int = 10, stem: str = "cifar", branch5: str = "double3x3", conv_bias: bool = True,
              init: str = "kaiming_fan_out") -> nn.Module:
    return GoogLeNet(num_classes, stem=stem, branch5=branch5, conv_bias=conv_bias, init=init)
