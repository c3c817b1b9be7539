"""One training step, as a plain function: the trainer runs it and ``classbench bench`` times it.

    parts = StepParts(model, optimizer, scaler, criterion, precision, device, grad_clip)
    out = forward(parts, x, y)     # autocast forward, cross-entropy (+ each aux head's)
    update(parts, out.total)       # zero_grad, scaled backward, optional clipping, optimizer step
    # or both at once: out = train_step(parts, x, y)

The trainer calls ``forward`` and ``update`` apart because ``train.on_nonfinite=skip``
looks at the loss in between.  Neither waits for the device: ``out`` holds device
tensors, which the trainer adds to its log window.

Where per-step extras go: a change to the inputs or targets (mixup, CutMix) goes
into ``forward`` (the criterion takes the mixed targets); gradient accumulation
into ``update`` (backward every micro-batch, the optimizer step every k-th);
anything after the weights changed (an EMA of the weights) into the trainer's
loop right after ``_train_step`` (``Trainer.fit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..models.registry import logits_of
from .precision import autocast


@dataclass
class StepParts:
    """Everything a step touches."""

    model: torch.nn.Module  # what runs forward: the model, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a pass-through otherwise
    criterion: torch.nn.Module  # cross-entropy with train.label_smoothing
    precision: str  # fp32 | bf16 | fp16: autocast
    device: torch.device
    grad_clip: float = 0.0  # max global grad norm; 0: no clipping
    clip_params: list[torch.nn.Parameter] | None = None  # the parameters to clip (default: the model's)

    @classmethod
    def build(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, precision: str,
              device: torch.device, label_smoothing: float = 0.0, grad_clip: float = 0.0,
              run_model: torch.nn.Module | None = None) -> "StepParts":
        """The parts as the trainer makes them from ``cfg.train``: a GradScaler that is on for fp16 only,
        cross-entropy with label smoothing.  ``run_model``: a wrapper of ``model`` (DDP, compiled) to run."""
        return cls(model=run_model if run_model is not None else model, optimizer=optimizer,
                   scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
                   criterion=torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing),
                   precision=precision, device=device, grad_clip=grad_clip,
                   clip_params=list(model.parameters()))


class StepOutput(NamedTuple):
    loss: torch.Tensor  # the main head's loss
    total: torch.Tensor  # what is backpropagated: loss + every aux head's loss
    logits: torch.Tensor
    aux_losses: dict[str, torch.Tensor]  # "loss_<head>" -> that head's loss


def forward(parts: StepParts, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    with autocast(parts.precision, parts.device):
        out = parts.model(x)
        logits = logits_of(out)
        loss = parts.criterion(logits, y)
        total = loss
        aux_losses = {}
        for name, aux_logits in (out.get("aux", {}) if isinstance(out, dict) else {}).items():
            aux_loss = parts.criterion(aux_logits, y)
            total = total + aux_loss
            aux_losses[f"loss_{name}"] = aux_loss
    return StepOutput(loss, total, logits, aux_losses)


def update(parts: StepParts, total: torch.Tensor) -> None:
    parts.optimizer.zero_grad(set_to_none=True)
    backward(parts, total)
    optimizer_step(parts)


def backward(parts: StepParts, total: torch.Tensor) -> None:
    """Add this loss's (scaled) gradients; gradient accumulation calls it once per micro-batch."""
    parts.scaler.scale(total).backward()


def optimizer_step(parts: StepParts) -> None:
    """Clip (if asked) and step on the gradients accumulated since the last ``zero_grad``."""
    if parts.grad_clip:
        parts.scaler.unscale_(parts.optimizer)
        params = parts.clip_params if parts.clip_params is not None else list(parts.model.parameters())
        torch.nn.utils.clip_grad_norm_(params, parts.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()


def train_step(parts: StepParts, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
    """forward, then update: one optimizer step."""
    out = forward(parts, x, y)
    update(parts, out.total)
    return out
