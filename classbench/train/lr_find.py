"""The learning-rate range test (Smith, 2017; as popularised by fastai).

Train from the initial weights for `steps` steps while the lr grows exponentially from
`start_lr` to `end_lr`, record the loss of every step, smooth it with a bias-corrected
exponential moving average, and stop early once the smoothed loss exceeds `diverge` times
its minimum (or is no longer finite).  The suggestion is the lr where the smoothed loss falls
fastest against log(lr), searched between the first tenth of the sweep and the minimum: a
point well inside the range where training makes progress, below where it blows up.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..config import Config
from ..errors import ClassbenchError


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None  # steepest descent of the smoothed loss
    min_loss_lr: float | None  # the lr of the lowest smoothed loss
    stopped: str  # why the sweep ended


def lr_schedule(start_lr: float, end_lr: float, steps: int) -> list[float]:
    """`steps` lrs from `start_lr` to `end_lr`, evenly spaced in log(lr)."""
    if not 0 < start_lr < end_lr or steps < 2:
        raise ClassbenchError(f"The lr sweep needs 0 < start lr < end lr and at least 2 steps; got "
                              f"{start_lr}, {end_lr}, {steps}.")
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def lr_range_test(train_step: Callable[[float], float], *, start_lr: float = 1e-7, end_lr: float = 10.0,
                  steps: int = 100, beta: float = 0.98, diverge: float = 4.0) -> LRFindResult:
    """Run `train_step(lr) -> loss` along the sweep and analyse the curve."""
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    stopped = f"reached end lr {end_lr:g}"
    for i, lr in enumerate(lr_schedule(start_lr, end_lr, steps)):
        loss = float(train_step(lr))
        if not math.isfinite(loss):
            stopped = f"loss became non-finite at lr {lr:.3g}"
            break
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(s)
        best = min(best, s)
        if s > diverge * best:
            stopped = f"smoothed loss exceeded {diverge:g}x its minimum at lr {lr:.3g}"
            break
    return LRFindResult(lrs, losses, smoothed, *suggest(lrs, smoothed), stopped)


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(lr of the steepest descent of the smoothed loss before its minimum, lr of the minimum)."""
    if len(lrs) < 5:
        return None, None
    lowest = int(np.argmin(smoothed))
    skip = len(lrs) // 10  # the first points are mostly the smoother warming up
    if lowest - skip < 3:
        return None, lrs[lowest]
    log_lr = np.log10(lrs[skip: lowest + 1])
    slope = np.gradient(np.asarray(smoothed[skip: lowest + 1]), log_lr)
    return float(lrs[skip + int(np.argmin(slope))]), float(lrs[lowest])


def plot_png(result: LRFindResult, title: str) -> bytes:
    """Loss (raw and smoothed) against lr on a log axis, with the suggestion marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="#bbbbbb", linewidth=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, color="#1f77b4", linewidth=1.8, label="smoothed loss")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="#d62728", linestyle="--",
                   label=f"suggested lr {result.suggestion:.3g} (steepest descent)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    top = max(result.smoothed[: max(len(result.smoothed) // 10, 1)] + [min(result.smoothed) * 1.5])
    ax.set_ylim(min(result.losses) * 0.95, max(top, min(result.losses) * 1.1) * 1.1)
    ax.set_title(title)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.legend(frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def find_lr(cfg: Config, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100) -> LRFindResult:
    """The range test for a config: its data, augmentation, mixing, model, optimizer and precision.

    Runs in this process on `train.device` (no DDP), from freshly initialised weights; nothing is saved.
    """
    from ..data import build_data
    from ..data.augment import build_augment
    from ..data.loader import DeviceLoader, Normalize
    from ..models import create_model, get_entry
    from ..models.registry import logits_of
    from .mixing import Mixer
    from .optim import build_optimizer
    from .precision import autocast, resolve_device, resolve_precision, setup_threads

    setup_threads(cfg.train.threads or 0)
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    torch.manual_seed(cfg.train.seed)
    data = build_data(cfg.data)
    entry = get_entry(cfg.model.name)
    channels_last = entry.channels_last if cfg.model.channels_last is None else cfg.model.channels_last
    normalize = Normalize(data.mean, data.std) if cfg.data.normalize else Normalize(None, None)
    try:
        loader = DeviceLoader(data.splits["train"], cfg.train.batch_size, device=device, train=True,
                              normalize=normalize, pad=cfg.data.pad, flip=cfg.data.flip, seed=cfg.train.seed,
                              channels_last=channels_last, augment=build_augment(cfg.data))
    except ValueError as e:
        raise ClassbenchError(f"Cannot batch the training split: {e}.") from None
    model = create_model(cfg.model.name, num_classes=data.num_classes, **dict(cfg.model.args)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, cfg.optim, device)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    mixer = Mixer(cfg.train.mixup, cfg.train.cutmix, seed=cfg.train.seed)
    batches = loader.batches()

    def train_step(lr: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(batches)
        with autocast(precision, device):
            if mixer.enabled:
                x, mixed = mixer(x, y)
                loss = mixed.loss(criterion, logits_of(model(x)))
            else:
                loss = criterion(logits_of(model(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        return loss.item()

    return lr_range_test(train_step, start_lr=start_lr, end_lr=end_lr, steps=steps)
