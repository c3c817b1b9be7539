"""Real full disks: a tiny tmpfs (needs root and mount), and filling one to the last byte.

Reach them through the ``tiny_tmpfs`` and ``full_disk`` fixtures (tests/conftest.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def mounted_tmpfs(mnt: Path, size: str):
    """Mount a tmpfs of ``size`` (e.g. "4m") at ``mnt``, yield it, unmount it; skips where that is not allowed."""
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> None:
    """Write ``path`` until its file system has no byte left (smaller and smaller writes, down to one byte)."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
