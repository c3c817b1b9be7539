"""Speed of the training step and of inference, as ``classbench bench`` and ``classbench models --bench`` report it.

The training step timed here is the trainer's own (:mod:`classbench.train.step`), so a
change to the step changes the benchmark with it.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
import torch.nn as nn

from ..config import OptimConfig
from ..models.registry import logits_of
from .optim import build_optimizer
from .precision import autocast
from .step import StepParts, train_step


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_rss_mark() -> tuple[int | None, str]:
    """Start a CPU peak-memory window: give freed heap back to the OS, then reset the kernel's RSS
    high-water mark (``/proc/self/clear_refs``).  Returns (baseline RSS bytes, method)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)  # else freed-but-kept heap hides the growth
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return _proc_status_kb("VmRSS") * 1024, "rss_hwm"
    except (OSError, TypeError):
        import resource  # fallback: ru_maxrss only grows, so this is a lower bound

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


def _cpu_rss_peak(method: str) -> int:
    if method == "rss_hwm":
        return _proc_status_kb("VmHWM") * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_status_kb(key: str) -> int | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def time_steps(
    model: nn.Module,
    mode: str = "train",
    batch_size: int = 128,
    steps: int = 10,
    channels_last: bool = False,
    warmup: int = 3,
    input_size: tuple[int, ...] = (3, 32, 32),
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    compile: bool = False,
    label_smoothing: float = 0.0,
    grad_clip: float = 0.0,
    compile_mode: str = "default",
) -> dict[str, Any]:
    """Time ``steps`` steps after ``warmup`` on a deep copy of ``model`` (the caller's model is untouched).

    ``train`` is the trainer's step itself (:func:`classbench.train.step.train_step`): autocast forward
    (+ aux heads), cross-entropy with ``label_smoothing``, ``zero_grad(set_to_none=True)``, backward through
    the GradScaler (on for fp16), clipping when ``grad_clip``, and the optimizer the trainer builds for the
    default recipe (SGD with momentum; fused on CUDA, foreach elsewhere).  ``infer`` is a forward under
    ``inference_mode``.  ``precision`` is fp32/bf16/fp16 autocast.  With ``compile`` the first call goes
    through ``torch.compile`` (``compile_mode``) and is timed apart as ``compile_s``.  Dynamo is reset
    first: its per-code-object recompile limit (8) is shared by every model of a process, so the 9th
    model of one family would otherwise run eager while labelled compiled.  ``compile_graphs`` counts the
    graphs that compilation produced; 0 means torch fell back to eager (``compile_fallback``).

    Timing: on CUDA each step is timed with CUDA events recorded around it, and the host waits once,
    after the last step (a sync per step would add the launch latency to every step); on CPU with the
    host clock.

    Returns ``times`` (seconds per timed step), ``compile_s`` and ``peak_mem_bytes`` with ``mem_method``:
    the growth, from before the copy to the peak of the run, of CUDA allocated memory
    (``max_memory_allocated``, ``cuda_max_allocated``) or of the process's resident set on CPU
    (``rss_hwm``: kernel high-water mark reset through /proc/self/clear_refs after ``malloc_trim``;
    ``ru_maxrss`` where that is unavailable, a lower bound).  It covers weights, gradients, optimizer
    state, activations and workspace.
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be train or infer; got {mode!r}")
    dev = torch.device(device) if device is not None else _device_of(model)
    if dev.type == "cuda":
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base, method = torch.cuda.memory_allocated(dev), "cuda_max_allocated"
    else:
        base, method = _cpu_rss_mark()
    model = copy.deepcopy(model).to(dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=memory_format)
    x = torch.randn(batch_size, *input_size, device=dev).contiguous(memory_format=memory_format)
    if compile:
        torch._dynamo.reset()
        run = torch.compile(model, mode=None if compile_mode == "default" else compile_mode)
    else:
        run = model
    if mode == "infer":
        model.eval()

        def one_step() -> None:
            with torch.inference_mode(), autocast(precision, dev):
                run(x)
    else:
        model.train()
        with torch.no_grad():
            n_out = num_classes or logits_of(model(x[:2])).shape[1]
        y = torch.randint(0, n_out, (batch_size,), device=dev)
        # the default recipe's optimizer, at a small lr: random data must not drive the weights to inf
        optimizer = build_optimizer(model, OptimConfig(lr=1e-3), dev)
        parts = StepParts.build(model, optimizer, precision=precision, device=dev, label_smoothing=label_smoothing,
                                grad_clip=grad_clip, run_model=run)

        def one_step() -> None:
            train_step(parts, x, y)

    compile_s, graphs = 0.0, None
    if compile:
        _sync(dev)
        before = compiled_graphs()
        t0 = time.perf_counter()
        one_step()  # the first compiled call is compilation
        _sync(dev)
        compile_s = time.perf_counter() - t0
        graphs = compiled_graphs() - before
    for _ in range(warmup):
        one_step()
    times = _time_each(one_step, steps, dev)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = _cpu_rss_peak(method) - base if base is not None else None
    return {"times": times, "compile_s": compile_s, "peak_mem_bytes": peak, "mem_method": method,
            "compile_graphs": graphs, "compile_fallback": graphs == 0 if compile else None}


def compiled_graphs() -> int:
    """Graphs that dynamo has compiled in this process so far (a counter that only grows)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _time_each(one_step, steps: int, dev: torch.device) -> list[float]:
    """Seconds of each of ``steps`` calls.  CUDA: events around each step, one sync at the end."""
    if dev.type != "cuda":
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            one_step()
            times.append(time.perf_counter() - t0)
        return times
    _sync(dev)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
    for start, end in events:
        start.record()
        one_step()
        end.record()
    _sync(dev)
    return [start.elapsed_time(end) / 1e3 for start, end in events]  # ms -> s


def measure_speed(model: nn.Module, mode: str = "train", batch_size: int = 128, **options: Any) -> float:
    """Images per second: ``batch_size / median(step time)`` over ``steps`` steps after ``warmup``.

    Works on a deep copy, so the caller's model (weights, BN stats, mode) is untouched.
    """
    r = time_steps(model, mode, batch_size, **options)
    return batch_size / statistics.median(r["times"])
