"""Model profiling: parameters, forward FLOPs and the model table.

* ``count_params(model)``: trainable and frozen parameters (buffers excluded).
* ``count_flops(model, (3, 32, 32))``: forward FLOPs for one image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convs, a multiply-add
  counts as 2 FLOPs), with the model in eval mode, batch 1, no grad. Works on a
  model on the ``meta`` device too (no compute at all), which the model table uses.
* Speed is measured with the trainer's own step: :mod:`classbench.train.speed`.
* ``model_rows(...)`` / ``format_rows(...)``: the table of ``classbench models``.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn as nn

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


def model_rows(num_classes: int = 10, pattern: str | None = None) -> list[dict[str, Any]]:
    """One row per registered model (matching ``pattern``, a regex searched in the name).

    ``classbench models --bench`` adds the speed columns with :func:`classbench.drivers.bench.add_speed`,
    the measurement of ``classbench bench``."""
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
