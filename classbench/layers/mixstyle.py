"""MixStyle (Zhou et al., ICLR 2021): mix instance-level feature statistics.

In training, with probability ``p`` a batch has its per-sample, per-channel
mean/std mixed with those of another (randomly permuted) sample of the batch,
with a Beta(alpha, alpha) weight per sample. In eval mode the layer is an exact
identity (it returns its input unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class MixStyle(nn.Module):
    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"MixStyle p must be in [0, 1], got {p}")
        self.p = p
        self.alpha = alpha
        self.eps = eps

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}"

    def _beta_weights(self, n: int, device: torch.device) -> torch.Tensor:
        """n Beta(alpha, alpha) draws ``(n, 1, 1, 1)``, sampled where the features live.

        Sampling on the host and copying to the GPU would block every step and break a compiled
        graph, so the draws are made on ``device`` as G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha, 1)
        (Beta's own sampler has no meta-device kernel, and the meta device is how the tests check
        placement). float32, whatever the feature dtype.
        """
        conc = torch.full((2, n, 1, 1, 1), self.alpha, device=device, dtype=torch.float32)
        g = torch.distributions.Gamma(conc, torch.ones_like(conc), validate_args=False).sample()
        return g[0] / (g[0] + g[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] < 2 or torch.rand(()).item() > self.p:
            return x
        b = x.shape[0]
        mu = x.mean(dim=(2, 3), keepdim=True)
        sig = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        mu, sig = mu.detach(), sig.detach()
        x_normed = (x - mu) / sig
        lam = self._beta_weights(b, x.device).to(x.dtype)
        perm = torch.randperm(b, device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return x_normed * sig_mix + mu_mix
