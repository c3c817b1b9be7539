"""The `classbench` command line.

Each sub-command lives in `classbench/commands/<name>.py` and defines `HELP`,
`add_arguments(parser)` and `run(args) -> int`. Modules load lazily, so
`classbench --help` stays fast and one broken extra cannot break the rest.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import ClassbenchError

COMMANDS = [
    "train", "eval", "config", "models", "bench",
    "summary", "plot", "report", "predict", "export", "sweep",
]


def _available() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            mods[name] = importlib.import_module(f"classbench.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"classbench.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="classbench",
        description="Train image classifiers on CIFAR-10/100 and image folders under one recipe, then compare them.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"classbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _available().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _format_warning(message, category, filename, lineno, line=None):  # noqa: ARG001
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ClassbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
