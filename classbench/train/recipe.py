"""The optional training recipes of a run, in one object the trainer calls at fixed points.

* Mixup / CutMix (``train.mixup``, ``train.cutmix``): :meth:`Recipe.mix` turns a batch into
  mixed images and soft targets (the criterion, cross-entropy with label smoothing, takes
  probabilities); training top-1 counts the dominant label, and the train lines say ``"mixed": true``.
* Gradient accumulation (``train.accumulate``): :func:`accumulated_forward_backward` splits the
  batch into micro-batches, back-propagates each (under DDP without the gradient all-reduce on all
  but the last), and leaves the optimizer step to the trainer.  ``train.batch_size`` stays the
  batch of one optimizer step, so the data order, the schedule and resume do not change.
* EMA of the weights (``train.ema``): updated after every optimizer step, evaluated as its own
  selection (eval lines with split ``<split>_ema``); best.pt holds whichever weights scored better.
* Early stopping (``train.early_stop``): counts evaluations without a better selection top-1.

All of their state (the mixer's generator, the EMA weights, the early-stopping counters) is in
:meth:`Recipe.state_dict`, which the trainer saves in last.pt, so a resumed run stays exact.
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import ConfigError
from . import distributed, step
from .early_stop import EarlyStopping
from .ema import EMA
from .mixing import Mixer

EMA_SUFFIX = "_ema"  # eval lines of the EMA weights: split "val_ema", "test_ema", ...


class Recipe:
    def __init__(self, cfg, model: torch.nn.Module, num_classes: int, dist: distributed.DistInfo) -> None:
        t = cfg.train
        # Soft targets span the logits: a model with an untailored head (model.args.head_classes) has more.
        self.num_classes = int(cfg.model.args.get("head_classes") or num_classes)
        # Each rank mixes its own shard with its own stream (as dropout does).
        seed = distributed.rank_seed(t.seed, dist.rank) if dist.world_size > 1 else t.seed
        self.mixer = Mixer(t.mixup, t.cutmix, seed=seed) if (t.mixup or t.cutmix) else None
        self.ema = EMA(model, t.ema) if t.ema else None
        self.early_stop = EarlyStopping(t.early_stop)
        self.accumulate = t.accumulate
        if cfg.train.batch_size % (t.accumulate * dist.world_size):
            raise ConfigError(f"train.batch_size={cfg.train.batch_size} must split into train.accumulate="
                              f"{t.accumulate} micro-batches on each of {dist.world_size} processes.")
        self.stop_reason: str | None = None
        self.best = {"model": {"top1": -1.0, "step": 0}, "ema": {"top1": -1.0, "step": 0}}

    # ------------------------------------------------------------ the step
    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets for the loss, labels for training top-1); the batch as it is without mixing."""
        if self.mixer is None:
            return x, y, y
        x, mixed = self.mixer(x, y)
        return x, mixed.soft_targets(self.num_classes), mixed.dominant

    def after_update(self, model: torch.nn.Module) -> None:
        if self.ema is not None:
            self.ema.update(model)

    def train_line_fields(self) -> dict:
        return {"mixed": True} if self.mixer is not None else {}

    # ------------------------------------------------------------ evaluation and selection
    def observe(self, step_no: int, model_top1: float, ema_top1: float | None) -> str | None:
        """Record one evaluation's selection scores; returns "model" or "ema" when one of them beat every
        earlier evaluation of both (best.pt should then hold it), else None.  Also runs early stopping."""
        scores = {"model": model_top1} if ema_top1 is None else {"model": model_top1, "ema": ema_top1}
        for which, top1 in scores.items():
            if top1 > self.best[which]["top1"]:
                self.best[which] = {"top1": top1, "step": step_no}
        which = max(scores, key=lambda k: (scores[k], k == "model"))  # a tie keeps the raw weights
        if self.early_stop.update(scores[which]) and self.stop_reason is None:
            self.stop_reason = self.early_stop.reason()
        return which

    def summary_fields(self, selection_split: str) -> dict:
        out: dict = {}
        if self.ema is not None:
            out.update({"ema_decay": self.ema.decay,
                        f"best_{selection_split}_top1_model": self.best["model"]["top1"],
                        f"best_{selection_split}_step_model": self.best["model"]["step"],
                        f"best_{selection_split}_top1_ema": self.best["ema"]["top1"],
                        f"best_{selection_split}_step_ema": self.best["ema"]["step"]})
        if self.mixer is not None:
            out["mixed"] = True
        if self.early_stop.enabled:
            out["early_stopped"] = self.stop_reason is not None
        out["stop_reason"] = self.stop_reason
        return out

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"mixer": self.mixer.state_dict() if self.mixer else None,
                "ema": self.ema.state_dict() if self.ema else None,
                "early_stop": self.early_stop.state_dict(), "best": self.best, "stop_reason": self.stop_reason}

    def load_state_dict(self, state: dict) -> None:
        if self.mixer is not None and state.get("mixer") is not None:
            self.mixer.load_state_dict(state["mixer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.early_stop.load_state_dict(state["early_stop"])
        self.best = {k: dict(v) for k, v in state["best"].items()}
        self.stop_reason = state.get("stop_reason")


def _no_sync(model: torch.nn.Module):
    """DDP's no_sync (through a torch.compile wrapper); a no-op for a single process."""
    inner = getattr(model, "_orig_mod", model)
    return inner.no_sync() if hasattr(inner, "no_sync") else contextlib.nullcontext()


def accumulated_forward_backward(parts: step.StepParts, x: torch.Tensor, target: torch.Tensor,
                                 micro_batches: int) -> step.StepOutput:
    """Forward and backward `micro_batches` equal slices of the batch; gradients add up to the mean
    over the whole batch.  Returns the batch's mean losses and all logits; the caller steps."""
    parts.optimizer.zero_grad(set_to_none=True)
    outs = []
    for i, (xs, ts) in enumerate(zip(x.chunk(micro_batches), target.chunk(micro_batches))):
        with _no_sync(parts.model) if i < micro_batches - 1 else contextlib.nullcontext():
            out = step.forward(parts, xs, ts)
            step.backward(parts, out.total / micro_batches)
        outs.append(out)
    mean = lambda ts: torch.stack([t.detach() for t in ts]).mean()  # noqa: E731
    aux = {k: mean([o.aux_losses[k] for o in outs]) for k in outs[0].aux_losses}
    return step.StepOutput(mean([o.loss for o in outs]), mean([o.total for o in outs]),
                           torch.cat([o.logits.detach() for o in outs]), aux)
