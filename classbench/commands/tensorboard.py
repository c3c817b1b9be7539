"""`classbench tensorboard`: TensorBoard event files from run folders' metrics.jsonl, after the fact.

Runs trained without ``log.tensorboard=true`` get the same scalars
(``<split>/<key>`` at each record's step) and, when finished, the same
hyperparameters and final metrics as a run that logged live.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Write TensorBoard event files from existing run folders (their metrics records), "
        "for runs trained without log.tensorboard=true; then `tensorboard --logdir RUNS`.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["runs"], metavar="RUNS_OR_RUN_DIR",
                   help="run folders, or folders searched for them (default: runs)")
    p.add_argument("--out", metavar="DIR",
                   help="write the events under DIR/<run path> instead of into each run folder's tensorboard/")
    p.add_argument("--force", action="store_true",
                   help="convert runs that already hold event files too (into a fresh file beside them)")


def convert(run_dir: Path, log_dir: Path) -> int:
    """Write one run's metrics.jsonl (and, if finished, its hparams + final metrics) as events; returns the count."""
    from .. import runfolder
    from ..config import load_run_config
    from ..train.recorder import tensorboard_final_metrics, tensorboard_hparams
    from ..train.tensorboard import TensorBoardLogger

    has_config = runfolder.RunFolder(run_dir).config_yaml.exists()
    hparams = tensorboard_hparams(load_run_config(run_dir, check=False)) if has_config else None
    records = runfolder.read_metrics(run_dir)
    summary = runfolder.read_summary(run_dir)
    # Writing into the run folder itself makes this a writer: one at a time (a live run would clash).
    inside = Path(log_dir).resolve().is_relative_to(Path(run_dir).resolve())
    lock = runfolder.lock_writer(run_dir) if inside else None
    tb = TensorBoardLogger(log_dir, hparams, subdir=".")
    try:
        for rec in records:
            tb.log(rec)
    finally:
        tb.close(tensorboard_final_metrics(summary) if summary else None)
        if lock is not None:
            lock.release()
    return len(records)


def _has_events(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())


def run(args) -> int:
    from .. import runfolder
    from ..errors import ClassbenchError

    targets: list[tuple[Path, Path]] = []  # (run folder, the root its relative path is taken from)
    for given in map(Path, args.paths):
        if not given.exists():
            raise ClassbenchError(f"{given} does not exist; give run folders or a folder of runs (e.g. runs).")
        found = [given] if runfolder.is_run_dir(given) else runfolder.discover(given)
        targets += [(d, given if d != given else given.parent) for d in found]
    if not targets:
        raise ClassbenchError(f"No run folders under {', '.join(args.paths)} (a run folder holds "
                              f"{runfolder.CONFIG} or {runfolder.METRICS}).")
    done = skipped = 0
    for run_dir, root in targets:
        log_dir = Path(args.out) / run_dir.relative_to(root) if args.out else runfolder.RunFolder(run_dir).tensorboard
        status = (runfolder.read_status(run_dir) or {}).get("status")
        if status == runfolder.RUNNING:
            print(f"skipped {run_dir}: still running (its metrics are not complete yet)")
            skipped += 1
            continue
        if _has_events(log_dir) and not args.force:
            print(f"skipped {run_dir}: {log_dir} already holds event files (--force writes another)")
            skipped += 1
            continue
        n = convert(run_dir, log_dir)
        print(f"wrote {n} records of {run_dir} to {log_dir}")
        done += 1
    where = args.out or " ".join(args.paths)
    print(f"{done} run(s) converted, {skipped} skipped. Browse with: tensorboard --logdir {where}")
    return 0
