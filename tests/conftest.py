"""Shared fixtures: tiny configs on synthetic data, so trainer tests take seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from classbench.config import load_config

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.name=synthetic", "data.num_classes=4", "data.synthetic_size=256", "data.image_size=16",
    "data.val_size=64", "data.train_subset_size=32", "data.pad=2",
    "model.name=toy_dilated", "model.args={width: 8}",
    "optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0",
    # fp32 pinned: exactness and parity tests must not depend on whether this CPU has bf16.
    "train.batch_size=32", "train.epochs=2", "train.threads=1", "train.precision=fp32",
    "eval.splits=[val,test,train_subset]", "eval.batch_size=64", "log.every=3", "log.progress=never",
]


@pytest.fixture
def tiny_cfg(tmp_path):
    """Build a tiny config; extra overrides win over the defaults above."""

    def make(*overrides: str):
        return load_config(None, [*TINY, f"train.runs_dir={tmp_path / 'runs'}", *overrides])

    return make


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
