"""`classbench plot`: learning curves and an accuracy-vs-size chart as PNG files."""

from __future__ import annotations

import argparse
import re
import sys

from .summary import add_run_selection, add_score

HELP = "Plot learning curves (loss, top-1, top-5) and accuracy vs. model size for a set of runs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..compare.plots import CURVE_METRICS, X_AXES

    add_run_selection(parser)
    parser.add_argument("--metric", choices=CURVE_METRICS, action="append", help="metric to plot (repeatable; default: loss, top1 and top5)")
    parser.add_argument("--x", choices=X_AXES, default="step", help="x axis (default: step)")
    parser.add_argument("--smooth", type=float, default=0.0, metavar="FLOAT", help="EMA smoothing of the train lines, weight of the past in [0, 1) (default: 0)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: figures/<group>, or figures/all)")
    parser.add_argument("--no-size", action="store_true", help="skip size.png")
    parser.add_argument("--by", choices=("arm", "run"),
                        help="one mean curve per arm (runs that differ only in train.seed) with a band, or one line per "
                             "run (default: arm when any arm has two or more runs)")
    parser.add_argument("--band", choices=("minmax", "ci"), default="minmax",
                        help="--by arm: shade min to max over the seeds (default) or the 95 %% CI of the mean")
    add_score(parser)


def default_out_dir(group: str | None) -> str:
    return f"figures/{re.sub(r'[^A-Za-z0-9._-]+', '_', group)}" if group else "figures/all"


def run(args: argparse.Namespace) -> int:
    from ..compare.comparison import build_comparison
    from ..compare.plots import CURVE_METRICS, ema, make_arm_figures, make_figures, write_figures
    from ..compare.runs import load_runs
    from ..compare.summary import summarize
    from ..errors import ClassbenchError

    ema([], args.smooth)  # validate before loading anything
    if args.score is not None and args.by == "run":
        raise ClassbenchError("--score applies to arms (--by arm): --by run plots each run's best-checkpoint figure.")
    runs = load_runs(args.runs_dir, filter=args.filter, group=args.group, groups_file=args.groups_file)
    metrics = args.metric or list(CURVE_METRICS)
    comp = build_comparison(runs, score=args.score or "best") if args.by != "run" else None
    if comp is not None and (args.by == "arm" or comp.by_arm_default):
        # The arms in the comparison's order (best mean first), so the legend reads like the summary table.
        figs = make_arm_figures(comp.arms, metrics=metrics, x=args.x, smooth=args.smooth, band=args.band,
                                title=args.group, size=not args.no_size)
        what = f"{len(comp.arms)} arms ({sum(a.n for a in comp.arms)} finished runs)"
    else:
        # Legend order = ranking (best first), so the legend reads like the summary table.
        order = {row["path"]: i for i, row in enumerate(summarize(runs))}
        runs.sort(key=lambda r: order.get(str(r.path), 0))
        figs = make_figures(runs, metrics=metrics, x=args.x, smooth=args.smooth, title=args.group, size=not args.no_size)
        what = f"{len(runs)} runs"
    out = args.out or default_out_dir(args.group)
    for p in write_figures(figs, out):
        print(p)
    print(f"{what} plotted", file=sys.stderr)
    return 0
