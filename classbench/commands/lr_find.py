"""`classbench lr-find`: the learning-rate range test for a config."""

from __future__ import annotations

import argparse
import re

HELP = ("Learning-rate range test: train briefly with an exponentially growing lr, print the suggested lr "
        "and write a PNG of loss against lr.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="configs/<dataset>/<name>.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.batch_size=64")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    p.add_argument("--steps", type=int, default=100, help="training steps of the sweep (default 100)")
    p.add_argument("--out", metavar="PNG", help="where to write the plot (default: lr_find-<config name>.png)")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from ..io import atomic_write_bytes
    from ..train.lr_find import find_lr, lr_schedule, plot_png

    if args.steps < 5:
        raise ConfigError(f"--steps must be at least 5 for a usable curve; got {args.steps}.")
    lr_schedule(args.start_lr, args.end_lr, args.steps)  # checks the range before any data is loaded
    cfg = load_config(args.config, list(args.overrides))
    result = find_lr(cfg, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    out = args.out or f"lr_find-{re.sub(r'[^A-Za-z0-9._-]+', '_', cfg.name)}.png"
    atomic_write_bytes(out, plot_png(result, f"lr range test: {cfg.name} ({cfg.model.name})"))
    print(f"swept {len(result.lrs)} steps from lr {result.lrs[0]:.3g} to {result.lrs[-1]:.3g}: {result.stopped}")
    if result.suggestion is None:
        print("no suggestion: the smoothed loss never fell clearly; widen the range or add --steps")
    else:
        print(f"suggested lr {result.suggestion:.3g} (steepest descent of the smoothed loss; "
              f"lowest loss at lr {result.min_loss_lr:.3g})")
    print(f"plot: {out}")
    return 0
