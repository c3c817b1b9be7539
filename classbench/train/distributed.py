"""DDP through torchrun: process-group setup, model wrapping and small collectives.

torchrun sets RANK, LOCAL_RANK, LOCAL_WORLD_SIZE and WORLD_SIZE; without them
everything here is a no-op and training runs in one process.

Backends: NCCL when the ranks train on CUDA, gloo on CPU.  Small host-side
collectives (the log window, stop signals, run folder, RNG states) always go
through a gloo group on CPU tensors -- the default group itself under gloo, a
second gloo group under NCCL -- so they never wait for the GPU.  Device tensors
(evaluation sums, weights) go through the group that takes their device; see
:func:`all_reduce_`.

Every collective times out after ``CLASSBENCH_DIST_TIMEOUT`` seconds (default
300): a rank that dies or hangs makes the others fail with a clear message
(:func:`explain_errors`) instead of waiting forever, and torchrun then stops the
whole group.  See docs/distributed.md.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ClassbenchError, ConfigError

DEFAULT_TIMEOUT_S = 300.0


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # set under DDP: the rank's own device
    local_world_size: int = 1  # processes on this node


_CPU_GROUP = None  # gloo group for host-side collectives (dist.group.WORLD when the backend is gloo)
_BROKEN = False  # a collective failed: do not try to tear the group down politely at exit


def timeout_s() -> float:
    raw = os.environ.get("CLASSBENCH_DIST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"CLASSBENCH_DIST_TIMEOUT={raw!r} must be a positive number of seconds (default {DEFAULT_TIMEOUT_S:.0f}).")
    return value


def setup(device_name: str) -> DistInfo:
    global _CPU_GROUP
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device_name} but no CUDA GPU is visible; use train.device=auto or cpu.")
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda and local >= torch.cuda.device_count():
        raise ClassbenchError(
            f"Process with LOCAL_RANK={local} has no GPU of its own: only {torch.cuda.device_count()} are visible. "
            f"Start at most {torch.cuda.device_count()} processes per node (--nproc_per_node), or use train.device=cpu."
        )
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=timeout_s())
    if use_cuda:
        nccl_error_handling()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
        atexit.register(_cleanup)
    if _CPU_GROUP is None:
        _CPU_GROUP = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    return DistInfo(rank, world, local, device, local_world)


#: TORCH_NCCL_ASYNC_ERROR_HANDLING=2 ("CleanUpOnly"): when NCCL's watchdog sees a failed or timed-out
#: collective it aborts the communicators, and the waiting call raises an exception that
#: :func:`explain_errors` turns into a message.  torch's default (3, "SkipCleanUp") tears the process
#: down with SIGABRT instead, so nobody says what happened.
NCCL_ERROR_HANDLING = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "2"}


def nccl_error_handling() -> None:
    """Set :data:`NCCL_ERROR_HANDLING` in this process's environment (a value the user set wins); NCCL
    reads it when the process group is created."""
    for key, value in NCCL_ERROR_HANDLING.items():
        os.environ.setdefault(key, value)


def _cleanup() -> None:
    global _CPU_GROUP
    if dist.is_initialized() and not _BROKEN:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _CPU_GROUP = None


def wrap(model: torch.nn.Module, info: DistInfo, *, sync_bn: bool = False) -> torch.nn.Module:
    """DDP around ``model``.

    ``gradient_as_bucket_view``: gradients live in DDP's all-reduce buckets, which saves one copy of
    the gradients (memory and a copy per step).  ``broadcast_buffers``: without SyncBatchNorm each rank's
    BatchNorm running statistics come from its own share of the batch, so DDP copies rank 0's buffers to
    the others before every forward -- every rank then evaluates (its shard of val/test) with the same
    model.  With SyncBatchNorm the statistics are already global and identical on every rank, so that
    broadcast is skipped.
    """
    if info.world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device is not None and info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, gradient_as_bucket_view=True, broadcast_buffers=not sync_bn)


def check_batch(batch_size: int, info: DistInfo) -> None:
    """The global batch must split evenly over the ranks: say which batch sizes would."""
    n = info.world_size
    if n <= 1 or batch_size % n == 0:
        return
    lower, upper = (batch_size // n) * n, (batch_size // n + 1) * n
    options = " or ".join(str(b) for b in (lower, upper) if b > 0)
    raise ConfigError(
        f"train.batch_size={batch_size} must be divisible by the world size {n} (each process trains "
        f"batch_size / {n} images per step). Use a multiple of {n}, e.g. train.batch_size={options}, "
        f"or a number of processes that divides {batch_size}."
    )


def local_threads(info: DistInfo) -> int:
    """CPU threads per process under DDP: the node's physical cores shared by its processes.

    0 (the single-process default) outside DDP.
    """
    if info.world_size <= 1:
        return 0
    from .precision import default_threads

    return max(1, default_threads() // max(1, info.local_world_size))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's global RNG stream (dropout, MixStyle, ...) after the shared model init.

    32 bits that differ between ranks: the CPU generator (mt19937) keeps only
    the low 32 bits of a seed, so ``seed + rank * 2**32`` would give every rank
    the same stream.
    """
    import hashlib

    digest = hashlib.sha256(f"classbench-rank-stream:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def to_cpu(obj):
    """``obj`` with every tensor in it (nested in dicts, lists, tuples) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def convert_sync_bn(model: torch.nn.Module, device: torch.device, name: str) -> torch.nn.Module:
    """model.sync_bn=true under DDP: BatchNorm layers -> SyncBatchNorm, or a ConfigError where that
    would do nothing (no torch BatchNorm layer in ``model``, e.g. airbench_net's own normalisation)
    or cannot run (CPU)."""
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()):
        raise ConfigError(
            f"model.sync_bn=true does nothing for {name}: it has no torch BatchNorm layer to synchronise "
            "(its normalisation is its own module, or not BatchNorm). Drop model.sync_bn for this model."
        )
    check_sync_bn(device)
    return converted


def check_sync_bn(device: torch.device) -> None:
    if device.type == "cpu":
        raise ConfigError(
            f"model.sync_bn=true needs GPUs: SyncBatchNorm in torch {torch.__version__} only runs on CUDA "
            "(or XPU/HPU) tensors, not on CPU processes (gloo). Drop model.sync_bn on CPU: each rank then "
            "normalises with the statistics of its own share of the batch (and DDP keeps rank 0's running "
            "statistics), or use a model without BatchNorm (e.g. model.args.norm=gn)."
        )


# ---------------------------------------------------------------- collectives
def all_reduce_(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce ``t`` in place over all ranks, through the group that takes its device.

    gloo needs CPU tensors and NCCL CUDA tensors: a CPU tensor goes through the
    gloo group, a CUDA tensor through NCCL (or through a CPU copy when the
    backend is gloo).
    """
    cpu_group = _CPU_GROUP if _CPU_GROUP is not None else dist.group.WORLD
    if t.device.type == "cpu":
        dist.all_reduce(t, op=op, group=cpu_group)
    elif dist.get_backend() == "nccl":
        dist.all_reduce(t, op=op)
    else:
        host = t.cpu()
        dist.all_reduce(host, op=op, group=cpu_group)
        t.copy_(host)
    return t


def average_window(window: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Sum the per-rank window sums; losses (summed per step) are averaged over ranks."""
    if info.world_size <= 1:
        return window
    keys = sorted(window)
    t = torch.tensor([window[k] for k in keys], dtype=torch.float64)  # host values: the gloo group
    all_reduce_(t)
    out = dict(zip(keys, t.tolist()))
    for k in keys:
        if k.startswith("loss") or k == "steps":
            out[k] /= info.world_size
    return out


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if info.world_size <= 1:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], dtype=torch.int64)
    all_reduce_(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_ranks(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on all of them."""
    return not any_rank(not flag, info)


@contextlib.contextmanager
def catch_stop_signals(on_signal):
    """While inside, SIGINT and SIGTERM call ``on_signal(signum)`` instead of ending the process (the loop
    then stops at a step boundary).  Only the main thread can install handlers; elsewhere this does nothing.

    A signal that this process inherited as ignored stays ignored: a shell starts background jobs with
    SIGINT ignored, and catching it here would let ``kill -INT`` stop one run while its sweep, which
    ignores it, starts the next."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, lambda signum, frame: on_signal(signum))
           for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class StopPoll:
    """Agrees on a stop signal across ranks without a blocking round trip per step.

    ``poll(signum)`` (0: none here) starts an all-reduce(max) of this rank's
    signal and returns the result of the previous step's, so every rank sees
    the same answer at the same step, one step after the first rank saw a
    signal.  Outside DDP it returns ``signum`` at once.
    """

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self._pending = None

    def __call__(self, signum: int) -> int:
        if self.info.world_size <= 1:
            return signum
        agreed = self._wait()
        t = torch.tensor([int(signum)], dtype=torch.int64)
        self._pending = (dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_CPU_GROUP, async_op=True), t)
        if agreed:
            self._wait()  # leave nothing in flight before the checkpoint's collectives
        return agreed

    def _wait(self) -> int:
        if self._pending is None:
            return 0
        work, t = self._pending
        self._pending = None
        work.wait()
        return int(t.item())

    def close(self) -> None:
        self._wait()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if info.world_size <= 1:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj, group=_CPU_GROUP)
    return out


def broadcast_object(obj, info: DistInfo):
    if info.world_size <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_CPU_GROUP)
    return box[0]


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (the module is on the rank's device)."""
    if info.world_size <= 1:
        return
    for t in module.state_dict().values():
        if t.device.type == "cpu" or dist.get_backend() == "nccl":
            dist.broadcast(t, src=0, group=_CPU_GROUP if t.device.type == "cpu" else None)
        else:
            host = t.cpu()
            dist.broadcast(host, src=0, group=_CPU_GROUP)
            t.copy_(host)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier(group=_CPU_GROUP)


# ---------------------------------------------------------------- failures
def _is_collective_failure(e: BaseException) -> bool:
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    if not isinstance(e, RuntimeError):
        return False
    text = str(e)
    return any(s in text for s in ("gloo", "Gloo", "NCCL", "ProcessGroup", "Connection reset by peer",
                                   "Connection closed by peer", "Timed out waiting"))


@contextlib.contextmanager
def explain_errors():
    """Turn a failed collective (a rank died, hung or timed out) into a ClassbenchError that says so."""
    global _BROKEN
    try:
        yield
    except Exception as e:
        if os.environ.get("WORLD_SIZE", "1") in ("", "0", "1") or not _is_collective_failure(e):
            raise
        _BROKEN = True
        rank, world = os.environ.get("RANK", "?"), os.environ.get("WORLD_SIZE", "?")
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClassbenchError(
            f"rank {rank} of {world}: a collective operation with the other processes failed ({first[:300]}). "
            "Another process probably died, was killed or stopped responding: look for its own error above. "
            f"Collectives give up after CLASSBENCH_DIST_TIMEOUT={timeout_s():g} s. "
            "Resume from the last checkpoint with `classbench train --resume RUN_DIR` (same number of processes)."
        ) from None
