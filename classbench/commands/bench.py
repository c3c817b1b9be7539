"""`classbench bench`: training / inference throughput of registered models on this machine."""

from __future__ import annotations

import argparse

HELP = "Measure img/s, step time, achieved GFLOP/s and peak memory of models (train and/or inference)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL", help="registered model names (default: all)")
    p.add_argument("--filter", metavar="REGEX", default=None, help="only models whose name matches REGEX")
    p.add_argument("--mode", choices=("train", "infer", "both"), default="both", help="what to time (default both)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--steps", type=int, default=10, help="timed steps; img/s uses their median (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model; the first call is reported as compile s, not timed")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="memory format (default: the registry's per-model choice)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast precision; auto picks as train.precision=auto does (default auto)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    p.add_argument("--matmul-peak", action="store_true",
                   help="also measure the GEMM rate at the benchmarked precision (bf16/fp16 under that "
                        "autocast, else fp32) and show each model's GFLOP/s as a %% of it")
    p.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune",
                                              "max-autotune-no-cudagraphs"), default="default",
                   help="torch.compile mode with --compile, as train.compile_mode (default: default)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA: fp32 matmuls/convolutions in TF32, as train.tf32 (default on)")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n GEMM for --matmul-peak")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: physical cores, as train)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the head (default 10)")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option, as a config's model.args.KEY (repeatable; typed as an override: "
                        "--model-arg stem=imagenet --model-arg width=16)")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..drivers.bench import (bench_model, environment_line, format_bench, matmul_peak_gflops, parse_model_args,
                                 setup_process)
    from ..errors import ConfigError
    from ..models import get_entry, list_models

    for key in ("batch_size", "steps", "num_classes", "matmul_size"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer.")
    if args.warmup < 0 or args.threads < 0:
        raise ConfigError("--warmup and --threads must not be negative.")
    matching = set(list_models(args.filter))  # a bad --filter: a ConfigError before any name is checked
    names = list(args.models) or list_models()
    for n in names:
        get_entry(n)  # unknown names: a ConfigError naming the closest ones
    names = [n for n in names if n in matching]
    if not names:
        raise ConfigError(f"No model matches --filter {args.filter!r}. Run `classbench models` to list them.")
    model_args = parse_model_args(args.model_arg)

    device, precision, threads = setup_process(args.device, args.precision, args.threads, args.tf32)
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    peak = matmul_peak_gflops(args.matmul_size, device=device, precision=precision) if args.matmul_peak else None
    peak_key = f"{precision}{' (tf32)' if precision == 'fp32' and device.type == 'cuda' and args.tf32 else ''} " \
               f"matmul {args.matmul_size}^2 GFLOP/s"
    context = environment_line(device, threads)
    if model_args:
        context["model args"] = " ".join(f"{k}={v}" for k, v in model_args.items())
    if peak:
        context[peak_key] = round(peak, 1)
    rows = []
    for name in names:
        if args.format == "table":
            print(f"... {name}", file=sys.stderr, flush=True)
        rows += bench_model(name, modes, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                            compile=args.compile, compile_mode=args.compile_mode,
                            channels_last=args.channels_last, precision=precision,
                            device=device, num_classes=args.num_classes, peak=peak, model_args=model_args)
    if peak and len(names) > 3:  # a long table: check the yardstick did not drift while it ran
        after = matmul_peak_gflops(args.matmul_size, device=device, precision=precision)
        context[peak_key] = f"{peak:.1f} (after the models: {after:.1f})"
    context["loadavg_end"] = environment_line(device, threads).get("loadavg")
    print(format_bench(rows, args.format, peak, context))
    return 0
