"""`classbench report`: one self-contained HTML file comparing runs."""

from __future__ import annotations

import argparse
import sys

from .summary import add_run_selection, add_score

HELP = ("Write one self-contained HTML report: the verdict, the arm table with CIs, curves, size chart, each arm's "
        "per-class accuracy, confusion matrix and calibration, config diffs.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_selection(parser)
    parser.add_argument("-o", "--output", default="report.html", metavar="FILE", help="HTML file to write (default: report.html)")
    parser.add_argument("--title", help="report title")
    parser.add_argument("--x", choices=("step", "epoch", "time"), default="step", help="x axis of the curves (default: step)")
    parser.add_argument("--smooth", type=float, default=0.0, metavar="FLOAT", help="EMA smoothing of the train curves in [0, 1)")
    parser.add_argument("--no-per-class", action="store_true", help="skip evaluating each arm's val-chosen checkpoint on the test split")
    parser.add_argument("--eval-limit", type=int, metavar="N", help="evaluate each arm's val-chosen checkpoint on the first N test images only")
    parser.add_argument("--baseline", metavar="ARM", help="compare every arm with this one (default: with the best arm)")
    parser.add_argument("--band", choices=("minmax", "ci"), default="minmax",
                        help="band around each arm's mean curve: min to max over the seeds (default) or the 95 %% CI")
    add_score(parser)
    parser.add_argument("--device", default="auto", help="device for the arms' evaluation: auto (cuda if available), cpu, cuda[:N]")


def run(args: argparse.Namespace) -> int:
    from ..compare.plots import ema
    from ..compare.report import build_report, write_report
    from ..compare.runs import load_runs

    ema([], args.smooth)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = load_runs(args.runs_dir, filter=args.filter, group=args.group, groups_file=args.groups_file)
    text = build_report(
        runs, title=args.title, runs_dir=args.runs_dir, group=args.group, filter=args.filter,
        per_class=not args.no_per_class, device=device, eval_limit=args.eval_limit, smooth=args.smooth, x=args.x,
        baseline=args.baseline, band=args.band, score=args.score or "best",
    )
    path = write_report(args.output, text)
    print(f"wrote {path} ({len(runs)} runs, {len(text) / 1e6:.1f} MB)", file=sys.stderr)
    return 0
