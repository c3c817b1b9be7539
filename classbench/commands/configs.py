"""`classbench configs`: the packaged reference configs, by the names `train`, `config` and `sweep` accept."""

from __future__ import annotations

import argparse
import sys

HELP = ("List the packaged configs: `classbench train cifar10/resnet20` trains one by name "
        "(a path to a YAML file still means that file).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="only names containing this text, e.g. cifar100/ or resnet18")
    p.add_argument("--paths", action="store_true", help="print each config's file path too")


def describe(path) -> tuple[str, str]:
    """(model name, the first line of the header comment) of one config file; blanks when unreadable."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        model = ((yaml.safe_load(text) or {}).get("model") or {}).get("name", "")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return "", ""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    about = first.lstrip("#").strip() if first.startswith("#") else ""
    return str(model), about


def run(args) -> int:
    from ..config import config_dirs, packaged_configs
    from ..errors import ConfigError

    found = packaged_configs()
    if not found:
        raise ConfigError("No packaged configs found (looked in classbench/configs and the checkout's configs/); "
                          "is this installation complete?")
    names = [n for n in found if not args.pattern or args.pattern in n]
    if not names:
        raise ConfigError(f"No packaged config name contains {args.pattern!r}; `classbench configs` lists all {len(found)}.")
    rows = [(n, *describe(found[n])) for n in names]
    w_name = max(len(r[0]) for r in rows)
    w_model = max(len(r[1]) for r in rows)
    out = []
    for (name, model, about), n in zip(rows, names):
        line = f"{name:<{w_name}}  {model:<{w_model}}  {about}".rstrip()
        out.append(line + (f"\n{'':<{w_name}}  {found[n]}" if args.paths else ""))
    where = ", ".join(str(d) for d in config_dirs())
    out.append(f"\n{len(names)} config(s) from {where}. Train one with `classbench train NAME [key=value ...]`; "
               "`classbench config NAME` prints it resolved.")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
