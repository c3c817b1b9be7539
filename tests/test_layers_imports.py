"""The package's layers, as docs/design.md draws them, enforced on every import (module- and function-level).

    foundation (errors, io, host, config, runfolder) < data, layers, models < train < compare, inference
    < drivers, commands, cli, api (the public functions that the package top re-exports lazily)

A module may import its own layer and the ones below it; compare and inference may import each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import classbench

PACKAGE = Path(classbench.__file__).resolve().parent

LAYERS = [
    {"errors", "io", "host", "config", "runfolder", "__init__"},
    {"data", "layers", "models"},
    {"train"},
    {"compare", "inference"},
    {"drivers", "commands", "cli", "__main__", "api"},
]
LEVEL = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """``classbench.train.trainer`` -> ``train``; ``classbench`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every classbench import in the file, at any depth (functions too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "classbench"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import distributed`: each name may be a submodule
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                targets = [node.module] if node.module and node.module.split(".")[0] == "classbench" else []
            out += [(node.lineno, t) for t in targets]
    return out


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _part(_module_name(path))
        for line, target in imports_of(path):
            other = _part(target)
            if other not in LEVEL:  # e.g. `from classbench import __version__`: the package root
                other = "__init__"
            if LEVEL[other] > LEVEL[own]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} imports {target} ({other} is above it)")
    return bad


def test_every_module_is_in_a_layer():
    parts = {_part(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LEVEL), sorted(parts - set(LEVEL))


def test_no_import_runs_up_the_layers():
    bad = upward_imports()
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / "classbench"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("")
    (fake / "models" / "x.py").write_text(
        "from . import registry\n"
        "def f():\n    from ..train.precision import autocast\n    import classbench.compare.runs\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    got = imports_of(fake / "models" / "x.py")
    assert got == [(1, "classbench.models.registry"), (3, "classbench.train.precision"), (4, "classbench.compare.runs")]
    assert len(upward_imports()) == 2


@pytest.mark.slow  # spawns a fresh interpreter
def test_loading_a_config_imports_no_model_code():
    code = ("import sys, classbench.config as c; c.load_config('configs/cifar10/resnet20.yaml', []); "
            "print(sorted(m for m in sys.modules if m.startswith('classbench.models')), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "False"], out.stdout + out.stderr
