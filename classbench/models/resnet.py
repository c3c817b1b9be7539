"""ResNets for 32x32 inputs.

* ``resnet18/34/50/101/152``: the ImageNet depths adapted to CIFAR as in
  kuangliu/pytorch-cifar: a 3x3 stride-1 stem conv with 64 channels, no
  max-pool, four stages of 64/128/256/512 (x4 for bottlenecks) channels with
  strides 1, 2, 2, 2, and 1x1-conv + norm projection shortcuts where the shape
  changes.
* ``resnet20/32/44/56/110``: He et al. (2016) CIFAR nets, 3 stages of n basic
  blocks with 16/32/64 channels (depth = 6n + 2). Where the shape changes the
  shortcut is a **projection** (1x1 conv + norm, the paper's option B), not
  the parameter-free zero-padding of option A, so every family shares one
  block and ``norm`` applies everywhere. ResNet-20 has 272,474 parameters
  (option A would give 269,722).

Options shared by all of them:

* ``norm``: ``bn`` (default), ``gn`` (GroupNorm with 16 groups) or ``none``
  (convs then get a bias).
* ``mixstyle_stages``: stage numbers (1-based) after which a MixStyle layer
  (p=0.5, alpha=0.1) is inserted, e.g. ``[1]``, ``[1, 2]``, ``[1, 2, 3]``.
  Active in training only; an exact identity in eval.
* ``input_norm``: ``dataset`` (identity: the loader normalises), ``scalar_ema``
  or ``per_channel_ema`` (online EMA estimate, momentum 0.01, see
  ``classbench.layers.norms``) or ``none`` (identity).
* ``head_classes``: if set, the final linear layer has this many outputs
  instead of ``num_classes`` (an untailored head, e.g. 1000-way).
* ``stem``: ``cifar`` (default: the 3x3 stride-1 conv above) or ``imagenet``
  (torchvision's ImageNet stem: 7x7 stride-2 conv + norm + ReLU + 3x3 stride-2
  max-pool, so a 32x32 image reaches the first stage at 8x8, with about 1/16 of
  the compute).
* ``init``: ``kaiming_fan_out`` (default, as torchvision: convs Kaiming-normal
  fan-out, the linear layer PyTorch's default) or ``kaiming_fan_in`` (convs and
  the linear layer Kaiming-normal fan-in, linear bias 0).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers.mixstyle import MixStyle
from ..layers.norms import make_input_norm, make_norm2d
from .registry import register_model


def _conv(cin: int, cout: int, k: int, stride: int, norm: str) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=(norm == "none"))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv(cin, planes, 3, stride, norm)
        self.bn1 = make_norm2d(norm, planes)
        self.conv2 = _conv(planes, planes, 3, 1, norm)
        self.bn2 = make_norm2d(norm, planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride, norm), make_norm2d(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv(cin, planes, 1, 1, norm)
        self.bn1 = make_norm2d(norm, planes)
        self.conv2 = _conv(planes, planes, 3, stride, norm)
        self.bn2 = make_norm2d(norm, planes)
        self.conv3 = _conv(planes, cout, 1, 1, norm)
        self.bn3 = make_norm2d(norm, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride, norm), make_norm2d(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[nn.Module],
        num_blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 10,
        *,
        stem_width: int,
        norm: str = "bn",
        mixstyle_stages: Sequence[int] | None = None,
        input_norm: str = "dataset",
        head_classes: int | None = None,
        stem: str = "cifar",
        init: str = "kaiming_fan_out",
    ):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be cifar or imagenet; got {stem!r}")
        if init not in ("kaiming_fan_out", "kaiming_fan_in"):
            raise ValueError(f"init must be kaiming_fan_out or kaiming_fan_in; got {init!r}")
        mix = sorted({int(s) for s in (mixstyle_stages or [])})
        for s in mix:
            if not 1 <= s <= len(widths):
                raise ValueError(f"mixstyle_stages entries must be in 1..{len(widths)}, got {s}")
        make_norm2d(norm, 16)  # validates the name early
        self.input_norm = make_input_norm(input_norm)
        if stem == "imagenet":
            self.stem = nn.Sequential(_conv(3, stem_width, 7, 2, norm), make_norm2d(norm, stem_width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        else:
            self.stem = nn.Sequential(_conv(3, stem_width, 3, 1, norm), make_norm2d(norm, stem_width),
                                      nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        cin = stem_width
        for i, (n, w) in enumerate(zip(num_blocks, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, w, stride, norm=norm))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        # MixStyle has no state, so the state dict is the same with or without it.
        self.mixstyle_after = tuple(mix)
        self.mixstyle = MixStyle(p=0.5, alpha=0.1) if mix else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        out = int(head_classes) if head_classes is not None else num_classes
        self.fc = nn.Linear(cin, out)
        mode = "fan_out" if init == "kaiming_fan_out" else "fan_in"
        for m in self.modules():
            if isinstance(m, nn.Conv2d) or (mode == "fan_in" and isinstance(m, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_norm(x))
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            if i in self.mixstyle_after:
                x = self.mixstyle(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def _imagenet_style(block, num_blocks, num_classes, **opts) -> ResNet:
    return ResNet(block, num_blocks, (64, 128, 256, 512), num_classes, stem_width=64, **opts)


def _cifar_style(n: int, num_classes: int, **opts) -> ResNet:
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes, stem_width=16, **opts)


# Each factory spells out its options so create_model can reject unknown ones.
@register_model
def resnet18(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _imagenet_style(BasicBlock, (2, 2, 2, 2), num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                           input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet34(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _imagenet_style(BasicBlock, (3, 4, 6, 3), num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                           input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet50(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _imagenet_style(Bottleneck, (3, 4, 6, 3), num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                           input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet101(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
              input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _imagenet_style(Bottleneck, (3, 4, 23, 3), num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                           input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet152(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
              input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _imagenet_style(Bottleneck, (3, 8, 36, 3), num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                           input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet20(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _cifar_style(3, num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                        input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet32(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _cifar_style(5, num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                        input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet44(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _cifar_style(7, num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                        input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet56(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
             input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _cifar_style(9, num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                        input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)


@register_model
def resnet110(num_classes: int = 10, norm: str = "bn", mixstyle_stages: Sequence[int] | None = None,
              input_norm: str = "dataset", head_classes: int | None = None, stem: str = "cifar",
             init: str = "kaiming_fan_out") -> nn.Module:
    return _cifar_style(18, num_classes, norm=norm, mixstyle_stages=mixstyle_stages,
                        input_norm=input_norm, head_classes=head_classes, stem=stem, init=init)
