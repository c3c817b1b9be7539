"""An airbench-style net for time-to-accuracy on CIFAR (after Keller Jordan's cifar10-airbench design).

``airbench_net``: a frozen whitening conv, then three conv groups and a linear head.

* **Whitening** (2x2 patches, 3 -> 24 channels, no padding: 32x32 -> 31x31).  Its
  filters are the 12 eigenvectors of the covariance of the 2x2x3 patches of training
  images, scaled by ``1/sqrt(eigenvalue + eps)``, and their negatives, so the first
  layer hands decorrelated, unit-variance features to the rest.  They are computed
  once, before training, by :meth:`AirbenchNet.data_init` (the trainer calls
  ``model.data_init(images)`` on a fresh run; a resumed run or a checkpoint loads
  them) and never trained: the weight is a buffer.  Its bias is trained (plain lr).
* **Conv groups**: conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU,
  widths (64, 256, 256) by default; then a global max-pool and a bias-free linear
  head whose output is scaled by ``head_scale`` (1/9).
* **BN**: no trained scale, eps 1e-12, running-stat momentum 0.1 (airbench without
  lookahead: 0.9 in its own convention), and a bias whose effective learning rate is ``bias_scale**2`` (64x)
  that of the optimizer with the same decay rate: the bias is stored divided by
  ``bias_scale`` and multiplied back in ``forward``, which is what a 64x lr with a
  64x smaller weight decay does, without a second param group.
* **Init**: each 3x3 conv starts as a partial identity (Dirac) on its first
  ``in_channels`` filters.

Not here (need trainer support): lookahead/EMA, progressive freezing of the
whitening bias, multi-crop TTA, alternating flips.  ``eval.tta=true`` gives
horizontal-flip TTA.  Recipe: ``configs/cifar10/fast.yaml``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


class ScaledBiasBatchNorm(nn.Module):
    """BatchNorm2d without a trained scale, with a bias stored divided by ``bias_scale``."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-12, bias_scale: float = 8.0):
        super().__init__()
        self.momentum, self.eps, self.bias_scale = momentum, eps, bias_scale
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        # A fixed scale of ones rather than none: CUDA's batch-norm backward with no weight returned an empty
        # bias gradient (torch 2.11 on an H200, 2026-12-04).  Not persistent: checkpoints are unchanged.
        self.register_buffer("scale", torch.ones(num_features), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.scale, self.bias * self.bias_scale,
                            self.training, self.momentum, self.eps)


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int, bn_momentum: float, bias_scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = ScaledBiasBatchNorm(cout, bn_momentum, bias_scale=bias_scale)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = ScaledBiasBatchNorm(cout, bn_momentum, bias_scale=bias_scale)
        for conv in (self.conv1, self.conv2):
            w = conv.weight.data
            nn.init.dirac_(w[: min(w.size(0), w.size(1))])  # partial identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (64, 256, 256), bn_momentum: float = 0.1,
                 bias_scale: float = 8.0, head_scale: float = 1 / 9, whiten_eps: float = 5e-4,
                 whiten_images: int = 5000):
        super().__init__()
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {list(widths)}")
        self.bias_scale, self.head_scale = bias_scale, head_scale
        self.whiten_eps, self.whiten_images = whiten_eps, whiten_images
        wh = 2 * 3 * 2 * 2  # +/- each eigenvector of the 12-dim patch space
        # Until data_init (or a checkpoint) sets it, the whitening is an ordinary random conv.
        self.register_buffer("whiten_weight", torch.randn(wh, 3, 2, 2) / (12**0.5))
        self.whiten_bias = nn.Parameter(torch.zeros(wh))
        cins = (wh, *widths[:2])
        self.groups = nn.Sequential(*(ConvGroup(ci, co, bn_momentum, bias_scale) for ci, co in zip(cins, widths)))
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def data_init(self, images: torch.Tensor) -> None:
        """Set the whitening filters from training images: float (N, 3, H, W), normalised as the model's input."""
        x = images[: self.whiten_images].float()
        second = torch.zeros(12, 12, dtype=torch.float64, device=x.device)
        total = torch.zeros(12, dtype=torch.float64, device=x.device)
        n = 0
        for chunk in x.split(1000):
            p = F.unfold(chunk, kernel_size=2).transpose(1, 2).reshape(-1, 12).double()  # (patches, c*kh*kw)
            second += p.T @ p
            total += p.sum(0)
            n += len(p)
        mean = total / n
        cov = second / n - torch.outer(mean, mean)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
        eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)
        filters = (eigvecs.T / torch.sqrt(eigvals.clamp_min(0) + self.whiten_eps)[:, None]).reshape(12, 3, 2, 2)
        w = torch.cat([filters, -filters]).to(self.whiten_weight.dtype)
        self.whiten_weight.copy_(w)  # keeps the buffer's memory format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(F.conv2d(x, self.whiten_weight, self.whiten_bias))
        x = self.groups(x)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.head_scale


@register_model(widths="64-256-256")
def airbench_net(num_classes: int = 10, widths: Sequence[int] = (64, 256, 256), bn_momentum: float = 0.1,
                 bias_scale: float = 8.0, head_scale: float = 1 / 9, whiten_eps: float = 5e-4) -> nn.Module:
    return AirbenchNet(num_classes, tuple(widths), bn_momentum, bias_scale, head_scale, whiten_eps)
