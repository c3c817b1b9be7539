"""Model profiling: parameters, forward FLOPs, throughput, and the model table.

* ``count_params(model)``: trainable and frozen parameters (buffers excluded).
* ``count_flops(model, (3, 32, 32))``: forward FLOPs for one image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convs, a multiply-add
  counts as 2 FLOPs), with the model in eval mode, batch 1, no grad. Works on a
  model on the ``meta`` device too (no compute at all), which the model table uses.
* ``measure_speed(model, mode, batch_size, **time_steps_options)``: images per
  second, the median over ``steps`` timed steps after warm-up; ``train`` times
  forward + backward + an SGD step, ``infer`` a forward under ``inference_mode``.
  ``time_steps(...)`` is the same with the per-step times, compile time and peak
  memory (``classbench bench`` uses it).
* ``model_rows(...)`` / ``format_rows(...)``: the table of ``classbench models``.
"""

from __future__ import annotations

import copy
import json
import re
import statistics
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import create_model, get_entry, list_models


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def count_flops(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32)) -> int:
    """Forward FLOPs per image (batch 1, eval mode, no grad). Restores the training flag."""
    from torch.utils.flop_counter import FlopCounterMode

    from torch.nn.attention import SDPBackend, sdpa_kernel

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, *input_size, device=_device_of(model))
        counter = FlopCounterMode(display=False)
        # The math backend of scaled_dot_product_attention is made of matmuls the counter sees;
        # some fused CPU kernels are not counted at all.
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _logits(out: Any) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


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
) -> dict[str, Any]:
    """Time ``steps`` steps after ``warmup`` on a deep copy of ``model`` (the caller's model is untouched).

    ``train`` is the trainer's hot path: forward (+ aux heads), cross-entropy, ``zero_grad(set_to_none=True)``,
    backward, SGD with momentum (fused on CUDA, foreach elsewhere); ``infer`` is a forward under
    ``inference_mode``.  ``precision`` is fp32/bf16/fp16 autocast.  With ``compile`` the first call goes
    through ``torch.compile`` and is timed apart as ``compile_s``.

    Returns ``times`` (seconds per timed step), ``compile_s`` and ``peak_mem_bytes`` with ``mem_method``:
    the growth, from before the copy to the peak of the run, of CUDA allocated memory
    (``max_memory_allocated``, ``cuda_max_allocated``) or of the process's resident set on CPU
    (``rss_hwm``: kernel high-water mark reset through /proc/self/clear_refs after ``malloc_trim``;
    ``ru_maxrss`` where that is unavailable, a lower bound).  It covers weights, gradients, optimizer
    state, activations and workspace.
    """
    from ..train.precision import autocast

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
    if mode == "infer":
        model.eval()
    else:
        model.train()
        with torch.no_grad():
            n_out = num_classes or _logits(model(x[:2])).shape[1]
        y = torch.randint(0, n_out, (batch_size,), device=dev)
        fast = {"fused": True} if dev.type == "cuda" else {"foreach": True}
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, **fast)
    run = torch.compile(model) if compile else model

    def step() -> None:
        if mode == "infer":
            with torch.inference_mode(), autocast(precision, dev):
                run(x)
            return
        with autocast(precision, dev):
            out = run(x)
            loss = F.cross_entropy(_logits(out), y)
            if isinstance(out, dict):
                loss = loss + sum(F.cross_entropy(a, y) for a in out["aux"].values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    compile_s = 0.0
    if compile:
        _sync(dev)
        t0 = time.perf_counter()
        step()  # the first compiled call is compilation
        _sync(dev)
        compile_s = time.perf_counter() - t0
    times: list[float] = []
    for i in range(warmup + steps):
        _sync(dev)
        t0 = time.perf_counter()
        step()
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = _cpu_rss_peak(method) - base if base is not None else None
    return {"times": times, "compile_s": compile_s, "peak_mem_bytes": peak, "mem_method": method}


def measure_speed(model: nn.Module, mode: str = "train", batch_size: int = 128, **options: Any) -> float:
    """Images per second: ``batch_size / median(step time)`` over ``steps`` steps after ``warmup``.

    Works on a deep copy, so the caller's model (weights, BN stats, mode) is untouched.
    The step is the trainer's (see :func:`time_steps`).
    """
    r = time_steps(model, mode, batch_size, **options)
    return batch_size / statistics.median(r["times"])


def model_rows(
    num_classes: int = 10,
    pattern: str | None = None,
    bench: bool = False,
    batch_size: int = 128,
    steps: int = 10,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """One row per registered model (matching ``pattern``, a regex searched in the name)."""
    if pattern is not None:
        re.compile(pattern)  # a bad pattern raises re.error here, before any model is built
    rows = []
    for name in list_models(pattern):
        entry = get_entry(name)
        # Parameters and FLOPs need shapes only: build on the meta device (no memory, no compute).
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes)
        row: dict[str, Any] = {
            "name": name,
            "family": entry.family,
            "params": count_params(model),
            "flops": count_flops(model),
            "options": dict(entry.options),
        }
        if bench:
            dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            model = create_model(name, num_classes=num_classes).to(dev)
            for mode in ("train", "infer"):
                row[f"{mode}_img_per_s"] = measure_speed(
                    model, mode, batch_size, steps=steps, channels_last=entry.channels_last,
                    num_classes=num_classes,
                )
        rows.append(row)
        del model
    return rows


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _options_text(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items())


def format_rows(rows: list[dict[str, Any]], fmt: str = "table") -> str:
    """Render rows as an aligned text ``table``, a ``markdown`` table or ``json`` (a list of objects)."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt not in ("table", "markdown"):
        raise ValueError(f"format must be table, markdown or json; got {fmt!r}")
    bench = any("train_img_per_s" in r for r in rows)
    header = ["name", "family", "params", "FLOPs"] + (["train img/s", "infer img/s"] if bench else []) + ["options"]
    body = []
    for r in rows:
        cells = [r["name"], r["family"], _human(r["params"]), _human(r["flops"])]
        if bench:
            cells += [f"{r.get('train_img_per_s', float('nan')):.0f}", f"{r.get('infer_img_per_s', float('nan')):.0f}"]
        cells.append(_options_text(r.get("options", {})))
        body.append(cells)
    numeric = {2, 3, 4, 5} if bench else {2, 3}
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if i in numeric else "---" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(header), line(["-" * w for w in widths])] + [line(c) for c in body]
    return "\n".join(out)
