"""`classbench summary --logged NAME`: the last value of a quantity the train lines log, per run.

The trainer's train lines (metrics.jsonl, ``split: train``) carry more than the loss: the learning rate, the
throughput, auxiliary losses, and whatever a model reports through ``extra_metrics()``, such as a learned
attention temperature per layer (``temperature_l0``, ``temperature_l1``, ...).  Published insights are
often about those (seed 002: "the temperature falls to 0.9 ± 0.04"), so a reader must be able to check them
with the tool, not with a script.

``NAME`` is either one key (``lr``) or the stem of a per-layer family (``temperature`` matches
``temperature_l<i>``).  A family is summarised over its layers as seed 002's ``get_all_taus.py`` does: mean
± sample std, min and max, with the layer count; one key is its value.  The figures come from each run's
last train line that logs ``NAME``, and its step is shown: a run that stopped early is visibly read earlier.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from typing import Any, Iterable

from .. import runfolder
from ..errors import ClassbenchError
from .runs import Run, is_number
from .summary import csv_row, md_escape

COLUMNS = ("run", "step", "layers", "mean", "std", "min", "max")
#: A family member: NAME_l<index> (0-based layer), as models name their per-layer extra metrics.
LAYER = re.compile(r"_l(\d+)$")


def _values(line: dict[str, Any], name: str) -> list[float]:
    """``name`` itself, or every ``name_l<i>`` in layer order; [] when the line logs neither."""
    if is_number(line.get(name)):
        return [float(line[name])]
    layers = []
    for key, value in line.items():
        m = LAYER.search(key)
        if m and key[: m.start()] == name and is_number(value):
            layers.append((int(m.group(1)), float(value)))
    return [v for _, v in sorted(layers)]


def logged_rows(runs: Iterable[Run], name: str) -> list[dict[str, Any]]:
    """One row per run that logs ``name``, in run order; a run that never logs it gets no row."""
    rows = []
    for run in runs:
        for line in reversed(run.records("train")):
            values = _values(line, name)
            if values:
                break
        else:
            continue
        rows.append({"run": run.rel, "name": name, "step": int(line["step"]), "layers": len(values),
                     "mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else None,
                     "min": min(values), "max": max(values), "values": values})
    return rows


def _cell(row: dict[str, Any], key: str) -> str:
    v = row[key]
    if v is None:
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_logged(rows: list[dict[str, Any]], name: str, fmt: str) -> str:
    if not rows:
        raise ClassbenchError(f"no run logs {name!r} (or {name}_l0, {name}_l1, ...) on its train lines: "
                              f"check the name against a run's {runfolder.METRICS}")
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        keys = ["name", *COLUMNS]
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(csv_row(r, keys) for r in rows)
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"unknown format {fmt!r}")
    lines = [f"> `{name}` on each run's last train line that logs it: mean ± sample std, min and max over the "
             f"layers ({name}_l<i>, one per layer), or the value of a single key.", "",
             "| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for r in rows:
        lines.append("| " + " | ".join(md_escape(_cell(r, k)) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
