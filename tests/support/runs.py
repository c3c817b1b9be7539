"""Run folders for tests: real tiny runs (and damaged copies) to read, and helpers to compare them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TIMING_KEYS = ("time", "img_per_s", "time_no_ckpt")  # wall-clock fields: differ between any two runs


def metrics_without_timing(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields: what two exact runs must share."""
    from classbench.io import read_jsonl

    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(run_dir / "metrics.jsonl")]


def run_dirs(runs: Path) -> list[Path]:
    """Every run folder under a runs folder (<dataset>/<name>/<stamp>)."""
    return sorted(p for p in runs.glob("*/*/*") if p.is_dir())


def temp_files(run_dir: Path) -> list[Path]:
    return [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.exists()}


def wait_for(cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- the shared comparison set
BASE = [
    "data.name=synthetic", "data.num_classes=4", "data.synthetic_size=256", "data.image_size=16",
    "data.val_size=64", "data.train_subset_size=32",
    "model.name=toy_dilated", "model.args={width: 8}",
    "optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0",
    "train.batch_size=32", "train.steps=24", "train.threads=1", "train.device=cpu",
    "eval.every=8", "eval.splits=[val,test,train_subset]", "eval.batch_size=64",
    "log.every=4", "log.progress=never",
]

_CACHE: dict[str, Path] = {}


def _train(runs_dir: Path, name: str, *overrides: str) -> Path:
    from classbench.config import load_config
    from classbench.train.trainer import train

    return train(load_config(None, [*BASE, f"name={name}", f"train.runs_dir={runs_dir}", *overrides]))


def _copy_run(src: Path, runs_dir: Path, name: str) -> Path:
    """A copy of a real run under a new config name."""
    import yaml

    dst = runs_dir / "synthetic" / name / src.name
    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg["name"] = name
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def build_runs(base: Path) -> Path:
    """The shared comparison set (built once per process). Returns the runs folder."""
    if "runs" in _CACHE:
        return _CACHE["runs"]
    runs = base / "runs"
    a = _train(runs, "toy-a", "log.tensorboard=true")
    _train(runs, "toy-b", "model.args={width: 12}", "optim.lr=0.02")
    c = _train(runs, "toy-c", "optim.name=sgd", "optim.lr=0.1")

    # A run that crashed half way: no summary, status "running" with a dead pid, a partial last line.
    half = _copy_run(a, runs, "toy-half")
    (half / "summary.json").unlink()
    text = (half / "metrics.jsonl").read_text()
    (half / "metrics.jsonl").write_text(text[: len(text) - 25])
    (half / "status.json").write_text(json.dumps({"status": "running", "pid": _dead_pid(), "host": os.uname().nodename}))

    # A run being written right now: our own pid.
    live = _copy_run(c, runs, "toy-live")
    (live / "summary.json").unlink()
    (live / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid(), "host": os.uname().nodename}))

    # A corrupt line in the middle of a finished run's metrics.
    lines = (c / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(3, '{"step": 8, "split": "val", "top1": 0.99, \x00garbage\n')
    (c / "metrics.jsonl").write_text("".join(lines))
    _CACHE["runs"] = runs
    return runs


def run_path(runs_dir: Path, name: str) -> Path:
    return next((runs_dir / "synthetic" / name).iterdir())


