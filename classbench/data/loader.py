"""A tensor-resident loader with batched augmentation, after airbench.

The whole split lives on the training device as uint8 (a CIFAR train split is
150 MB).  A batch is made by ONE advanced-indexing gather that picks the
images, crops them out of the zero-padded copy and flips them, all at once;
then it is converted to float and normalised.  There are no worker processes,
no per-sample Python, and no host-device copies per step: the random crop
offsets, flips and the permutation of an epoch are drawn once per epoch.

Randomness comes from the loader's own ``torch.Generator``, so the data order
does not depend on what the model draws from the global RNG.  The state is
(epoch, position in the epoch, generator state at the start of the epoch):
resuming redraws the same epoch plan and skips the batches already seen.

Under DDP every rank draws the same plan and takes a disjoint slice of each
global batch, so the union over ranks of one step is exactly the batch a single
process would see.

More augmentation (``augment=``, :mod:`classbench.data.augment`: a policy,
random-resized crop, rotation, Cutout) draws its per-image parameters into the
same epoch plan, after the permutation, offsets and flips, so without it the
batches are exactly those of the plain pad-crop and flip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from .augment import Augment
from .types import Split


@dataclass
class Normalize:
    """Maps uint8 pixels to float: ``(x / 255 - mean) / std``, folded into one affine map."""

    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None or self.std is None:
            scale = torch.full((3,), 1 / 255)
            shift = torch.zeros(3)
        else:
            std = torch.tensor(self.std, dtype=torch.float64)
            mean = torch.tensor(self.mean, dtype=torch.float64)
            scale = 1 / (255 * std)
            shift = -mean / std
        return (scale.float().view(1, 3, 1, 1).to(device), shift.float().view(1, 3, 1, 1).to(device))


def to_float(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = torch.addcmul(shift, images.float(), scale)  # one fused kernel: shift + x * scale
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class DeviceLoader:
    """Batches of one split, resident on `device`.

    `train=True`: shuffled each epoch, random pad-crop and flip, drop_last; `augment` adds more
    (with ``augment.crop == "resized"`` the random-resized crop replaces the pad-crop: `pad` is ignored).
    `train=False`: in order, no augmentation, the last partial batch kept.
    `batch_size` is the global batch; each of `world_size` ranks yields
    `batch_size // world_size` images per step.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        train: bool,
        normalize: Normalize,
        pad: int = 0,
        flip: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        augment: Augment | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.train = train
        self.augment = augment.build(*split.image_size) if (augment is not None and train) else None
        self.resized = self.augment is not None and self.augment.resized
        if self.resized:
            pad = 0
        self.pad = pad if train else 0
        self.flip = flip and train
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        if train and batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} must be divisible by the world size {world_size}")
        self.batch_size = batch_size
        self.local_batch = batch_size // world_size if train else batch_size
        self.n = len(split)
        if train and self.n < batch_size:
            raise ValueError(
                f"the training split has {self.n} images, fewer than one batch of {batch_size}; "
                "lower train.batch_size"
            )
        images = split.images
        if self.pad:
            images = F.pad(images, (self.pad,) * 4)  # zeros, as in the usual CIFAR recipe
        self.images = images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.height, self.width = split.image_size
        self.scale, self.shift = normalize.affine(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.position = 0
        self._epoch_start_state = self.generator.get_state()
        # Index grids for the crop gather, made once.
        self._rows = torch.arange(self.height, device=self.device).view(1, 1, -1, 1)
        self._cols = torch.arange(self.width, device=self.device).view(1, 1, 1, -1)
        self._chans = torch.arange(3, device=self.device).view(1, 3, 1, 1)
        if not train:
            # Eval shards: rank r takes every world_size-th image, so the ranks
            # together cover the split exactly once.
            self._eval_index = torch.arange(rank, self.n, world_size, device=self.device)

    def __len__(self) -> int:
        if self.train:
            return self.n // self.batch_size
        m = len(self._eval_index)
        return (m + self.batch_size - 1) // self.batch_size

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "generator": self._epoch_start_state.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        # .cpu(): the generator is a CPU one, and a checkpoint loaded with map_location=cuda has its state on the GPU
        self._epoch_start_state = state["generator"].cpu().clone()
        self.generator.set_state(self._epoch_start_state)

    # ------------------------------------------------------------ batches
    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This rank's indices for the epoch, (steps, local_batch), and per-image crop/flip params.

        The augmentation's per-image parameters, drawn last, go to ``self._augment_plan``.
        """
        self._epoch_start_state = self.generator.get_state()
        perm = torch.randperm(self.n, generator=self.generator)
        steps = len(self)
        perm = perm[: steps * self.batch_size].view(steps, self.world_size, self.local_batch)[:, self.rank]
        offsets = cols = None
        if self.pad:
            offsets = torch.randint(0, 2 * self.pad + 1, (self.n, 2), generator=self.generator)
        if self.flip:
            cols = torch.randint(0, 2, (self.n,), generator=self.generator, dtype=torch.bool)
        to = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        if self.augment is not None:
            plan = self.augment.draw(self.n, self.generator)
            self._augment_plan = {k: to(v) for k, v in plan.items()}
            # Host copies that group a batch's images by operation without a device sync.
            self._host_perm, self._host_ops = perm, plan.get("op")
        return perm.to(self.device, non_blocking=True), to(offsets), to(cols)

    def _gather(self, idx: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
        """Crop and flip a batch with one advanced-indexing gather."""
        b = idx.view(-1, 1, 1, 1)
        dy = dx = 0
        if offsets is not None:
            o = offsets[idx]
            dy, dx = o[:, 0].view(-1, 1, 1, 1), o[:, 1].view(-1, 1, 1, 1)
        rows, cols = self._rows + dy, self._cols + dx
        if flips is not None:
            cols = torch.where(flips[idx].view(-1, 1, 1, 1), dx + (self.width - 1) - self._cols, cols)
        return self.images[b, self._chans, rows, cols]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.train:
            for i in range(len(self)):
                idx = self._eval_index[i * self.batch_size : (i + 1) * self.batch_size]
                yield to_float(self.images[idx], self.scale, self.shift, self.channels_last), self.labels[idx]
            return
        self.generator.set_state(self._epoch_start_state)
        perm, offsets, flips = self._epoch_plan()
        warp_flips = flips if self.resized else None  # the resized crop flips in its own resampling
        if self.resized:
            flips = None
        gather = offsets is not None or flips is not None
        while self.position < len(perm):
            idx = perm[self.position]
            raw = self._gather(idx, offsets, flips) if gather else self.images[idx]
            self.position += 1
            if self.augment is None:
                yield to_float(raw, self.scale, self.shift, self.channels_last), self.labels[idx]
                continue
            p = {k: v[idx] for k, v in self._augment_plan.items()}
            ops = None if self._host_ops is None else self._host_ops[self._host_perm[self.position - 1]]
            raw = self.augment.pixels(raw, p, None if warp_flips is None else warp_flips[idx], ops)
            x = self.augment.erase(to_float(raw, self.scale, self.shift, self.channels_last), p)
            yield x, self.labels[idx]
        self.epoch += 1
        self.position = 0
        self._epoch_start_state = self.generator.get_state()

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches forever, epoch after epoch."""
        while True:
            yield from self.__iter__()
