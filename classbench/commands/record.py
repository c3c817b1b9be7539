"""`classbench record`: copy finished runs, without their weights, to a folder of records (e.g. results/)."""

from __future__ import annotations

import argparse
import functools
import sys

HELP = ("Copy each finished run under the given folders, without checkpoints, to DEST/<dataset>/<name>/<stamp>/ "
        "(atomically; an identical record is kept, a different one is never overwritten; unfinished runs are skipped).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_RUNS_DIR",
                        help="a run folder, or a folder that holds run folders (searched recursively)")
    parser.add_argument("--to", required=True, metavar="DEST", help="the folder of records, e.g. results/seed004")
    parser.add_argument("--filter", metavar="REGEX",
                        help="only the runs whose path matches this regular expression, as in summary: a runs folder "
                             "often holds runs that belong to another record")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _dataset_labels(run_dir):
    """The test labels for the confusion matrix of older prediction files (the dataset's, when it is here)."""
    from ..data import run_test_labels
    from ..errors import ClassbenchError
    from ..runfolder import plain_text

    try:
        return run_test_labels(run_dir)
    except (ClassbenchError, OSError, ValueError) as e:
        print(f"note: {plain_text(run_dir)}: its test predictions are in an older format and the dataset's labels are not here "
              f"({e}), so the record has no per-class counts.", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    from .. import runfolder
    from ..errors import ClassbenchError

    found = sorted({p.resolve(): p for arg in args.runs for p in runfolder.discover(arg, args.filter)}.values())
    if not found:
        matching = f" matching --filter {args.filter!r}" if args.filter else ""
        raise ClassbenchError(f"No run folder{matching} under {' '.join(args.runs)}: nothing to record.")
    recorded, problems = 0, 0
    labels = functools.cache(_dataset_labels)  # asked again when an existing record is compared: one note a run
    for run_dir in found:
        if not runfolder.is_finished(run_dir):
            try:
                status = (runfolder.read_status(run_dir) or {}).get("status", "no status")
            except (OSError, ValueError, AttributeError):
                status = "unreadable status"
            print(f"skipped {runfolder.plain_text(run_dir)}: not finished ({runfolder.plain_text(status)})",
                  file=sys.stderr)
            continue
        try:
            record, what = runfolder.copy_record(run_dir, args.to, labels=labels)
        except ClassbenchError as e:
            print(f"error: {e}", file=sys.stderr)
            problems += 1
            continue
        recorded += 1
        if what == runfolder.RECORD_SAME:
            print(f"already recorded: {record} (identical)")
        else:
            size = sum((record / f).stat().st_size for f in runfolder.record_files(record))
            print(f"recorded {runfolder.plain_text(run_dir)} -> {record} ({_size(size)})")
    if problems:
        return 2
    if not recorded:
        raise ClassbenchError(f"No finished run under {' '.join(args.runs)}: nothing was recorded.")
    return 0
