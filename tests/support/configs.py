"""Tiny configs on synthetic data, so trainer tests take seconds; real CIFAR-10 where a test needs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

TINY = [
    "data.name=synthetic", "data.num_classes=4", "data.synthetic_size=256", "data.image_size=16",
    "data.val_size=64", "data.train_subset_size=32", "data.pad=2",
    "model.name=toy_dilated", "model.args={width: 8}",
    "optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0",
    # fp32 pinned: exactness and parity tests must not depend on whether this CPU has bf16.
    "train.batch_size=32", "train.epochs=2", "train.threads=1", "train.precision=fp32",
    "eval.splits=[val,test,train_subset]", "eval.batch_size=64", "log.every=3", "log.progress=never",
]

# A run small enough that a step (with a checkpoint write every step) takes milliseconds.
SMALL = {
    "data": {"name": "synthetic", "num_classes": 4, "synthetic_size": 128, "image_size": 8, "val_size": 32,
             "train_subset_size": 16, "pad": 1, "test_size": 32},
    "model": {"name": "toy_dilated", "args": {"width": 4}},
    "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
    "train": {"batch_size": 16, "steps": 120, "threads": 1, "checkpoint_every": 1},
    "eval": {"splits": ["val", "test"], "batch_size": 64, "every": 5},
    "log": {"every": 3, "progress": "never"},
}


def tiny_config(runs_dir: Path, *overrides: str):
    """A tiny Config writing under ``runs_dir``; later overrides win."""
    from classbench.config import load_config

    return load_config(None, [*TINY, f"train.runs_dir={runs_dir}", *overrides])


def write_cfg(path: Path, cfg: dict, **changes: dict) -> str:
    """Write ``cfg`` (e.g. SMALL) with some sections updated as a YAML file; returns its path."""
    cfg = json.loads(json.dumps(cfg))
    for section, values in changes.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def cifar_root() -> Path | None:
    root = os.environ.get("CLASSBENCH_DATA")
    if root and (Path(root) / "cifar-10-batches-py").is_dir():
        return Path(root)
    shared = REPO.parent / "shared" / "datasets"
    return shared if (shared / "cifar-10-batches-py").is_dir() else None


def require_cifar() -> Path:
    """Real CIFAR-10: skipped on a laptop without it, but CI has it and must run the test."""
    root = cifar_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide real CIFAR-10 through CLASSBENCH_DATA")
        pytest.skip("real CIFAR-10 not available (set CLASSBENCH_DATA)")
    return root
