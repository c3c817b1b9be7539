"""`classbench sweep`: a grid of trainings, one run per combination, then the summary."""

from __future__ import annotations

import argparse

HELP = ("Train every config with every combination of --set values and seeds (one run each, skipping finished "
        "ones and resuming interrupted ones), here or as a Slurm job array, then print the summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="configs/<dataset>/<name>.yaml (one or more)")
    p.add_argument("--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="values to sweep, split on commas outside brackets (eval.splits=[val,test] is one value); "
                        "a token without a comma sets one value for every run; several tokens may follow one --set")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="train every combination with seeds 0..N-1 (train.seed; data.split_seed stays fixed, so every "
                        "seed is scored on the same val and test images)")
    p.add_argument("--name", metavar="NAME",
                   help="the runs' name instead of the config's; the swept values (not the seed) are appended")
    p.add_argument("--runs-dir", metavar="DIR", help="train.runs_dir of every run (default: each config's, usually runs)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at once on this machine (CPU threads are divided; GPUs assigned round-robin)")
    p.add_argument("--force", action="store_true", help="run again the combinations that already have a finished run")
    p.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: child processes here (default); slurm: one Slurm job array, returns once queued")
    p.add_argument("--status", metavar="SWEEP_DIR",
                   help="show each task of a Slurm sweep (pending, running, finished, failed, preempted), then the "
                        "summary of the finished runs")
    s = p.add_argument_group("Slurm (with --launcher slurm)")
    s.add_argument("--partition", help="the partition to submit to (default: the cluster's default)")
    s.add_argument("--time", help="time limit of each run, in Slurm's format (e.g. 2:00:00); tasks save and requeue "
                                  "themselves --stop-margin seconds before it")
    s.add_argument("--cpus-per-run", type=int, default=1, metavar="N", help="CPU cores of each run (train.threads)")
    s.add_argument("--gpus-per-run", type=int, default=0, metavar="N",
                   help="GPUs of each run (more than 1: DDP over them, as train --nproc N)")
    s.add_argument("--mem", help="memory of each run, e.g. 16G")
    s.add_argument("--array-parallelism", type=int, metavar="N", help="at most N runs at once (the array's %%N)")
    s.add_argument("--sbatch-arg", dest="sbatch_args", action="append", default=[], metavar="=--OPT=VALUE",
                   help="any other sbatch option, e.g. --sbatch-arg=--qos=high (repeatable)")
    s.add_argument("--stop-margin", type=int, default=None, metavar="S",
                   help="seconds before the time limit at which a run saves its resumable checkpoint and requeues (default 120); "
                        "must cover one evaluation and a checkpoint save")
    s.add_argument("--sweep-dir", metavar="DIR", help="the sweep folder (default: <runs-dir>/sweeps/<name>-<id>)")
    p.add_argument("--run-task", nargs=2, metavar=("SWEEP_DIR", "INDEX"), help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import ConfigError

    if args.run_task:
        from ..drivers.slurm import run_task

        sweep_dir, index = args.run_task
        if not index.isdigit():
            raise ConfigError(f"--run-task needs a task number, got {index!r}.")
        return run_task(sweep_dir, int(index))
    if args.status:
        from ..drivers.slurm import show_status

        return show_status(args.status)

    from ..drivers.sweep import Sweep, exit_status, parse_sets, plan, report, summary_tables

    configs = list(args.configs)
    sets = []
    for token in args.sets:  # `--set k=v config.yaml`: argparse gave the config to --set
        if "=" not in token and token.endswith((".yaml", ".yml")):
            configs.append(token)
        else:
            sets.append(token)
    if args.launcher == "slurm":
        from ..drivers.slurm import DEFAULT_STOP_MARGIN, SlurmOptions, check_options, submit

        opts = SlurmOptions(partition=args.partition, time=args.time, cpus_per_run=args.cpus_per_run,
                            gpus_per_run=args.gpus_per_run, mem=args.mem, array_parallelism=args.array_parallelism,
                            sbatch_args=list(args.sbatch_args),
                            stop_margin=DEFAULT_STOP_MARGIN if args.stop_margin is None else args.stop_margin,
                            sweep_dir=args.sweep_dir)
        check_options(opts)  # before planning: bad options cost no config loading
        jobs = plan(configs, parse_sets(sets), args.runs_dir, seeds=args.seeds, name=args.name)
        print(f"sweep: {len(jobs)} run(s) as a Slurm job array", flush=True)
        return submit(jobs, opts, force=args.force)
    slurm_only = [flag for flag, value in (("--partition", args.partition), ("--time", args.time),
                                           ("--mem", args.mem), ("--array-parallelism", args.array_parallelism),
                                           ("--sbatch-arg", args.sbatch_args), ("--stop-margin", args.stop_margin),
                                           ("--sweep-dir", args.sweep_dir), ("--gpus-per-run", args.gpus_per_run),
                                           ("--cpus-per-run", args.cpus_per_run != 1)) if value]
    if slurm_only:
        raise ConfigError(f"{', '.join(slurm_only)} only apply with --launcher slurm.")
    jobs = plan(configs, parse_sets(sets), args.runs_dir, seeds=args.seeds, name=args.name)
    print(f"sweep: {len(jobs)} run(s), {args.jobs} at a time", flush=True)
    results = Sweep(jobs, n_jobs=args.jobs, force=args.force).run()
    report(results, sys.stdout)
    runs_dirs = sorted({j.cfg.train.runs_dir for j in jobs})
    sys.stdout.write(summary_tables(runs_dirs))
    sys.stdout.flush()
    return exit_status(results)
