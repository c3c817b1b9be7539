"""GoogLeNet (Inception v1) for 32x32 inputs, adapted as in kuangliu/pytorch-cifar.

A 3x3 conv stem (192 channels, no early down-sampling), Inception modules
3a-3b, max-pool, 4a-4e, max-pool, 5a-5b (32 -> 16 -> 8), global average pool
and a linear head. Every conv has BN + ReLU; the 5x5 branch is two 3x3 convs.
No auxiliary classifiers.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


def _cbr(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Inception(nn.Module):
    def __init__(self, cin: int, n1: int, n3red: int, n3: int, n5red: int, n5: int, pool_proj: int):
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(cin, n1, 1))
        self.b2 = nn.Sequential(*_cbr(cin, n3red, 1), *_cbr(n3red, n3, 3))
        self.b3 = nn.Sequential(*_cbr(cin, n5red, 1), *_cbr(n5red, n5, 3), *_cbr(n5, n5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *_cbr(cin, pool_proj, 1))
        self.out_channels = n1 + n3 + n5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, 192, 3))
        self.blocks = nn.Sequential(
            Inception(192, 64, 96, 128, 16, 32, 32),      # 3a -> 256
            Inception(256, 128, 128, 192, 32, 96, 64),    # 3b -> 480
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(480, 192, 96, 208, 16, 48, 64),     # 4a -> 512
            Inception(512, 160, 112, 224, 24, 64, 64),    # 4b -> 512
            Inception(512, 128, 128, 256, 24, 64, 64),    # 4c -> 512
            Inception(512, 112, 144, 288, 32, 64, 64),    # 4d -> 528
            Inception(528, 256, 160, 320, 32, 128, 128),  # 4e -> 832
            nn.MaxPool2d(3, stride=2, padding=1),
            Inception(832, 256, 160, 320, 32, 128, 128),  # 5a -> 832
            Inception(832, 384, 192, 384, 48, 128, 128),  # 5b -> 1024
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


@register_model
def googlenet(num_classes: int = 10) -> nn.Module:
    return GoogLeNet(num_classes)
