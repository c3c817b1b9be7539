"""DDP through torchrun: process-group setup, model wrapping and small collectives.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them everything here is
a no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # set under DDP: the rank's own device


def setup(device_name: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("CLASSBENCH_DIST_TIMEOUT", "300")))
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    return DistInfo(rank, world, local, device)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if info.world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device is not None and info.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def average_window(window: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Sum the per-rank window sums; losses (summed per step) are averaged over ranks."""
    if info.world_size <= 1:
        return window
    keys = sorted(window)
    t = torch.tensor([window[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    out = dict(zip(keys, t.tolist()))
    for k in keys:
        if k.startswith("loss") or k == "steps":
            out[k] /= info.world_size
    return out


def broadcast_object(obj, info: DistInfo):
    if info.world_size <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()
