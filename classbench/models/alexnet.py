"""AlexNet with a 32x32 geometry.

The ImageNet net's 11x11/4 stem would leave almost nothing of a 32x32 image,
so the stem is a 5x5 stride-1 conv and every max-pool (3x3, stride 2) halves
the size: 32 -> 16 -> 8 -> 4. The five convs keep AlexNet's widths
(64, 192, 384, 256, 256) and have no normalisation; the classifier is
dropout -> 4096->1024 -> ReLU -> dropout -> 1024->1024 -> ReLU -> linear.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, dropout: float = 0.5, hidden: int = 1024):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),  # 16
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),  # 8
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1),  # 4
        )
        self.pool = nn.AdaptiveAvgPool2d(4)  # a no-op at 32x32; keeps other sizes working
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 4 * 4, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model
def alexnet(num_classes: int = 10, dropout: float = 0.5) -> nn.Module:
    return AlexNet(num_classes, dropout=dropout)
