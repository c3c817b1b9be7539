"""`classbench sweep`: a grid of trainings, one run per combination, then the summary."""

from __future__ import annotations

import argparse

HELP = ("Train every config with every combination of --set values (one run each, skipping finished ones), "
        "then print the summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="configs/<dataset>/<name>.yaml (one or more)")
    p.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="values to sweep, split on commas outside brackets (eval.splits=[val,test] is one value); "
                        "a token without a comma sets one value for every run; several tokens may follow one --set")
    p.add_argument("--runs-dir", metavar="DIR", help="train.runs_dir of every run (default: each config's, usually runs)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once on this machine (CPU threads are divided; GPUs assigned round-robin)")
    p.add_argument("--force", action="store_true", help="run again the combinations that already have a finished run")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..drivers.sweep import Sweep, exit_status, parse_sets, plan, report, summary_tables

    configs = list(args.configs)
    sets = []
    for token in args.sets:  # `--set k=v config.yaml`: argparse gave the config to --set
        if "=" not in token and token.endswith((".yaml", ".yml")):
            configs.append(token)
        else:
            sets.append(token)
    jobs = plan(configs, parse_sets(sets), args.runs_dir)
    print(f"sweep: {len(jobs)} run(s), {args.jobs} at a time", flush=True)
    results = Sweep(jobs, n_jobs=args.jobs, force=args.force).run()
    report(results, sys.stdout)
    runs_dirs = sorted({j.cfg.train.runs_dir for j in jobs})
    sys.stdout.write(summary_tables(runs_dirs))
    sys.stdout.flush()
    return exit_status(results)
