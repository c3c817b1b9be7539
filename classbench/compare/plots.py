"""Figures comparing runs: learning curves and accuracy against model size.

Everything here uses matplotlib's object API on an Agg canvas (no pyplot, no
global state, no display needed) and returns PNG bytes; :func:`write_figures`
writes them atomically.

* ``loss.png``, ``top1.png``, ``top5.png``: one line per run and split; the
  colour is the run (the same in every figure), the line style is the split
  (train solid, val dashed, test dash-dot, train_subset dotted).
* ``size.png``: best accuracy against parameter count (log x), marker area
  proportional to FLOPs, every run labelled.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import ClassbenchError
from ..io import atomic_write_bytes
from ..runfolder import SUMMARY
from .runs import EVAL_SPLITS, LOWER_IS_BETTER, Run, is_number

if TYPE_CHECKING:
    from .comparison import Arm

#: Every figure is FIGSIZE inches at DPI dots per inch: FIG_PX pixels (width, height).
FIGSIZE = (11.0, 6.0)
DPI = 100
FIG_PX = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))

CURVE_METRICS = ("loss", "top1", "top5")
X_AXES = ("step", "epoch", "time")

SPLIT_STYLES = {"train": "-", "val": "--", "test": "-.", "train_subset": ":"}
SPLIT_ORDER = ("train", *EVAL_SPLITS)

METRIC_TITLES = {"loss": "Loss", "top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}

# Okabe-Ito (colour-blind safe) first, then the darker half of tab20, then its lighter half.
_PALETTE = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]
# Yellow on white is hard to read as a thin line: use it last.
_PALETTE = [c for c in _PALETTE if c != "#F0E442"] + ["#F0E442"]


def run_colors(runs: Sequence[Run]) -> dict[str, str]:
    """A stable colour per run label (by position in ``runs``), shared by every figure."""
    return {r.label or r.name: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(runs)}


def ema(values: Sequence[float], alpha: float) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard-style smoothing).

    ``alpha`` in [0, 1) is the weight of the past; 0 returns the values unchanged.
    """
    if not 0.0 <= alpha < 1.0:
        raise ClassbenchError(f"--smooth must be in [0, 1) (the weight of the past); got {alpha}.")
    if alpha == 0.0:
        return [float(v) for v in values]
    out, s, w = [], 0.0, 0.0
    for v in values:
        s = alpha * s + (1 - alpha) * float(v)
        w = alpha * w + (1 - alpha)
        out.append(s / w)
    return out


def _new_figure(figsize=FIGSIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    import matplotlib
    from matplotlib.text import Text

    # Run names and class names come from shared run folders: "$" must not start mathtext (a bad formula
    # raises and took down plot/report).  Texts made so far are switched off; those made while drawing
    # (tick labels) read the rc value.
    for text in fig.findobj(Text):
        text.set_parse_math(False)
    buf = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}):
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _style_axes(ax) -> None:
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _shorten(label: str, n: int = 42) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _x_values(recs: list[dict], x: str) -> tuple[list[float], str]:
    if x == "epoch":
        return [float(r.get("epoch", math.nan)) if is_number(r.get("epoch")) else math.nan for r in recs], "epoch"
    if x == "time":
        return [float(r["time"]) if is_number(r.get("time")) else math.nan for r in recs], "time"
    return [float(r["step"]) for r in recs], "step"


def _curve_axes(x: str):
    """(figure, axes) for curves against ``x``, which is checked here: the --x of every curve figure."""
    if x not in X_AXES:
        raise ClassbenchError(f"--x must be one of {', '.join(X_AXES)}; got {x!r}.")
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    return fig, ax


def _x_axis(x: str, max_x: float | None) -> tuple[float, str]:
    """(divisor, label) of the x axis; wall time is shown in s, min or h by its largest value ``max_x``."""
    if x != "time":
        return 1.0, {"step": "optimizer step", "epoch": "epoch"}[x]
    if max_x is not None and max_x >= 3 * 3600:
        return 3600.0, "wall time (h)"
    if max_x is not None and max_x >= 180:
        return 60.0, "wall time (min)"
    return 1.0, "wall time (s)"


def _label_curve_axes(ax, metric: str, title: str, xlabel: str) -> None:
    """Title, axis labels and (accuracies) a percent y axis."""
    from matplotlib.ticker import PercentFormatter

    ax.set_title(title, fontsize=13, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(METRIC_TITLES.get(metric, metric) + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
    if metric in ("top1", "top5"):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def _split_legend(fig, used_splits: list[str]) -> None:
    """The line style of each split shown (the colours are the runs or arms)."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="#444444", linestyle=SPLIT_STYLES.get(s, "-"), linewidth=1.8, label=s)
        for s in SPLIT_ORDER if s in used_splits
    ] + [Line2D([], [], color="#444444", linestyle="-", label=s) for s in used_splits if s not in SPLIT_ORDER]
    fig.legend(handles=handles, loc="outside right lower", title="split", fontsize=8, title_fontsize=9, frameon=False)


def curve_figure(
    runs: Sequence[Run],
    metric: str,
    *,
    x: str = "step",
    smooth: float = 0.0,
    title: str | None = None,
    colors: dict[str, str] | None = None,
) -> bytes:
    """One metric against step/epoch/time for every run and split; PNG bytes.

    ``smooth`` (EMA weight of the past) applies to the train lines only: eval
    lines have few points and smoothing would move their peaks.
    """
    from matplotlib.lines import Line2D

    fig, ax = _curve_axes(x)
    colors = colors or run_colors(runs)

    series = []  # (run, split, xs, ys)
    for run in runs:
        for split in run.splits():
            recs = run.records(split, metric)
            if not recs:
                continue
            xs, _ = _x_values(recs, x)
            ys = [float(r[metric]) for r in recs]
            pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(a)]
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if split == "train" and smooth:
                ys = ema(ys, smooth)
            series.append((run, split, xs, ys))

    scale, xlabel = _x_axis(x, max(max(s[2]) for s in series) if series else None)

    used_splits: list[str] = []
    plotted_runs: list[Run] = []
    for run, split, xs, ys in series:
        label = run.label or run.name
        eval_split = split != "train"
        ax.plot(
            [v / scale for v in xs],
            ys,
            linestyle=SPLIT_STYLES.get(split, "-"),
            color=colors.get(label, "#333333"),
            linewidth=1.8 if eval_split else 1.3,
            alpha=1.0 if eval_split else 0.8,
            marker="o" if eval_split and len(xs) <= 3 else None,
            markersize=4,
        )
        if split not in used_splits:
            used_splits.append(split)
        if run not in plotted_runs:
            plotted_runs.append(run)

    _label_curve_axes(ax, metric, METRIC_TITLES.get(metric, metric) + (f" — {title}" if title else ""), xlabel)
    if metric == "loss" and series:
        vals = np.array([v for s in series for v in s[3]], dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size and vals.max() > 3 * max(np.median(vals), 1e-12):
            # A huge first loss would squash everything else: clip the view, not the data.
            ax.set_ylim(min(0.0, vals.min()), float(np.quantile(vals, 0.98)) * 1.1)

    if not series:
        ax.text(0.5, 0.5, f"no {metric} values logged by these runs", ha="center", va="center", transform=ax.transAxes, color="#666666")
    else:
        run_handles = [
            Line2D([], [], color=colors.get(r.label or r.name, "#333333"), linewidth=2.5, label=_shorten(r.label or r.name))
            for r in plotted_runs
        ]
        ncols = 1 if len(run_handles) <= 24 else 2
        fig.legend(handles=run_handles, loc="outside right upper", title="run", fontsize=8, title_fontsize=9, ncols=ncols, frameon=False)
        _split_legend(fig, used_splits)
    return _png_bytes(fig)


def size_metric(run: Run) -> tuple[float | None, str]:
    """The accuracy shown on the size chart and where it comes from."""
    from .summary import _test_at_best_val  # noqa: PLC0415 - avoid a cycle at import time

    v, _, sel, _ = _test_at_best_val(run, "top1")
    if v is not None:
        return v, "test top-1 of best-val checkpoint" if sel == "val" else f"test top-1 (selected on {sel})"
    best = run.best("test", "top1")
    if best is not None:
        return best[0], "best test top-1 at any step"
    best = run.best("val", "top1")
    if best is not None:
        return best[0], "best val top-1"
    return None, ""


def size_figure(runs: Sequence[Run], *, title: str | None = None, colors: dict[str, str] | None = None) -> bytes:
    """Best accuracy against params (log x); marker area proportional to FLOPs; PNG bytes."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter

    from matplotlib.ticker import FuncFormatter

    colors = colors or run_colors(runs)
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)

    pts = []
    missing = []
    sources = set()
    for run in runs:
        acc, source = size_metric(run)
        params = (run.summary or {}).get("params")
        flops = (run.summary or {}).get("flops")
        if acc is None or not is_number(params) or params <= 0:
            missing.append(run.label or run.name)
            continue
        sources.add(source)
        pts.append((run, float(params), float(flops) if is_number(flops) and flops > 0 else None, acc))

    fmax = max((p[2] for p in pts if p[2] is not None), default=None)

    def area(f):
        if f is None or not fmax:
            return 60.0
        return 40.0 + 900.0 * math.sqrt(f / fmax)

    for run, params, flops, acc in pts:
        label = run.label or run.name
        ax.scatter(
            [params], [acc], s=area(flops), color=colors.get(label, "#333333"), alpha=0.75,
            edgecolors="white", linewidths=1.0, zorder=3,
        )
        ax.annotate(
            _shorten(label, 32), (params, acc), xytext=(7, 5), textcoords="offset points", fontsize=8,
            color="#222222", zorder=4,
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _fmt_tick(v)))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("parameters (log scale)")
    ylabel = sources.pop() if len(sources) == 1 else "top-1 accuracy (see report for selection)"
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy vs. size" + (f" — {title}" if title else "") + "  (marker area ∝ FLOPs)", fontsize=13, loc="left")
    if pts:
        xs = [p[1] for p in pts]
        lo, hi = min(xs), max(xs)
        if lo == hi:
            lo, hi = lo / 2, hi * 2
        ax.set_xlim(lo / 1.6, hi * 2.5)  # room for the labels on the right
        ys = [p[3] for p in pts]
        pad = max(0.02, (max(ys) - min(ys)) * 0.12)
        ax.set_ylim(max(0.0, min(ys) - pad), min(1.0, max(ys) + pad))
        if fmax:
            refs = [fmax, fmax / 10, fmax / 100]
            handles = [
                Line2D([], [], linestyle="", marker="o", markersize=math.sqrt(area(f)), color="#999999", alpha=0.6,
                       label=f"{_fmt_flops(f)} FLOPs")
                for f in refs
            ]
            fig.legend(handles=handles, loc="outside right upper", title="forward FLOPs / image", fontsize=8,
                       title_fontsize=9, frameon=False, labelspacing=2.0, borderpad=1.2, handletextpad=1.8)
    else:
        ax.text(0.5, 0.5, "no run has both an accuracy and a parameter count yet\n(params come from " + SUMMARY + " of finished runs)",
                ha="center", va="center", transform=ax.transAxes, color="#666666")
    if missing:
        more = f" (+{len(missing) - 6} more)" if len(missing) > 6 else ""
        fig.text(0.01, 0.005, "not shown (unfinished, no params or no accuracy): " + ", ".join(missing[:6]) + more,
                 fontsize=7, color="#666666", ha="left", va="bottom")
    return _png_bytes(fig)


def _fmt_tick(v: float) -> str:
    """10000 -> 10k, 2500000 -> 2.5M."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _fmt_flops(f: float) -> str:
    from .summary import fmt_count

    return fmt_count(f)


def make_figures(
    runs: Sequence[Run],
    *,
    metrics: Iterable[str] = CURVE_METRICS,
    x: str = "step",
    smooth: float = 0.0,
    title: str | None = None,
    size: bool = True,
) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for the curves of ``metrics`` and, with ``size``, size.png."""
    colors = run_colors(runs)
    figs = {f"{m}.png": curve_figure(runs, m, x=x, smooth=smooth, title=title, colors=colors) for m in metrics}
    if size:
        figs["size.png"] = size_figure(runs, title=title, colors=colors)
    return figs


def write_figures(figs: dict[str, bytes], out_dir: str | os.PathLike) -> list[Path]:
    """Write PNGs atomically (temp file + rename) into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClassbenchError(f"Cannot create output folder {out}: {e.strerror}.") from e
    paths = []
    for name, data in figs.items():
        atomic_write_bytes(out / name, data)
        paths.append(out / name)
    return paths


# ---------------------------------------------------------------- arms: mean curves with a band
#: ``plot --by arm --band``: min to max over the arm's seeds, or the Student-t 95 % CI of the mean.
BANDS = ("minmax", "ci")


def arm_colors(arms: Sequence[Arm]) -> dict[str, str]:
    """A stable colour per arm label (by rank), shared by every figure and the report's tables."""
    return {a.label: _PALETTE[i % len(_PALETTE)] for i, a in enumerate(arms)}


def arm_curve(arm: Arm, split: str, metric: str, *, x: str = "step", smooth: float = 0.0,
              band: str = "minmax") -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    """(x, mean, band low, band high) of one arm's ``metric`` on ``split``; None when no run logged it.

    The seeds are aligned by optimizer step (the steps every run of the arm logged); the x of a step is
    the mean over the seeds of its step, epoch or time.  Train lines are smoothed per run before the
    mean, like the run plot.  One run: no band.
    """
    from .stats import describe

    per_run = [{int(r["step"]): r for r in run.records(split, metric)} for run in arm.runs]
    steps = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not steps:
        return None
    ys = np.array([[float(d[s][metric]) for s in steps] for d in per_run])
    if split == "train" and smooth:
        ys = np.array([ema(row, smooth) for row in ys])
    xs = np.array([[_x_values([d[s]], x)[0][0] for s in steps] for d in per_run]).mean(axis=0)
    mean = ys.mean(axis=0)
    if len(arm.runs) < 2:
        return xs, mean, None, None
    if band == "ci":
        cis = [describe(col).ci95 for col in ys.T]
        return xs, mean, np.array([c[0] for c in cis]), np.array([c[1] for c in cis])
    return xs, mean, ys.min(axis=0), ys.max(axis=0)


def arm_curve_figure(arms: Sequence[Arm], metric: str, *, x: str = "step", smooth: float = 0.0, band: str = "minmax",
                     title: str | None = None, colors: dict[str, str] | None = None) -> bytes:
    """Each arm's mean curve per split, with a shaded band (min-max or 95 % CI over its seeds); PNG bytes."""
    from matplotlib.patches import Patch

    if band not in BANDS:
        raise ClassbenchError(f"--band must be one of {', '.join(BANDS)}; got {band!r}.")
    fig, ax = _curve_axes(x)
    colors = colors or arm_colors(arms)
    series = []
    for arm in arms:
        splits = [s for s in SPLIT_ORDER if any(s in r.splits() for r in arm.runs)]
        for split in splits:
            c = arm_curve(arm, split, metric, x=x, smooth=smooth, band=band)
            if c is not None and np.isfinite(c[0]).any():
                series.append((arm, split, *c))
    scale, xlabel = _x_axis(x, max(float(np.nanmax(s[2])) for s in series) if series else None)
    used_splits: list[str] = []
    for arm, split, xs, mean, lo, hi in series:
        color = colors.get(arm.label, "#333333")
        eval_split = split != "train"
        if lo is not None:
            ax.fill_between(xs / scale, lo, hi, color=color, alpha=0.18 if eval_split else 0.10, linewidth=0)
        ax.plot(xs / scale, mean, linestyle=SPLIT_STYLES.get(split, "-"), color=color,
                linewidth=1.9 if eval_split else 1.3, marker="o" if eval_split and len(xs) <= 3 else None, markersize=4)
        if split not in used_splits:
            used_splits.append(split)
    what = "min–max over seeds" if band == "minmax" else "95 % CI of the mean over seeds"
    _label_curve_axes(ax, metric, f"{METRIC_TITLES.get(metric, metric)}: mean of each arm, band = {what}"
                      + (f" — {title}" if title else ""), xlabel)
    if not series:
        ax.text(0.5, 0.5, f"no {metric} values logged by these runs", ha="center", va="center", transform=ax.transAxes, color="#666666")
    else:
        handles = [Patch(facecolor=colors.get(a.label, "#333333"), label=_shorten(f"{a.label} (n={a.n})")) for a in arms]
        fig.legend(handles=handles, loc="outside right upper", title="arm", fontsize=8, title_fontsize=9, frameon=False)
        _split_legend(fig, used_splits)
    return _png_bytes(fig)


def arm_size_figure(arms: Sequence[Arm], *, band: str = "minmax", title: str | None = None,
                    colors: dict[str, str] | None = None) -> bytes:
    """Mean test top-1 of each arm against its params (log x), with the band as an error bar; PNG bytes."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    colors = colors or arm_colors(arms)
    fig = _new_figure()
    ax = fig.add_subplot()
    _style_axes(ax)
    pts = [a for a in arms if a.params]
    for a in pts:
        t = a.test
        lo, hi = (t.min, t.max) if band == "minmax" else (t.ci95 or (t.mean, t.mean))
        ax.errorbar([a.params], [t.mean], yerr=[[t.mean - lo], [hi - t.mean]], fmt="o", color=colors.get(a.label, "#333333"),
                    markersize=8, capsize=5, elinewidth=1.6)
        ax.annotate(_shorten(f"{a.label} (n={a.n})", 36), (a.params, t.mean), xytext=(8, 5), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _fmt_tick(v)))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("parameters (log scale)")
    final = any(a.score == "last" for a in arms)
    ax.set_ylabel(f"test top-1 of {'the final weights' if final else 'best-val checkpoint'}, mean over seeds")
    what = "min–max" if band == "minmax" else "95 % CI"
    ax.set_title(f"Accuracy vs. size, bars = {what}" + (f" — {title}" if title else ""), fontsize=13, loc="left")
    if pts:
        xs = [a.params for a in pts]
        lo, hi = min(xs), max(xs)
        if lo == hi:
            lo, hi = lo / 2, hi * 2
        ax.set_xlim(lo / 1.6, hi * 2.5)
    else:
        ax.text(0.5, 0.5, "no arm has a parameter count", ha="center", va="center", transform=ax.transAxes, color="#666666")
    return _png_bytes(fig)


def make_arm_figures(arms: Sequence[Arm], *, metrics: Iterable[str] = CURVE_METRICS, x: str = "step", smooth: float = 0.0,
                     band: str = "minmax", title: str | None = None, size: bool = True) -> dict[str, bytes]:
    """``plot --by arm``: ``{file name: PNG bytes}``, the same names as :func:`make_figures`."""
    colors = arm_colors(arms)
    figs = {f"{m}.png": arm_curve_figure(arms, m, x=x, smooth=smooth, band=band, title=title, colors=colors) for m in metrics}
    if size:
        figs["size.png"] = arm_size_figure(arms, band=band, title=title, colors=colors)
    return figs


def reliability_figure(cal, *, title: str | None = None) -> bytes:
    """A reliability diagram: accuracy against mean confidence per bin, the diagonal of perfect calibration,
    and the images per bin underneath; PNG bytes.  ``cal`` is a :class:`classbench.compare.stats.Calibration`."""
    fig = _new_figure(figsize=(6.0, 5.6))
    ax, ax_n = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    for a in (ax, ax_n):
        _style_axes(a)
    width = np.diff(cal.edges)
    left = cal.edges[:-1]
    has = cal.count > 0
    ax.bar(left[has], cal.accuracy[has], width=width[has], align="edge", color="#0072B2", alpha=0.85,
           edgecolor="white", label="accuracy")
    ax.bar(left[has], (cal.confidence - cal.accuracy)[has], bottom=cal.accuracy[has], width=width[has], align="edge",
           color="#D55E00", alpha=0.35, edgecolor="none", label="gap to confidence")
    ax.plot([0, 1], [0, 1], color="#444444", linestyle="--", linewidth=1.2, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in bin")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(f"Reliability (ECE {100 * cal.ece:.2f} %, {len(cal.count)} bins)" + (f" — {title}" if title else ""),
                 fontsize=11, loc="left")
    ax_n.bar(left, cal.count, width=width, align="edge", color="#999999", edgecolor="white")
    ax_n.set_xlabel("confidence (probability of the predicted class)")
    ax_n.set_ylabel("images")
    return _png_bytes(fig)
