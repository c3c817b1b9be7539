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
    """True when the CPU trains faster in bf16 than in fp32: it has AMX tiles.

    Without any bf16 hardware, autocast emulates each op and runs 10-100x
    slower than fp32.  AVX-512 BF16 alone is not enough: on such a CPU
    (AMD EPYC, avx512_bf16, no AMX) benchmarks/precision_cpu.py measured
    ResNet-20 training at 59.5 img/s in bf16 against 73.7 in fp32, because
    convolutions and the non-matmul ops gain nothing and pay for conversions.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_bf16" in flags.split()


def resolve_precision(requested: str, device: torch.device) -> str:
    """auto -> bf16 where the hardware makes it faster (CUDA with bf16, CPUs with AMX), fp16 on older
    GPUs, fp32 on other CPUs."""
    if requested == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if requested in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            f"train.precision={requested} on a CPU without AMX is slower than fp32 (10-100x without any "
            "bf16 hardware); use train.precision=auto or fp32."
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
