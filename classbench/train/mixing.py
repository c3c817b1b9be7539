"""Mixup and CutMix on the training device, one mixing coefficient per batch.

Each image ``i`` of a batch is mixed with image ``B - 1 - i`` (the batch flipped, as timm's
"batch" mode does), so a batch needs no extra gather.  Mixup blends the two images with weight
``lam ~ Beta(a, a)`` (Zhang et al., 2018); CutMix pastes a box of the partner whose area is
``1 - lam`` of the image, clipped at the border, and then sets ``lam`` to the exact share of
the image left untouched (Yun et al., 2019).  With both on, each batch picks one of the two
with equal odds.  The loss is ``lam * CE(logits, y) + (1 - lam) * CE(logits, y_partner)``,
which equals the cross-entropy against the mixed (label-smoothed) target.

Randomness comes from the mixer's own ``torch.Generator``, drawn on the host (no device sync);
its state goes into the checkpoint, so a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.special import betaincinv


@dataclass
class Mixed:
    """The targets of a mixed batch: ``lam`` of ``labels`` and ``1 - lam`` of ``partner``."""

    labels: torch.Tensor
    partner: torch.Tensor
    lam: float
    kind: str  # "mixup" or "cutmix"

    def loss(self, criterion, logits: torch.Tensor) -> torch.Tensor:
        return self.lam * criterion(logits, self.labels) + (1.0 - self.lam) * criterion(logits, self.partner)

    @property
    def dominant(self) -> torch.Tensor:
        """The label with the larger share, which training top-1 is counted against."""
        return self.labels if self.lam >= 0.5 else self.partner

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        """``(B, num_classes)`` label mass of each mixed image (each row sums to 1)."""
        one_hot = lambda y: torch.nn.functional.one_hot(y, num_classes).float()  # noqa: E731
        return self.lam * one_hot(self.labels) + (1.0 - self.lam) * one_hot(self.partner)


class Mixer:
    """Mixup (`mixup` = its Beta alpha) and/or CutMix (`cutmix` = its alpha); 0 turns either off."""

    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0, *, seed: int = 0) -> None:
        if mixup < 0 or cutmix < 0:
            raise ValueError(f"Beta alphas must not be negative; got mixup={mixup}, cutmix={cutmix}")
        self.mixup, self.cutmix = float(mixup), float(cutmix)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def enabled(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def _beta(self, alpha: float) -> float:
        """A Beta(alpha, alpha) draw by inverting its CDF at a uniform from our own generator."""
        u = torch.rand((), generator=self.generator, dtype=torch.float64).item()
        return float(betaincinv(alpha, alpha, u))

    def _uniform_int(self, high: int) -> int:
        return int(torch.randint(0, high, (), generator=self.generator))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, Mixed]:
        """Mix a batch (a new tensor; `x` is left as it is) and return it with its targets."""
        if not self.enabled:
            raise RuntimeError("Mixer called with mixup=0 and cutmix=0")
        use_cutmix = self.cutmix > 0 and (self.mixup == 0 or torch.rand((), generator=self.generator) < 0.5)
        partner = y.flip(0)
        if not use_cutmix:
            lam = self._beta(self.mixup)
            return torch.lerp(x.flip(0), x, lam), Mixed(y, partner, lam, "mixup")
        lam = self._beta(self.cutmix)
        top, bottom, left, right = cutmix_box(lam, *x.shape[-2:], self._uniform_int)
        mixed = x.clone()
        mixed[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
        area = (bottom - top) * (right - left) / (x.shape[-2] * x.shape[-1])
        return mixed, Mixed(y, partner, 1.0 - area, "cutmix")

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def cutmix_box(lam: float, height: int, width: int, uniform_int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box with sides ``sqrt(1 - lam)`` of the image's, centred at a
    uniform pixel and clipped at the border (so its area may be smaller: the caller recomputes lam)."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = uniform_int(height), uniform_int(width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right
