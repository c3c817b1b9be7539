"""Throughput benchmark behind ``classbench bench``.

Per model and mode (train / infer): images per second (``batch / median step time``
over the timed steps after warm-up), the median step in ms, the achieved GFLOP/s
(forward FLOPs from :func:`~classbench.models.profile.count_flops` x 3 for a
training step, x 1 for inference) and the peak memory of the run (see
:func:`~classbench.train.speed.time_steps` for what is measured on CUDA and CPU).
The step is the trainer's own (:func:`classbench.train.step.train_step`); the process
is set up as the trainer sets it up (:func:`setup_process`: threads, device, allocator).  ``classbench models --bench``
shows the same measurement (:func:`add_speed`).  ``matmul_peak_gflops`` measures the GEMM rate of the
same device in the same process at the precision being benchmarked (bf16/fp16 under that autocast, fp32
-- under the process's TF32 policy on CUDA -- otherwise), the yardstick for "how close to the hardware".
A compiled row whose compilation produced no graph (torch fell back to eager) says ``fallback``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from typing import Any, Sequence

import torch

COLUMNS = ["model", "family", "mode", "batch", "precision", "channels_last", "compile", "img_per_s", "step_ms",
           "gflop_per_img", "gflops", "pct_matmul", "peak_mem_mb", "mem_method", "compile_s", "error"]


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, device: str | torch.device = "cpu",
                       precision: str = "fp32") -> float:
    """Best ``n x n`` GEMM rate (GFLOP/s, 2n^3 FLOPs per product) over ``repeats`` timed products, in the
    dtype that ``precision``'s autocast runs matmuls in (:func:`~classbench.train.precision.matmul_dtype`).
    fp32 on CUDA runs under the process's TF32 policy (:func:`~classbench.train.precision.set_tf32`), as
    the benchmarked models do; nothing here changes it."""
    from ..train.precision import matmul_dtype

    dev = torch.device(device)
    dtype = matmul_dtype(precision)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    c = torch.empty(n, n, device=dev, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def bench_model(
    name: str,
    modes: Sequence[str] = ("train", "infer"),
    *,
    batch_size: int = 128,
    steps: int = 10,
    warmup: int = 3,
    compile: bool = False,
    compile_mode: str = "default",
    channels_last: bool | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    num_classes: int = 10,
    input_size: tuple[int, int, int] = (3, 32, 32),
    peak: float | None = None,
    model_args: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per mode for one registered model, built with ``model_args`` (a config's ``model.args``:
    ``{"stem": "imagenet"}``).  ``channels_last=None`` takes the registry's default."""
    from ..models import create_model, get_entry
    from ..models.profile import count_flops
    from ..models.registry import uses_channels_last
    from ..train.speed import time_steps

    entry = get_entry(name)
    cl = uses_channels_last(name, channels_last)
    model_args = dict(model_args or {})
    with torch.device("meta"):
        flops = count_flops(create_model(name, num_classes=num_classes, **model_args), input_size)
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, **model_args)
    rows = []
    for mode in modes:
        row: dict[str, Any] = {"model": name, "family": entry.family, "mode": mode, "batch": batch_size,
                               "precision": precision, "channels_last": cl, "compile": compile,
                               "gflop_per_img": flops / 1e9}
        try:
            r = time_steps(model, mode, batch_size, steps, cl, warmup, input_size, num_classes, device,
                           precision, compile, compile_mode=compile_mode)
        except (RuntimeError, torch.OutOfMemoryError) as e:  # one model failing should not end the table
            row["error"] = str(e).splitlines()[0][:200]
            rows.append(row)
            continue
        step = statistics.median(r["times"])
        gflops = flops * (3 if mode == "train" else 1) * batch_size / step / 1e9
        row.update({
            "img_per_s": batch_size / step, "step_ms": step * 1e3, "gflops": gflops,
            "pct_matmul": 100 * gflops / peak if peak else None,
            "peak_mem_mb": r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] is not None else None,
            "mem_method": r["mem_method"], "compile_s": r["compile_s"] if compile else None,
        })
        if r["compile_fallback"]:
            row["compile"] = "fallback"  # compiling produced no graph: these figures are eager ones
        rows.append(row)
    del model
    return rows


def setup_process(device: str = "auto", precision: str = "auto", threads: int = 0,
                  tf32: bool = True) -> tuple[torch.device, str, int]:
    """Set this process up as the trainer does (threads, device, TF32 policy, CPU allocator) and resolve
    ``auto``: (device, precision, threads) for :func:`bench_model`."""
    from ..train.precision import keep_freed_memory, resolve_device, resolve_precision, setup_device, setup_threads

    threads = setup_threads(threads)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    setup_device(dev, tf32=tf32)  # set_device, cudnn.benchmark, the TF32 policy
    if dev.type == "cpu":
        keep_freed_memory()
    return dev, prec, threads


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``--model-arg KEY=VALUE`` items into model options, the values typed as config overrides are
    (``stem=imagenet``, ``width=16``, ``dropout=0.1``)."""
    from ..config import parse_override
    from ..errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        if "." in key:
            raise ConfigError(f"--model-arg {item!r}: {key!r} is not a model option name (a model's options "
                              "are not nested: stem=imagenet, width=16).")
        out[key] = value
    return out


def add_speed(rows: list[dict[str, Any]], *, batch_size: int = 128, steps: int = 10, device: str = "auto",
              precision: str = "auto", num_classes: int = 10) -> None:
    """Add ``train_img_per_s`` and ``infer_img_per_s`` to rows of ``classbench models``: the img/s that
    ``classbench bench`` measures for the same model, batch, device and precision (``auto`` as train)."""
    from ..train.precision import resolve_device, resolve_precision

    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    for row in rows:
        for r in bench_model(row["name"], ("train", "infer"), batch_size=batch_size, steps=steps,
                             precision=prec, device=dev, num_classes=num_classes):
            row[f"{r['mode']}_img_per_s"] = r.get("img_per_s", float("nan"))


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if key in ("gflop_per_img",):
            return f"{v:.3f}"
        if key in ("img_per_s", "peak_mem_mb"):
            return f"{v:.1f}" if v < 100 else f"{v:.0f}"
        return f"{v:.1f}"
    return str(v)


def format_bench(rows: list[dict[str, Any]], fmt: str = "table", peak: float | None = None,
                 context: dict[str, Any] | None = None) -> str:
    """``table`` (aligned text, with a header line of context), ``csv`` or ``json``
    (``{"context": ..., "rows": [...]}``)."""
    if fmt == "json":
        return json.dumps({"context": context or {}, "rows": rows}, indent=2)
    cols = [c for c in COLUMNS if c != "pct_matmul" or peak]
    if not any(r.get("error") for r in rows):
        cols.remove("error")
    if not any(r.get("compile") for r in rows):
        cols = [c for c in cols if c not in ("compile", "compile_s")]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"format must be table, csv or json; got {fmt!r}")
    heads = {"img_per_s": "img/s", "step_ms": "step ms", "gflop_per_img": "GFLOP/img", "gflops": "GFLOP/s",
             "pct_matmul": "% matmul", "peak_mem_mb": "peak MiB", "mem_method": "mem", "compile_s": "compile s",
             "channels_last": "ch_last"}
    header = [heads.get(c, c) for c in cols]
    body = [[_cell(c, r.get(c)) for c in cols] for r in rows]
    numeric = {i for i, c in enumerate(cols) if c in ("batch", "img_per_s", "step_ms", "gflop_per_img", "gflops",
                                                      "pct_matmul", "peak_mem_mb", "compile_s")}
    widths = [max(len(x) for x in col) for col in zip(header, *body)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = []
    if context:
        out.append("# " + ", ".join(f"{k}: {v}" for k, v in context.items()))
    out += [line(header), line(["-" * w for w in widths])] + [line(b) for b in body]
    return "\n".join(out)


def environment_line(device: torch.device, threads: int) -> dict[str, Any]:
    """What a reader needs to compare figures: device, threads, torch, load average."""
    import os
    import platform

    from ..host import cpu_model

    ctx: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "threads": threads}
    if device.type == "cuda":
        ctx["gpu"] = torch.cuda.get_device_name(device)
    else:
        ctx["cpu"] = cpu_model() or platform.processor() or "unknown"
    try:
        ctx["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return ctx



