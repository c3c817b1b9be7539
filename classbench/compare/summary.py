"""The comparison table: one row per run, with both model-selection rules.

Two selections are reported side by side, always labelled:

* ``best_any_step`` -- the best value of the metric over
  *all* evaluated steps of the split.  On the test split this picks the step by
  looking at the test score, so it is optimistic.
* ``test_at_best_val`` -- the honest number: the test score of the checkpoint
  chosen on val (``best.pt``).  From summary.json (``test_top1``/``test_top5``)
  for finished runs; otherwise the test value logged at the step where val
  top-1 was best.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Iterable

from .. import runfolder
from .runs import LOWER_IS_BETTER, Run, is_number

SPLITS = ("val", "test", "train_subset")
METRICS = ("top1", "top5", "loss")
FORMATS = ("markdown", "csv", "json")

METRIC_NAMES = {"top1": "top-1", "top5": "top-5", "loss": "loss"}


def selection_labels(split: str, metric: str) -> dict[str, str]:
    """Human-readable descriptions of the two selections, for every output format."""
    m = METRIC_NAMES.get(metric, metric)
    agg = "lowest" if metric in LOWER_IS_BETTER else "best"
    return {
        "best_any_step": (
            f"{agg} {split} {m} over all evaluated steps"
            + (" (optimistic: the step is chosen by the test score itself)" if split == "test" else "")
        ),
        "test_at_best_val": (
            f"test {m} of the checkpoint chosen on val top-1 ({runfolder.BEST_PT}, saved at the best val step); "
            "'(sel. on test)' marks a run without a val split, whose checkpoint was chosen on test (optimistic)"
        ),
    }


def _test_at_best_val(run: Run, metric: str) -> tuple[float | None, int | None, str | None, str | None]:
    """(value, step, selected_on, source) of the honest selection for ``run``."""
    s = run.summary
    if s is not None and is_number(s.get(f"test_{metric}")):
        sel = s.get("selection_split") or "val"
        step = s.get("best_val_step")
        if not is_number(step):
            step = s.get("best_step")
        return float(s[f"test_{metric}"]), (int(step) if is_number(step) else None), str(sel), runfolder.SUMMARY
    # From metrics.jsonl: the test value at the step where val top-1 was best.
    best_val = run.best("val", "top1")
    if best_val is not None:
        v = run.value_at("test", metric, best_val[1])
        return v, best_val[1], "val", (runfolder.METRICS if v is not None else None)
    if s is not None and is_number(s.get("best_step")):
        step = int(s["best_step"])
        sel = str(s.get("selection_split") or "val")
        v = run.value_at("test", metric, step)
        return v, step, sel, (runfolder.METRICS if v is not None else None)
    return None, None, None, None


def _img_per_s(run: Run) -> float | None:
    if run.summary and is_number(run.summary.get("train_img_per_s")):
        return float(run.summary["train_img_per_s"])
    vals = [float(r["img_per_s"]) for r in run.records("train", "img_per_s")]
    return sum(vals) / len(vals) if vals else None


def _num(d: dict | None, key: str) -> float | None:
    if d and is_number(d.get(key)):
        return d[key]
    return None


def summarize(runs: Iterable[Run], *, split: str = "test", metric: str = "top1", sort: str = "test_at_best_val") -> list[dict[str, Any]]:
    """One dict per run with explicit keys (the JSON output), sorted best first: by default by the honest
    column (test score of the val-chosen checkpoint), then by the other."""
    labels = selection_labels(split, metric)
    rows = []
    for run in runs:
        best = run.best(split, metric)
        honest, honest_step, selected_on, source = _test_at_best_val(run, metric)
        wall = _num(run.summary, "wall_time_s")
        if wall is None:
            wall = run.last_time()
        rows.append(
            {
                "run": run.rel,
                "label": run.label or run.name,
                "path": str(run.path),
                "config": run.name,
                "model": run.model,
                "dataset": run.dataset,
                "status": run.status,
                "split": split,
                "metric": metric,
                "best_any_step": best[0] if best else None,
                "best_any_step_at": best[1] if best else None,
                "test_at_best_val": honest,
                "test_at_best_val_step": honest_step,
                "test_at_best_val_selected_on": selected_on,
                "test_at_best_val_source": source,
                "params": _num(run.summary, "params"),
                "flops": _num(run.summary, "flops"),
                "wall_time_s": wall,
                "train_img_per_s": _img_per_s(run),
                # summary.json's flag (None before it existed or while running): other processes competed
                "train_img_per_s_under_load": (run.summary or {}).get("train_img_per_s_under_load"),
                # how many cores other processes kept busy meanwhile (None before it was measured)
                "others_busy_cores": _num(run.summary, "others_busy_cores"),
                "steps": _num(run.summary, "steps") if run.summary else run.last_step(),
                "selection": dict(labels),
                "warnings": list(run.warnings),
            }
        )
    key = sort if sort in ("best_any_step", "test_at_best_val") else "test_at_best_val"
    other = "test_at_best_val" if key == "best_any_step" else "best_any_step"
    lower = metric in LOWER_IS_BETTER

    def sort_key(row):
        out = []
        for k in (key, other):
            v = row[k]
            out.append((v is None, 0.0 if v is None else (v if lower else -v)))
        return (*out, row["run"])

    rows.sort(key=sort_key)
    return rows


# -- formatting ---------------------------------------------------------------


def fmt_metric(v: float | None, metric: str) -> str:
    if v is None:
        return "–"
    if metric in LOWER_IS_BETTER:
        return f"{v:.4f}"
    return f"{100 * v:.2f}%"


def fmt_count(n: float | None) -> str:
    if n is None:
        return "–"
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def fmt_duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    if s < 10:
        return f"{s:.1f}s"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


def fmt_rate(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def fmt_step(v: int | None) -> str:
    return "–" if v is None else str(int(v))


def table_columns(split: str, metric: str) -> list[tuple[str, str]]:
    """(key, header) of the human-readable table shared by markdown and HTML."""
    m = METRIC_NAMES.get(metric, metric)
    return [
        ("run", "run"),
        ("config", "config"),
        ("model", "model"),
        ("split", "split"),
        ("best_any_step", f"best {split} {m} @ any step"),
        ("best_any_step_at", "at step"),
        ("test_at_best_val", f"test {m} @ {runfolder.BEST_PT}"),
        ("test_at_best_val_step", f"{runfolder.BEST_PT} step"),
        ("params", "params"),
        ("flops", "FLOPs"),
        ("wall_time_s", "wall time"),
        ("train_img_per_s", "img/s"),
        ("status", "status"),
    ]


def format_cell(row: dict, key: str) -> str:
    metric = row["metric"]
    v = row.get(key)
    if key == "best_any_step":
        return fmt_metric(v, metric)
    if key == "test_at_best_val":
        s = fmt_metric(v, metric)
        if v is not None and row.get("test_at_best_val_selected_on") not in (None, "val"):
            s += f" (sel. on {row['test_at_best_val_selected_on']})"
        if v is not None and row.get("test_at_best_val_source") == runfolder.METRICS:
            s += "*"
        return s
    if key in ("best_any_step_at", "test_at_best_val_step"):
        return fmt_step(v)
    if key in ("params", "flops"):
        return fmt_count(v)
    if key == "wall_time_s":
        return fmt_duration(v)
    if key == "train_img_per_s":
        return fmt_rate(v) + (" (under load)" if v is not None and row.get("train_img_per_s_under_load") else "")
    return "–" if v is None else str(v)


def explanation(split: str, metric: str) -> list[str]:
    """One sentence per selection column, naming the column as the tables do."""
    m = METRIC_NAMES.get(metric, metric)
    labels = selection_labels(split, metric)
    return [
        f"'best {split} {m} @ any step' = {labels['best_any_step']}.",
        f"'test {m} @ {runfolder.BEST_PT}' = {labels['test_at_best_val']}; "
        f"* marks an unfinished run, read from {runfolder.METRICS} at the step where val top-1 was best.",
    ]


def md_escape(s: str) -> str:
    return runfolder.plain_text(s).replace("|", "\\|")  # names come from run folders: no terminal escapes


def to_markdown(rows: list[dict], split: str, metric: str) -> str:
    cols = table_columns(split, metric)
    lines = ["> Selections:", *(f"> - {e}" for e in explanation(split, metric)), ""]
    lines.append("| " + " | ".join(h for _, h in cols) + " |")
    right = {"best_any_step", "best_any_step_at", "test_at_best_val", "test_at_best_val_step", "params", "flops", "wall_time_s", "train_img_per_s"}
    lines.append("|" + "|".join("---:" if k in right else "---" for k, _ in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(md_escape(format_cell(row, k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


CSV_KEYS = [
    "run", "config", "model", "dataset", "status", "split", "metric",
    "best_any_step", "best_any_step_at", "best_any_step_selection",
    "test_at_best_val", "test_at_best_val_step", "test_at_best_val_selected_on", "test_at_best_val_source",
    "test_at_best_val_selection",
    "params", "flops", "wall_time_s", "train_img_per_s", "train_img_per_s_under_load", "others_busy_cores",
    "steps",
]


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_KEYS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        flat = dict(row)
        flat["best_any_step_selection"] = row["selection"]["best_any_step"]
        flat["test_at_best_val_selection"] = row["selection"]["test_at_best_val"]
        w.writerow(csv_row(flat, CSV_KEYS))
    return buf.getvalue()


def csv_row(row: dict, keys: list[str]) -> dict:
    """Names come from run folders: a cell starting with = + - @ must not become a spreadsheet formula."""
    return {k: ("" if row.get(k) is None else runfolder.csv_cell(row.get(k))) for k in keys}


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2, default=str) + "\n"


def render(rows: list[dict], fmt: str, split: str, metric: str) -> str:
    if fmt == "markdown":
        return to_markdown(rows, split, metric)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json(rows)
    raise ValueError(f"unknown format {fmt!r}")


# -- arms (runs that differ only in their seed): the comparison object's table ---------------------


ARM_CSV_KEYS = ["arm", "config", "n", "mean", "std", "ci95_low", "ci95_high", "min", "max",
                "best_val_top1_mean", "params", "flops", "train_img_per_s", "wall_time_s", "runs"]


def arms_note(comp) -> str:
    scored = (f"test top-1 of the checkpoint chosen on val ({runfolder.checkpoint_rel('best')}, the honest selection)"
              if comp.selections <= {"val"} and comp.score == "best" else comp.scored_as)
    return (f"> Per arm (runs whose configs differ only in train.seed): {scored}, mean ± std over seeds, the "
            "Student-t 95 % CI of the mean, and the range; best first.")


def summary_text(runs: list[Run], *, by: str | None = None, fmt: str = "markdown", split: str = "test",
                 metric: str = "top1", sort: str = "test_at_best_val", target: float | None = None,
                 score: str = "best") -> tuple[str, str]:
    """The summary as ``classbench summary`` prints it, and what it counts ("2 arms", "6 runs").

    ``by=None`` groups by arm when any arm has two or more seeds (one comparison object, as ``compare``
    builds it), else lists runs; ``classbench sweep`` prints the same at its end.  ``score`` (see
    comparison.SCORES) is what an arm's test figure is; ``last`` always groups by arm."""
    if by != "run":
        from .comparison import build_comparison

        comp = build_comparison(runs, target=target, score=score)
        if by == "arm" or comp.by_arm_default:
            return render_arms(comp, fmt), f"{len(comp.arms)} arms"
    rows = summarize(runs, split=split, metric=metric, sort=sort)
    return render(rows, fmt, split, metric), f"{len(rows)} runs"


def render_arms(comp, fmt: str) -> str:
    """``summary --by arm``: the verdict, then one row per arm (the JSON is the list of arms)."""
    from .comparison import arms_markdown, excluded_lines, verdict_markdown

    if fmt == "json":
        return json.dumps(comp.arms_json(), indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=ARM_CSV_KEYS, lineterminator="\n")
        w.writeheader()
        for a in comp.arms_json():
            ci = a["ci95"] or [None, None]
            row = {**a, "ci95_low": ci[0], "ci95_high": ci[1], "runs": " ".join(a["runs"]),
                   "best_val_top1_mean": (a["best_val_top1"] or {}).get("mean")}
            w.writerow(csv_row(row, ARM_CSV_KEYS))
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"unknown format {fmt!r}")
    parts = [verdict_markdown(comp), arms_note(comp) + "\n", arms_markdown(comp)]
    tail = [*excluded_lines(comp), *comp.notes]
    if tail:
        parts.append("\n".join(f"> {t}" for t in tail) + "\n")
    return "\n".join(p for p in parts if p)
