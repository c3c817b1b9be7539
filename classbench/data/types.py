"""The in-memory form of one dataset split (see docs/design.md, "Data")."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError


@dataclass
class Split:
    """Images and labels of one split, held in memory on the CPU.

    ``images`` is a uint8 tensor of shape (N, 3, H, W), contiguous, on the CPU;
    ``labels`` is an int64 tensor of shape (N,).  The constructor checks both and
    raises :class:`DataError` when they do not fit (a non-contiguous ``images``
    is made contiguous rather than refused).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor):
            raise DataError(f"Split.images must be a torch.Tensor, got {type(images).__name__}.")
        if not isinstance(labels, torch.Tensor):
            raise DataError(f"Split.labels must be a torch.Tensor, got {type(labels).__name__}.")
        if images.dtype != torch.uint8:
            raise DataError(f"Split.images must be uint8, got {images.dtype}.")
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"Split.images must have shape (N, 3, H, W), got {tuple(images.shape)}.")
        if labels.dtype != torch.int64:
            raise DataError(f"Split.labels must be int64, got {labels.dtype}.")
        if labels.ndim != 1:
            raise DataError(f"Split.labels must have shape (N,), got {tuple(labels.shape)}.")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"Split has {images.shape[0]} images but {labels.shape[0]} labels; they must match."
            )
        if images.device.type != "cpu" or labels.device.type != "cpu":
            raise DataError(
                f"Split tensors must be on the CPU (images on {images.device}, labels on {labels.device})."
            )
        if not images.is_contiguous():
            self.images = images.contiguous()
        if not labels.is_contiguous():
            self.labels = labels.contiguous()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, images={tuple(self.images.shape)} uint8, labels=int64)"
