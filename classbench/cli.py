"""The `classbench` command line.

Each sub-command lives in `classbench/commands/<name>.py` and defines `HELP`,
`add_arguments(parser)` and `run(args) -> int`. Modules load lazily, so
`classbench --help` stays fast and one broken extra cannot break the rest.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings

from .errors import ClassbenchError, TrainingInterrupted

#: Exit status of a clean stop (Ctrl-C/SIGTERM after a resumable checkpoint), as a shell reports SIGINT.
INTERRUPTED_EXIT = 130

COMMANDS = [
    "train", "eval", "config", "models", "bench",
    "summary", "compare", "plot", "report", "predict", "export", "sweep", "lr-find", "configs", "tensorboard",
    "record",
]


def _available() -> dict[str, object]:
    mods = {}
    for name in COMMANDS:
        try:
            module = f"classbench.commands.{name.replace('-', '_')}"  # lr-find lives in lr_find.py
            mods[name] = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
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


def _importing() -> bool:
    import importlib._bootstrap as bootstrap

    return bool(getattr(bootstrap, "_module_locks", None))  # a lock per module being imported right now


def _interrupt_between_imports(signum, frame):  # noqa: ARG001
    """Ctrl-C at start-up, held back while a module is being imported: a KeyboardInterrupt inside a half-done
    import can leave a library broken (numpy then recursed without end on its next use)."""
    if _importing():
        threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()  # ask again once the import is done
        return
    raise KeyboardInterrupt


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a Ctrl-C: a KeyboardInterrupt that landed inside a library can leave it half
    done, and its clean-up then raises an error of its own (omegaconf: an AttributeError from a half-built
    config node, wrapped in its own error) with the interrupt in its chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    quiet = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if quiet:
        signal.signal(signal.SIGINT, _interrupt_between_imports)  # training installs its own stop handlers
    try:
        return _main(argv)
    except (KeyboardInterrupt, Exception) as e:  # Ctrl-C while the commands load (torch imports take seconds)
        if not _interrupted(e):
            raise
        print("interrupted", file=sys.stderr)  # no traceback
        return INTERRUPTED_EXIT
    finally:
        if quiet:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _main(argv: list[str] | None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except TrainingInterrupted as e:
        # A clean stop, not an error: the message says where the checkpoint is and how to resume.
        print(f"stopped: {e}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except ClassbenchError as e:
        if _interrupted(e):  # e.g. a config error made of a library's half-done work when Ctrl-C came
            print("interrupted", file=sys.stderr)
            return INTERRUPTED_EXIT
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
