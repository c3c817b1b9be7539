"""Evaluation: loss, top-1 and top-5 over a whole split, counted exactly.

Sums accumulate on the device and are read once at the end.  Under DDP an eval
loader made with the rank and world size holds the shard ``rank::world_size``
of the split; the sums over those shards (not per-rank averages) are
all-reduced, so every image counts exactly once.  A loader over the whole
split (``world_size == 1``) is evaluated locally, without a collective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.registry import logits_of
from .precision import autocast


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader, *, precision: str = "fp32", tta: bool = False,
             num_classes: int | None = None, with_predictions: bool = False) -> dict:
    was_training = model.training
    model.eval()
    device = loader.device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    preds, targets, confs = [], [], []
    for x, y in loader:
        with autocast(precision, device):
            logits = logits_of(model(x))
            if tta:
                logits = (logits.float().softmax(1) + logits_of(model(x.flip(3))).float().softmax(1)) / 2
                logits = logits.clamp_min(1e-12).log()  # average probabilities, then back to log space
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = top == y[:, None]
        sums += torch.stack([
            F.cross_entropy(logits, y, reduction="sum").double(),
            hit[:, 0].sum().double(),
            hit.any(dim=1).sum().double(),
            torch.full((), float(len(y)), device=device, dtype=torch.float64),  # a fill, not a blocking H2D copy
        ])
        if with_predictions:
            preds.append(top[:, 0])
            targets.append(y)
            confs.append(logits.softmax(1).amax(1))  # the predicted class's probability (under TTA: the averaged one)
    if getattr(loader, "world_size", 1) > 1 and dist.is_available() and dist.is_initialized():
        from .distributed import all_reduce_

        all_reduce_(sums)  # gloo takes CPU tensors, NCCL CUDA ones: all_reduce_ picks the group
    loss, c1, c5, n = sums.tolist()
    model.train(was_training)
    out = {"loss": loss / n, "top1": c1 / n, "top5": c5 / n, "count": int(n)}
    if with_predictions:
        out["pred"] = torch.cat(preds).cpu()
        out["target"] = torch.cat(targets).cpu()
        out["confidence"] = torch.cat(confs).cpu()
    return out
