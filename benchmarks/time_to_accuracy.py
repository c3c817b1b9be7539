"""Train a config and report when each accuracy target was first reached.

    python benchmarks/time_to_accuracy.py configs/cifar10/fast.yaml --target 0.85 0.90 [key=value ...]

The times come from the val lines of the run's metrics.jsonl (``time_no_ckpt``: wall
seconds since training started, evaluation included, checkpoint writes left out; ``time``
in runs from before that key), so a target counts when an evaluation sees it.  ``setup`` (data loading, model build, ``data_init``) happens before that
clock starts and is reported apart; "incl. setup" adds it.  Uses the selection split
(val, or test when the config has no val) unless ``--split`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from classbench.config import load_config  # noqa: E402
from classbench.io import read_jsonl  # noqa: E402


def first_times(lines: list[dict], split: str, targets: list[float]) -> dict[float, dict | None]:
    evals = [r for r in lines if r.get("split") == split]
    out: dict[float, dict | None] = {}
    for t in targets:
        hit = next((r for r in evals if r["top1"] >= t), None)
        out[t] = None if hit is None else {"time": hit.get("time_no_ckpt", hit["time"]), "step": hit["step"], "epoch": hit["epoch"],
                                           "top1": hit["top1"]}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    ap.add_argument("--target", type=float, nargs="+", default=[0.90], help="accuracy targets in [0, 1]")
    ap.add_argument("--split", default=None, help="split whose top-1 is checked (default: val, else test)")
    ap.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    argv = sys.argv[1:] if argv is None else list(argv)
    # key=value overrides may come anywhere, also after --target's numbers
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = ap.parse_args([a for a in argv if a not in overrides])
    args.overrides = [*args.overrides, *overrides]
    if any(not 0 < t <= 1 for t in args.target):
        ap.error("--target values are fractions in (0, 1], e.g. 0.90")

    from classbench.train.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    setup = time.perf_counter() - t0
    run_dir = trainer.fit()
    total = time.perf_counter() - t0
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())

    split = args.split or ("val" if "val" in cfg.eval.splits else "test")
    lines = read_jsonl(run_dir / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    hits = first_times(lines, split, sorted(args.target))
    evals = [r for r in lines if r.get("split") == split]
    last = evals[-1] if evals else {}

    print(f"run         {run_dir}")
    print(f"config      {args.config} {' '.join(args.overrides)}".rstrip())
    print(f"model       {summary['model']}, {summary['epochs']} epochs, batch {summary['batch_size']}, "
          f"{summary['device']} ({summary['precision']}, {summary['threads']} threads)")
    print(f"load avg    start {load0}, end {load1}")
    print(f"setup       {setup:.1f} s (data, model, data_init; before the run clock)")
    for t, h in hits.items():
        if h is None:
            print(f"target {t:.2%}  NOT reached on {split} (best {max((r['top1'] for r in evals), default=0):.2%})")
        else:
            print(f"target {t:.2%}  reached at {h['time']:.1f} s ({h['time'] + setup:.1f} s incl. setup), "
                  f"step {h['step']}, epoch {h['epoch']:.2f}, {split} top-1 {h['top1']:.2%}")
    print(f"final       {split} top-1 {last.get('top1', float('nan')):.2%} at {last.get('time', float('nan')):.1f} s; "
          f"best {split} {max((r['top1'] for r in evals), default=float('nan')):.2%}; "
          f"test top-1 (best.pt) {summary['test_top1'] if summary['test_top1'] is None else format(summary['test_top1'], '.2%')}")
    print(f"wall        {summary['wall_time_s']:.1f} s run clock, {total:.1f} s incl. setup and final test; "
          f"train {summary['train_time_s']:.1f} s at {summary['train_img_per_s']:.0f} img/s")
    result = {"run_dir": str(run_dir), "config": args.config, "overrides": args.overrides, "split": split,
              "setup_s": round(setup, 2), "total_s": round(total, 2), "loadavg_start": load0, "loadavg_end": load1,
              "targets": {str(t): h for t, h in hits.items()},
              "final_top1": last.get("top1"), "best_top1": max((r["top1"] for r in evals), default=None),
              "summary": summary}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
