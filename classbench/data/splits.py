"""Held-out validation, training subsets and normalisation statistics."""

from __future__ import annotations

import torch

from .types import Split


def stratified_holdout(labels: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (keep, held_out) with `size` held out, class-balanced.

    Each class gives its share of `size` in proportion to its count; the
    remainder goes to the classes with the largest fractional share, so the
    total is exact. Both index sets keep the original order.
    """
    n = len(labels)
    if size >= n:
        raise ValueError(f"cannot hold out {size} of {n} images")
    g = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    share = counts.double() * size / n
    quota = share.floor().long()
    remainder = size - int(quota.sum())
    if remainder:
        order = torch.argsort(share - quota, descending=True, stable=True)
        quota[order[:remainder]] += 1
    held = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = torch.nonzero(labels == c).flatten()
        held.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.cat(held)] = True
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()


def take(split: Split, index: torch.Tensor | slice) -> Split:
    return Split(split.images[index].contiguous(), split.labels[index].contiguous())


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, accumulated in float64 by chunks."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.float64).div_(255)
        s += x.sum(dim=(0, 2, 3))
        sq += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() / c
    mean = s / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
