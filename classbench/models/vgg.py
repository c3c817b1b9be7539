"""VGG with batch norm for 32x32 inputs (CIFAR style, as in kuangliu/pytorch-cifar).

3x3 conv + BN + ReLU layers; the five max-pools bring 32x32 down to 1x1, and a
single linear layer on the 512 features classifies.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model

_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, 1, 1) for 32x32 inputs
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@register_model
def vgg11(num_classes: int = 10) -> nn.Module:
    return VGG(_CFGS["vgg11"], num_classes)


@register_model
def vgg13(num_classes: int = 10) -> nn.Module:
    return VGG(_CFGS["vgg13"], num_classes)


@register_model
def vgg16(num_classes: int = 10) -> nn.Module:
    return VGG(_CFGS["vgg16"], num_classes)


@register_model
def vgg19(num_classes: int = 10) -> nn.Module:
    return VGG(_CFGS["vgg19"], num_classes)
