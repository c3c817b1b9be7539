"""Run folders: creation without clashes, environment records and status."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .io import atomic_write_json


def create_run_dir(runs_dir: str | Path, dataset: str, name: str) -> Path:
    """runs/<dataset>/<name>/<YYYYmmdd-HHMMSS>[-N]; os.mkdir is atomic, so two runs never share one."""
    parent = Path(runs_dir) / dataset / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(10_000):
        path = parent / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return path
    raise RuntimeError(f"could not create a fresh run folder under {parent}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device) -> dict:
    import numpy
    import torch

    from . import __version__

    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": numpy.__version__, "classbench": __version__},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "started": now(),
    }


def write_status(run_dir: Path, status: str, message: str = "") -> None:
    atomic_write_json(run_dir / "status.json", {
        "status": status, "pid": os.getpid(), "host": socket.gethostname(), "updated": now(), "message": message,
    })
