"""Device, precision and thread choices, detected rather than guessed."""

from __future__ import annotations

import contextlib
import os
import warnings
from functools import lru_cache

import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but no CUDA GPU is visible; use train.device=auto or cpu.")
    return device


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 arithmetic in hardware: AVX-512 BF16 or AMX.

    Without it, bf16 autocast emulates each op and runs 10-100x slower than fp32.
    With it, oneDNN runs convolutions and matmuls in bf16: on an AMD EPYC with
    avx512_bf16 (no AMX), benchmarks/precision_cpu.py measured ResNet-20
    training at 574.9 img/s in bf16 against 320.8 in fp32 (docs/perf-measurements.md).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return bool(set(flags.split()) & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto -> bf16 where the hardware has it (CUDA with bf16, CPUs with AVX-512 BF16 or AMX), fp16 on
    older GPUs, fp32 on other CPUs."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"train.precision={requested} on a CPU without bf16 hardware (AVX-512 BF16 or AMX) is 10-100x "
            "slower than fp32; use train.precision=auto or fp32."
        )
    return requested


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
