"""Held-out validation, training subsets and normalisation statistics."""

from __future__ import annotations

import numpy as np
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


# Each subset draws from its own random stream of data.split_seed, so that changing one
# (say data.test_size) never changes another; the val hold-out keeps data.split_seed itself.
SUBSET_STREAMS = {"train": 1, "test": 2, "train_subset": 3}


def subset_seed(split_seed: int, purpose: str) -> int:
    """A seed for one subset, derived from ``data.split_seed`` (a 64-bit value torch accepts)."""
    return int(np.random.SeedSequence([split_seed, SUBSET_STREAMS[purpose]]).generate_state(1, np.uint64)[0])


def stratified_subset(split: Split, size: int, split_seed: int, purpose: str) -> Split:
    """``size`` images of ``split``, class-stratified and seeded like the val hold-out, in their original order.

    A size of 0 or at least the split's length keeps the whole split.
    """
    if size <= 0 or size >= len(split):
        return split
    _, chosen = stratified_holdout(split.labels, size, subset_seed(split_seed, purpose))
    return take(split, chosen)


# A split is "badly unbalanced" when its largest class holds more than this many times its smallest.
IMBALANCE_RATIO = 3.0


def class_counts(split: Split, num_classes: int) -> list[int]:
    return torch.bincount(split.labels, minlength=num_classes).tolist()


def balance_warnings(counts: dict[str, list[int]], classes: list[str], sizes: dict[str, str]) -> list[str]:
    """One plain sentence for each split that lacks classes or is badly unbalanced.

    ``counts``: images per class for each split; ``sizes``: for each split,
    the config key that sets its size, named in the advice.
    """
    out = []
    for name, per_class in counts.items():
        total = sum(per_class)
        missing = [classes[i] for i, n in enumerate(per_class) if n == 0]
        knob = f" Raise {sizes[name]}." if name in sizes else ""
        if missing:
            shown = ", ".join(repr(c) for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
            out.append(
                f"data split '{name}' has no images of {len(missing)} of its {len(classes)} classes ({shown}); "
                f"it holds {total} images, so its accuracy does not cover those classes.{knob}"
            )
            continue
        lo, hi = min(per_class), max(per_class)
        if hi > IMBALANCE_RATIO * lo:
            out.append(
                f"data split '{name}' is unbalanced: class {classes[per_class.index(lo)]!r} has {lo} images, "
                f"class {classes[per_class.index(hi)]!r} has {hi}; accuracy is dominated by the larger classes."
            )
    return out


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
    count = max(images.numel() / c, 1)
    mean = s / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


# A channel whose pixels vary by less than one grey level carries no signal; dividing
# by its (near) zero std would turn it into inf/NaN inputs.  It is divided by 1 instead.
MIN_STD = 1.0 / 255


def usable_std(std: tuple[float, ...]) -> tuple[tuple[float, ...], list[str]]:
    """``std`` with near-constant channels set to 1, and one warning naming them."""
    names = ("red", "green", "blue") if len(std) == 3 else tuple(str(i) for i in range(len(std)))
    flat = [name for name, s in zip(names, std) if s < MIN_STD]
    if not flat:
        return std, []
    which = " and ".join([", ".join(flat[:-1]), flat[-1]] if len(flat) > 1 else flat)
    note = (f"the {which} channel{'s' if len(flat) > 1 else ''} of the training images "
            f"{'are' if len(flat) > 1 else 'is'} constant (std below one grey level: all-black or blank "
            "images?); normalisation divides by 1 there instead of by the std, which would make the inputs NaN.")
    return tuple(1.0 if s < MIN_STD else s for s in std), [note]
