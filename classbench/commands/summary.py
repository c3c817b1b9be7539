"""`classbench summary`: one row per run, best first, with both selections labelled."""

from __future__ import annotations

import argparse

HELP = ("Compare runs: one row per arm (a recipe over seeds: mean, std, confidence interval, verdict) or per run "
        "(the best score over all steps, and of the val-chosen checkpoint).")


def add_run_selection(parser: argparse.ArgumentParser) -> None:
    """RUNS_DIR plus --filter/--group, shared by summary, plot and report."""
    parser.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR", help="folder that holds run folders (default: runs)")
    sel = parser.add_mutually_exclusive_group()
    sel.add_argument("--filter", metavar="REGEX", help="only runs whose path matches this regular expression")
    sel.add_argument("--group", metavar="NAME", help="only runs of the configs listed under NAME in configs/groups.yaml")
    parser.add_argument("--groups-file", metavar="FILE", help="groups file (default: configs/groups.yaml)")


def add_score(parser: argparse.ArgumentParser) -> None:
    """--score, shared by summary, compare, plot and report: which weights each run's test figure comes from."""
    parser.add_argument("--score", choices=("best", "last"),
                        help="each run's test figure: best = of its best checkpoint, chosen on val (on test for a "
                             "recipe without a val split); last = of the final weights, the test evaluation at the last "
                             "step, as sources that report the end of training publish (default: best)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..compare.summary import FORMATS, METRICS, SPLITS

    add_run_selection(parser)
    # --split, --metric and --sort default to None here (summary_text holds the defaults) so that --published
    # and --logged can tell a flag the user gave from one they did not, and refuse it
    parser.add_argument("--split", choices=SPLITS, help="split of the 'best over all evaluated steps' column (default: test)")
    parser.add_argument("--metric", choices=METRICS, help="metric to rank by (default: top1; loss ranks lowest first)")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default: markdown)")
    parser.add_argument(
        "--sort",
        choices=("best_any_step", "test_at_best_val"),
        help="--by run: column to sort by (default: test_at_best_val, the honest selection)",
    )
    parser.add_argument("--by", choices=("arm", "run"),
                        help="one row per arm (runs that differ only in train.seed) or per run "
                             "(default: arm when any arm has two or more runs)")
    parser.add_argument("--target", type=float, metavar="TOP1",
                        help="--by arm: also the time to reach this val top-1 (a fraction, e.g. 0.9)")
    add_score(parser)
    instead = parser.add_mutually_exclusive_group()  # two other tables: one at a time
    instead.add_argument("--published", metavar="FILE",
                         help="instead: each published figure in FILE (e.g. configs/published.yaml) beside the arms "
                              "that ran its config (mean, CI, seeds, budget); markdown or json")
    instead.add_argument("--logged", metavar="NAME",
                         help="instead: NAME's value on each run's last train line that logs it, such as a model's "
                              "learned attention temperature; a per-layer family (NAME_l0, NAME_l1, ...) as mean ± "
                              "std, min and max over the layers")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")


def run(args: argparse.Namespace) -> int:
    from ..compare.runs import load_runs
    from ..compare.summary import summary_text
    from ..errors import ClassbenchError
    from ..io import write_output

    if args.score is not None and (args.by == "run" or args.published or args.logged):
        raise ClassbenchError("--score applies to arms (--by arm); --by run shows each run's best-checkpoint and "
                              "best-step figures side by side, --published scores each source's arms as its file says "
                              "(score:), and --logged reads train lines, not test scores.")
    instead = "--published" if args.published else "--logged" if args.logged else None
    ignored = [f"--{k}" for k in ("by", "split", "metric", "sort", "target") if getattr(args, k) is not None]
    if instead and ignored:
        many = len(ignored) > 1
        raise ClassbenchError(f"{', '.join(ignored)} {'shape' if many else 'shapes'} the runs table; {instead} prints "
                              f"a table of its own, which {'they do' if many else 'it does'} not change: drop "
                              f"{'them' if many else 'it'}.")

    if args.published:
        from ..compare.published import check_format, load_published, published_rows, render_published

        check_format(args.format)  # a bad format or file fails before the runs are read
        figures = load_published(args.published)
    runs = load_runs(args.runs_dir, filter=args.filter, group=args.group, groups_file=args.groups_file)
    if args.logged:
        from ..compare.logged import logged_rows, render_logged

        rows = logged_rows(runs, args.logged)
        write_output(args.output, render_logged(rows, args.logged, args.format), f"{len(rows)} runs")
        return 0
    if args.published:
        from ..compare.comparison import build_arms

        arms = {score: build_arms(runs, score=score)[0] for score in {f.score for f in figures}}
        rows = published_rows(figures, arms)
        write_output(args.output, render_published(rows, args.format), f"{len(rows)} published figure rows")
        return 0
    given = {k: getattr(args, k) for k in ("split", "metric", "sort") if getattr(args, k) is not None}
    text, what = summary_text(runs, by=args.by, fmt=args.format, target=args.target, score=args.score or "best", **given)
    write_output(args.output, text, what)
    return 0
