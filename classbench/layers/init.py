"""Weight initialisation shared by the conv nets."""

from __future__ import annotations

import torch.nn as nn


def kaiming_relu_(model: nn.Module, mode: str = "fan_out", *, linear: bool = False) -> None:
    """Kaiming-normal weights with the ReLU gain for every conv (and every linear layer when ``linear``),
    and their biases at 0; every other layer keeps PyTorch's default.  Modules are visited in
    ``model.modules()`` order, so a seed draws the same weights as the reference projects' own loops."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) or (linear and isinstance(m, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
