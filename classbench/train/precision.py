"""Device, precision and thread choices, detected rather than guessed."""

from __future__ import annotations

import contextlib
import os
import warnings
from functools import lru_cache

import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device; a GPU always with its index (``cuda`` -> ``cuda:<current>``),
    because torch.cuda.set_device and per-device state refuse a bare ``cuda``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA GPU is visible; use train.device=auto or cpu.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError(f"train.device={name} but only {n} GPU{'s are' if n != 1 else ' is'} visible "
                          f"(cuda:0 to cuda:{n - 1}); use one of them, or check CUDA_VISIBLE_DEVICES.")
    return device


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic in hardware: AVX-512 BF16 or AMX.

    Without it, bf16 autocast emulates each op and runs 10-100x slower than fp32.
    With it, oneDNN runs convolutions and matmuls in bf16: on an AMD EPYC with
    avx512_bf16 (no AMX), benchmarks/precision_cpu.py measured ResNet-20
    training at 574.9 img/s in bf16 against 320.8 in fp32 (docs/perf-measurements.md).
    """
    from ..host import cpu_bf16_unit

    return cpu_bf16_unit() is not None


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True on GPUs with bf16 arithmetic in hardware: compute capability 8.0 (Ampere) and later.

    Not ``torch.cuda.is_bf16_supported()``: by default it also counts emulation, so a V100 (7.0) or T4 (7.5)
    would pick an emulated bf16 that is much slower than fp16 with a GradScaler."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto -> bf16 where the hardware has it (GPUs of compute capability 8.0 and later, CPUs with
    AVX-512 BF16 or AMX), fp16 (with a GradScaler) on older GPUs, fp32 on other CPUs."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_has_native_bf16(device) else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"train.precision={requested} on a CPU without bf16 hardware (AVX-512 BF16 or AMX) is 10-100x "
            "slower than fp32; use train.precision=auto or fp32."
        )
    return requested


def matmul_dtype(precision: str) -> torch.dtype:
    """The dtype that matmuls and convolutions run in under ``precision``'s autocast."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def set_tf32(enabled: bool) -> str:
    """The one TF32 policy of classbench: fp32 matmuls and cuDNN convolutions on CUDA run in TF32
    (``enabled``) or in full fp32 ("ieee").  Returns the setting's name, for env/summary records.

    Only torch's ``fp32_precision`` settings are used, never the older ``allow_tf32`` flags: torch raises
    a RuntimeError when a process mixes the two.  CPU matmuls are untouched (their ``mkldnn`` setting
    would turn on bf16 on CPUs).
    """
    value = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = value
    torch.backends.cudnn.conv.fp32_precision = value
    return value


@contextlib.contextmanager
def tf32_setting(enabled: bool):
    """``set_tf32(enabled)`` inside, the previous CUDA fp32 settings restored after."""
    old = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    set_tf32(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = old


def setup_device(device: torch.device, *, deterministic: bool = False, tf32: bool = True) -> dict:
    """Process-wide settings for training on ``device``; returns what was set (summary.json records it).

    * CUDA: ``set_device`` (a single process too: libraries that use "the current device" -- NCCL,
      CUDA graphs, some kernels -- then use the run's GPU, not cuda:0), ``cudnn.benchmark`` (the inputs of
      a run have one size, so cuDNN's autotuned choice is made once and reused; off when deterministic)
      and the TF32 policy (:func:`set_tf32`).
    * ``deterministic``: ``torch.use_deterministic_algorithms(True, warn_only=True)``: ops that have a
      deterministic kernel use it; the few that have none (e.g. the backward of adaptive max-pool on CUDA)
      warn instead of failing.  cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first use.
      The guarantee, per device, is in docs/reliability.md.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    settings = {"deterministic": deterministic, "tf32": None, "cudnn_benchmark": None}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        settings.update(tf32=set_tf32(tf32), cudnn_benchmark=not deterministic)
    return settings


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def default_threads() -> int:
    """Physical cores available to this process: SMT siblings slow down GEMM-bound work."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    siblings = 1
    try:
        with open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") as f:
            text = f.read().strip()
        siblings = sum(
            (int(b) - int(a) + 1) if "-" in part else 1
            for part in text.split(",")
            for a, _, b in [part.partition("-")]
        )
    except (OSError, ValueError):
        pass
    return max(1, available // max(1, siblings))


def setup_threads(threads: int) -> int:
    n = threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def keep_freed_memory() -> None:
    """CPU training: let glibc malloc keep freed memory instead of unmapping it.

    Activations above malloc's mmap threshold (32 MiB at most) are otherwise mmapped and unmapped every
    step, and every fresh page costs a page fault plus zeroing (~0.4 ms/MiB on a 2-core VM): ResNet-18 at
    batch 256 trained 11-28 % faster with this (docs/perf-measurements.md).  The process keeps its peak
    heap.  No-op without glibc; ``CLASSBENCH_MALLOC_TUNING=0`` turns it off.
    """
    import ctypes
    import os

    if os.environ.get("CLASSBENCH_MALLOC_TUNING", "1") == "0":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX=0: serve large blocks from the heap too
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the top of the heap
    except (OSError, AttributeError):
        pass
