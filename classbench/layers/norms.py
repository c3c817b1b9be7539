"""Input normalisers that estimate the input statistics online.

``EMAInputNorm(per_channel=False)`` keeps one scalar mean/variance over all
pixels and channels; ``per_channel=True`` keeps one per channel. In training
mode each batch updates the running statistics with an exponential moving
average (``momentum``, default 0.01); the very first training batch initialises
them directly so the early steps are already normalised. The input is always
normalised with the running statistics (after the update in training), never
with the batch statistics, so train and eval apply the same function and no
gradient flows through the statistics. In eval mode the statistics are frozen.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class EMAInputNorm(nn.Module):
    def __init__(self, num_channels: int = 3, per_channel: bool = False, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.per_channel = per_channel
        self.momentum = momentum
        self.eps = eps
        n = num_channels if per_channel else 1
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"per_channel={self.per_channel}, momentum={self.momentum}"

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        xf = x.detach().float()
        if self.per_channel:
            dims = [d for d in range(xf.dim()) if d != 1]
            mean, var = xf.mean(dim=dims), xf.var(dim=dims, unbiased=False)
        else:
            mean, var = xf.mean().reshape(1), xf.var(unbiased=False).reshape(1)
        # weight 1 on the first batch, then the momentum; no host sync (no .item()).
        weight = torch.where(self.num_batches_tracked == 0, 1.0, self.momentum).to(mean.dtype)
        self.running_mean.lerp_(mean, weight)
        self.running_var.lerp_(var, weight)
        self.num_batches_tracked += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = self.running_mean.to(x.dtype).view(shape)
        std = (self.running_var + self.eps).sqrt().to(x.dtype).view(shape)
        return (x - mean) / std


def make_input_norm(kind: str, num_channels: int = 3, momentum: float = 0.01) -> nn.Module:
    """``dataset`` and ``none`` give an identity (the loader normalises, or nothing does)."""
    if kind in ("dataset", "none"):
        return nn.Identity()
    if kind == "scalar_ema":
        return EMAInputNorm(num_channels, per_channel=False, momentum=momentum)
    if kind == "per_channel_ema":
        return EMAInputNorm(num_channels, per_channel=True, momentum=momentum)
    raise ValueError(f"input_norm must be one of dataset, scalar_ema, per_channel_ema, none; got {kind!r}")


def make_norm2d(kind: str, channels: int, groups: int = 16) -> nn.Module:
    """2-D feature norm by name: ``bn`` (BatchNorm), ``gn`` (GroupNorm, ``groups`` groups), ``none``."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of bn, gn, none; got {kind!r}")
