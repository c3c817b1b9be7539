"""The package's layers, as docs/design.md draws them, enforced on every import (module- and function-level).

    foundation (errors, io, host, config, runfolder) < data, layers, models < train < compare, inference
    < drivers, commands, cli, api (the public functions that the package top re-exports lazily)

A module may import its own layer and the ones below it; compare and inference may import each other.
The same table must name every top-level module and every module of the packages it lists file by file.
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


# Packages whose rows in docs/design.md's layer table name each module: a newcomer reads the tree
# there.  layers/, models/ and commands/ are described as a whole ("one file per family", ...).
MODULE_BY_MODULE = ("data", "train", "compare", "inference", "drivers")


def layer_table(text: str) -> dict[str, str]:
    """docs/design.md's layer table as {path cell: holds cell}."""
    rows, inside = {}, False
    for line in text.splitlines():
        if line.startswith("| layer | path | holds |"):
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not line.startswith("|--"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[1]] = cells[2]
    return rows


def modules_missing_from(table: dict[str, str]) -> list[str]:
    missing = []
    paths = " ".join(table)
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name != "__init__.py" and f"classbench/{path.name}" not in paths:
            missing.append(f"classbench/{path.name}")
    for package in MODULE_BY_MODULE:
        holds = " ".join(h for p, h in table.items() if f"classbench/{package}/" in p)
        for path in sorted((PACKAGE / package).glob("*.py")):
            if path.name != "__init__.py" and f"`{path.name}`" not in holds:
                missing.append(f"classbench/{package}/{path.name}")
    return missing


def test_design_md_names_every_module():
    table = layer_table((PACKAGE.parent / "docs" / "design.md").read_text(encoding="utf-8"))
    assert len(table) >= 10, "docs/design.md's layer table was not found"
    missing = modules_missing_from(table)
    assert not missing, "modules that docs/design.md's layer table does not name: " + ", ".join(missing)


def test_the_design_table_check_sees_a_missing_module():
    table = {"`classbench/io.py`": "atomic writes", "`classbench/train/`": "`trainer.py` (the loop)"}
    missing = modules_missing_from(table)
    assert "classbench/train/step.py" in missing and "classbench/host.py" in missing
    assert "classbench/train/trainer.py" not in missing and "classbench/io.py" not in missing


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
