"""Memory estimates made before a dataset is allocated.

Every split lives in memory as uint8 (see ``types.Split``).  Before allocating
one, the loaders estimate what it needs and compare it with the memory this
process can still get; when it cannot fit they refuse with one line saying how
much would be needed, instead of a MemoryError traceback (or the OOM killer)
minutes later.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit (containers, Slurm jobs), or None without a limit."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_bytes() -> int | None:
    """Memory this process can still allocate without swapping: MemAvailable, capped by a cgroup limit."""
    room: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    room = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if room is None:
        try:
            room = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None  # unknown: nothing to compare with
    cgroup = _cgroup_room()
    return min(room, cgroup) if cgroup is not None else room


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits(needed: int, what: str, fix: str) -> None:
    """Refuse with one DataError when ``needed`` bytes exceed the memory available now.

    ``what`` says what the bytes are for (``"12 images of 11000x11000 RGB"``);
    ``fix`` says how to need less.
    """
    room = available_bytes()
    if room is not None and needed > room:
        raise DataError(
            f"{what} would need about {human_bytes(needed)} of memory, but {human_bytes(room)} is available. {fix}"
        )
