"""`classbench models`: list the registered models with parameters and FLOPs (and speed)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError

HELP = "List the registered models with parameter counts and FLOPs (optionally a speed benchmark)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-classes", type=int, default=10, help="classes of the head (default 10)")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="output format")
    parser.add_argument("--filter", metavar="REGEX", default=None, help="only models whose name matches REGEX")
    parser.add_argument("--bench", action="store_true", help="also measure train/infer images per second")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size for --bench (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps for --bench (default 10)")
    parser.add_argument("--device", default="auto", help="device for --bench: auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="autocast precision for --bench, as `classbench bench` (default auto)")


def run(args: argparse.Namespace) -> int:
    from ..models.profile import format_rows, model_rows

    if args.num_classes < 1 or args.batch_size < 1 or args.steps < 1:
        raise ConfigError("--num-classes, --batch-size and --steps must be positive integers.")
    rows = model_rows(args.num_classes, args.filter)
    if not rows:
        raise ConfigError(f"No registered model matches --filter {args.filter!r}. Run `classbench models` to list them all.")
    if args.bench:
        from ..drivers.bench import add_speed

        add_speed(rows, batch_size=args.batch_size, steps=args.steps, device=args.device,
                  precision=args.precision, num_classes=args.num_classes)
    print(format_rows(rows, args.format))
    return 0
