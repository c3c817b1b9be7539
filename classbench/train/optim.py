"""Optimizers and learning-rate schedules.

Every schedule is a function of the optimizer step, evaluated by one small
class, so warmup composes with all of them and the state to save is two
numbers.  Reduce-on-plateau also listens to validation loss.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def build_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # fused kernels on CUDA, foreach (multi-tensor) elsewhere: one launch for all params, not one per tensor.
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay, **fast,
        )
    if len(cfg.betas) != 2:
        raise ConfigError(f"optim.betas must hold two numbers, e.g. [0.9, 0.999]; got {list(cfg.betas)}.")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.name]
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **fast)


class Schedule:
    """Sets the lr of every param group before each step.

    `lr_at(step)` is the lr used for the step that follows `step` completed
    steps.  Plateau scaling multiplies whatever the schedule gives.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, *, base_lr: float, total_steps: int,
                 steps_per_epoch: int, epoch_budget: bool) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lr = base_lr
        self.total = total_steps
        unit = steps_per_epoch if epoch_budget else 1
        self.milestones = sorted(m * unit for m in cfg.milestones)
        self.warmup = cfg.warmup_steps
        if self.warmup >= total_steps and self.warmup:
            raise ConfigError(f"sched.warmup_steps={self.warmup} is not below the {total_steps} training steps.")
        self.step_count = 0
        self.saved_total: int | None = None  # set by load_state_dict: the budget a resumed run was planned over
        self.plateau_scale = 1.0
        self.plateau_best = math.inf
        self.plateau_bad = 0
        self.apply()

    def lr_at(self, step: int) -> float:
        c, base = self.cfg, self.base_lr
        if self.warmup and step < self.warmup:
            return c.warmup_start_lr + (base - c.warmup_start_lr) * step / self.warmup
        t = (step - self.warmup) / max(1, self.total - self.warmup)  # progress after warmup, 0 -> 1
        t = min(max(t, 0.0), 1.0)
        if c.name in ("constant", "plateau"):
            lr = base
        elif c.name == "step":
            lr = base * c.gamma ** sum(step >= m for m in self.milestones)
        elif c.name == "cosine":
            lr = c.min_lr + (base - c.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
        elif c.name == "warmup_linear":
            lr = base + (c.min_lr - base) * t
        elif c.name == "onecycle":
            start = base / c.div_factor
            end = c.min_lr or start / 1e4
            if t < c.pct_start:
                lr = start + (base - start) * 0.5 * (1 - math.cos(math.pi * t / c.pct_start))
            else:
                u = (t - c.pct_start) / max(1e-12, 1 - c.pct_start)
                lr = end + (base - end) * 0.5 * (1 + math.cos(math.pi * u))
        else:  # validated in config
            raise ConfigError(f"unknown schedule {c.name!r}")
        return lr * self.plateau_scale

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    #: Schedules whose shape is stretched over the budget (a new budget on resume changes their lr).
    BUDGET_SHAPED = ("cosine", "warmup_linear", "onecycle")

    @property
    def depends_on_total(self) -> bool:
        return self.cfg.name in self.BUDGET_SHAPED

    def replanned(self, total_steps: int) -> "Schedule":
        """A copy of this schedule (state included) planned over ``total_steps``; the optimizer is left alone."""
        other = object.__new__(Schedule)
        other.__dict__.update(self.__dict__)
        other.total = total_steps
        return other

    def apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.step_count += 1
        self.apply()

    def on_eval(self, val_loss: float) -> None:
        """Reduce-on-plateau: cut the lr by `factor` after `patience` evals without a 1e-4 relative gain."""
        if self.cfg.name != "plateau":
            return
        if val_loss < self.plateau_best * (1 - 1e-4):
            self.plateau_best = val_loss
            self.plateau_bad = 0
            return
        self.plateau_bad += 1
        if self.plateau_bad > self.cfg.patience:
            self.plateau_scale *= self.cfg.factor
            self.plateau_bad = 0
            self.apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad,
                "total": self.total}  # the budget the lr was planned over (resume compares a new budget with it)

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])
        # The plan of the saved run (None in checkpoints from before it was saved); the trainer decides on
        # resume whether this run keeps it (train.resume_schedule=continue) or re-plans over its own budget.
        self.saved_total = int(state["total"]) if state.get("total") is not None else None
        self.apply()
