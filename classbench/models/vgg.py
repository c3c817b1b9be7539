"""VGG with batch norm for 32x32 inputs (CIFAR style, as in kuangliu/pytorch-cifar).

3x3 conv + BN + ReLU layers; the five max-pools bring 32x32 down to 1x1, and a
single linear layer on the 512 features classifies.

Options (defaults: the kuangliu layout above):

* ``classifier``: ``linear`` (one linear layer) or ``mlp`` (VGG's own classifier:
  512 -> 4096 -> ReLU -> dropout -> 4096 -> ReLU -> dropout -> classes, with
  ``dropout``, default 0.5).
* ``conv_bias``: whether the convs have a bias (redundant before BatchNorm).
* ``init``: ``kaiming_fan_out`` (convs Kaiming-normal fan-out, conv biases 0, the
  linear layers PyTorch's default) or ``normal`` (conv and linear weights
  normal(0, ``init_std``), linear biases 0, as Fanziyang-v/PyTorch-Classification).
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
    def __init__(self, cfg: list, num_classes: int = 10, *, classifier: str = "linear", dropout: float = 0.5,
                 conv_bias: bool = True, init: str = "kaiming_fan_out", init_std: float = 0.1):
        super().__init__()
        if classifier not in ("linear", "mlp"):
            raise ValueError(f"classifier must be linear or mlp; got {classifier!r}")
        if init not in ("kaiming_fan_out", "normal"):
            raise ValueError(f"init must be kaiming_fan_out or normal; got {init!r}")
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1, bias=conv_bias), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        if classifier == "mlp":
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(cin, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(4096, num_classes),
            )
        else:
            self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)) or (init != "normal" and isinstance(m, nn.Linear)):
                continue  # the kaiming scheme leaves the linear layers at PyTorch's default
            if init == "normal":
                nn.init.normal_(m.weight, std=init_std)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, 1, 1) for 32x32 inputs
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _vgg(cfg: str, num_classes: int, **options) -> nn.Module:
    return VGG(_CFGS[cfg], num_classes, **options)


@register_model
def vgg11(num_classes: int = 10, classifier: str = "linear", dropout: float = 0.5, conv_bias: bool = True,
          init: str = "kaiming_fan_out") -> nn.Module:
    return _vgg("vgg11", num_classes, classifier=classifier, dropout=dropout, conv_bias=conv_bias, init=init)


@register_model
def vgg13(num_classes: int = 10, classifier: str = "linear", dropout: float = 0.5, conv_bias: bool = True,
          init: str = "kaiming_fan_out") -> nn.Module:
    return _vgg("vgg13", num_classes, classifier=classifier, dropout=dropout, conv_bias=conv_bias, init=init)


@register_model
def vgg16(num_classes: int = 10, classifier: str = "linear", dropout: float = 0.5, conv_bias: bool = True,
          init: str = "kaiming_fan_out") -> nn.Module:
    return _vgg("vgg16", num_classes, classifier=classifier, dropout=dropout, conv_bias=conv_bias, init=init)


@register_model
def vgg19(num_classes: int = 10, classifier: str = "linear", dropout: float = 0.5, conv_bias: bool = True,
          init: str = "kaiming_fan_out") -> nn.Module:
    return _vgg("vgg19", num_classes, classifier=classifier, dropout=dropout, conv_bias=conv_bias, init=init)
