from ..runfolder import BEST_PT, checkpoint_rel

HELP = "Train one model from a YAML config (or resume a run), then print its summary."


def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="configs/<dataset>/<name>.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=0.05")
    p.add_argument("--resume", metavar="RUN_DIR", help=f"continue the run in RUN_DIR from {checkpoint_rel('last')}")
    p.add_argument("--nproc", type=int, default=0, metavar="N",
                   help="train with DDP on N local processes (launches torchrun)")


def run(args) -> int:
    import os

    from ..errors import ConfigError

    overrides = list(args.overrides)
    if args.config and "=" in args.config and args.resume:
        overrides.insert(0, args.config)  # `train --resume DIR key=value`
        args.config = None
    if args.nproc and args.nproc > 1:
        from ..train.launch import launch_torchrun

        forwarded = ([args.config] if args.config else []) + overrides
        if args.resume:
            forwarded = ["--resume", args.resume, *forwarded]
        return launch_torchrun(args.nproc, forwarded)
    if args.resume:
        if args.config:
            raise ConfigError("Give either a config or --resume RUN_DIR, not both (a resumed run uses its own config).")
        from ..train.trainer import resume

        run_dir = resume(args.resume, overrides)
    else:
        if not args.config:
            raise ConfigError("Give a config file, e.g. `classbench train configs/cifar10/resnet20.yaml`, or --resume RUN_DIR.")
        from ..config import load_config
        from ..train.trainer import train

        cfg = load_config(args.config, overrides)
        run_dir = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary, not one per rank
        print_summary(run_dir)
    return 0


def print_summary(run_dir) -> None:
    from ..runfolder import read_summary

    s = read_summary(run_dir)
    if s is None:
        return
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = [
        f"run       {run_dir}",
        f"model     {s['model']} ({s['params']:,} params, {s['flops'] / 1e6:.1f} MFLOPs/image)",
        f"trained   {s['steps']} steps ({s['epochs']:.2f} epochs) in {s['wall_time_s']:.1f} s wall, "
        f"{s['train_img_per_s']:.0f} train img/s on {s['device']} ({s['precision']})",
    ]
    if s.get("train_img_per_s_under_load"):
        how = (f"other processes kept {s['others_busy_cores']} cores busy on average" if s.get("others_busy_cores") is not None
               else f"load average {s['load_avg_start']} at the start, {s['load_avg_end']} at the end")
        lines.append(f"          img/s measured under load: {how}, of {s['cpu_cores']} cores")
    if s.get("best_val_top1") is not None:
        lines.append(f"val       best top-1 {pct(s['best_val_top1'])} at step {s['best_val_step']} ({BEST_PT})")
    lines.append(f"test      top-1 {pct(s['test_top1'])}, top-5 {pct(s['test_top5'])} ({BEST_PT}, chosen on {s['selection_split']})")
    print("\n".join(lines))
