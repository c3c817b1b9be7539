"""Stochastic depth (Huang et al., 2016), per sample, as ViT/DeiT/CCT use it on residual branches."""

from __future__ import annotations

import torch
import torch.nn as nn


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero the whole branch output of each sample with probability `p`; scale the kept ones by 1/(1-p).

    The expected output is `x`, so evaluation (or ``p == 0``) is the identity.  The mask is drawn from
    the global RNG, like dropout's, so the trainer's saved RNG state makes it resumable.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path must be in [0, 1); got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
