"""An exponential moving average of a model's weights (Polyak averaging), updated after every optimizer step.

``ema = decay * ema + (1 - decay) * weights`` for every floating-point tensor of the state dict
(parameters and buffers such as BatchNorm's running statistics); integer buffers (BatchNorm's
``num_batches_tracked``) are copied.  The average starts from the weights it is created with, so
after ``t`` updates with weights ``w_1..w_t`` it is ``decay^t w_0 + (1 - decay) sum_k decay^(t-k) w_k``.

The averaged model is a separate module in eval mode that the trainer evaluates on its own; its
state dict is saved in ``last.pt``, so a resumed run continues the same average.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1); got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def _pairs(self, model: torch.nn.Module):
        """(averaged floats, model floats, copied others, model others), matched by state-dict key."""
        mine, theirs = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        others = [k for k, v in mine.items() if not v.is_floating_point()]
        return ([mine[k] for k in floats], [theirs[k] for k in floats],
                [mine[k] for k in others], [theirs[k] for k in others])

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average towards `model`'s current weights (one fused kernel per tensor list)."""
        avg, cur, avg_other, cur_other = self._pairs(model)
        if avg:
            torch._foreach_lerp_(avg, [c.detach().to(a.dtype) for a, c in zip(avg, cur)], 1.0 - self.decay)
        for a, c in zip(avg_other, cur_other):
            a.copy_(c)

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
