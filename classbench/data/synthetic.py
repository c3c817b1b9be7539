"""A small, learnable synthetic image task for tests and smoke runs.

Each class has its own smooth random colour template (random values on a 4x4
grid per channel, upsampled bilinearly).  An image is its class template,
shifted by up to ``image_size // 8`` pixels (circularly), with a random
brightness offset and per-pixel Gaussian noise, stored as uint8.  A small CNN
separates the classes well above chance within a few dozen steps; a linear
model on raw pixels does too, so the task checks plumbing, not architectures.
Everything is a function of ``seed``: templates, train split and test split
each come from their own stream, so changing ``train_size`` does not change
the test split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .memory import check_fits
from .types import Split

_GRID = 4
_AMPLITUDE = 70.0  # template range around mid-grey (128 +- 70)
_NOISE_STD = 32.0
_BRIGHTNESS_STD = 12.0


def _templates(num_classes: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.uniform(-1.0, 1.0, size=(num_classes, 3, _GRID, _GRID)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(grid), size=(image_size, image_size), mode="bilinear", align_corners=False)
    return 128.0 + _AMPLITUDE * up.numpy()  # (C, 3, S, S) float32


def _make_split(templates: np.ndarray, n: int, rng: np.random.Generator) -> Split:
    num_classes, _, size, _ = templates.shape
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    max_shift = max(size // 8, 0)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    bright = rng.normal(0.0, _BRIGHTNESS_STD, size=(n, 1, 1, 1)).astype(np.float32)
    for start in range(0, n, 4096):
        stop = min(start + 4096, n)
        block = templates[labels[start:stop]]  # fancy indexing: a fresh array
        sh = shifts[start:stop]
        # Roll all images that share one shift together (at most (2*max_shift+1)^2 groups).
        for dy, dx in {(int(a), int(b)) for a, b in sh}:
            if dy or dx:
                sel = np.flatnonzero((sh[:, 0] == dy) & (sh[:, 1] == dx))
                block[sel] = np.roll(block[sel], (dy, dx), axis=(2, 3))
        block += bright[start:stop]
        block += _NOISE_STD * rng.standard_normal(size=block.shape, dtype=np.float32)
        np.rint(block, out=block)
        np.clip(block, 0, 255, out=block)
        images[start:stop] = block.astype(np.uint8)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def make_synthetic(
    num_classes: int = 10,
    train_size: int = 512,
    test_size: int = 256,
    image_size: int = 32,
    seed: int = 0,
) -> tuple[Split, Split, list[str]]:
    """Build ``(train, test, classes)`` for the synthetic task (deterministic in ``seed``)."""
    for key, value, low in (("num_classes", num_classes, 2), ("train_size", train_size, 1),
                            ("test_size", test_size, 1), ("image_size", image_size, 4)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"synthetic data: {key} must be an int >= {low}, got {value!r}.")
    seed = int(seed)
    if seed < 0:
        raise DataError(f"synthetic data: seed must be >= 0, got {seed}.")
    pixels = 3 * int(image_size) ** 2
    # uint8 images of both splits, float32 templates, one float32 work block, and the
    # splits' copies of the training images (val hold-out, subsets).
    needed = pixels * (2 * int(train_size) + int(test_size) + 4 * int(num_classes) + 4 * min(4096, int(train_size)))
    check_fits(needed, f"Synthetic data of {train_size} + {test_size} images of {image_size}x{image_size} "
                       f"in {num_classes} classes",
               "Lower data.synthetic_size, data.num_classes or data.image_size.")
    templates = _templates(int(num_classes), int(image_size), np.random.default_rng([seed, 0]))
    train = _make_split(templates, int(train_size), np.random.default_rng([seed, 1]))
    test = _make_split(templates, int(test_size), np.random.default_rng([seed, 2]))
    classes = [f"class_{i}" for i in range(int(num_classes))]
    return train, test, classes
