"""How busy the machine was while a run trained: the CPU time other processes used, against the cores.

Throughput measured while other processes compete for the cores is not the
model's speed.  On Linux the measure is exact: the machine's busy CPU seconds
(/proc/stat) over the run, less this run's own (its process and, under DDP, as
many again for each other rank on this node), divided by the wall time, is the
number of cores other processes kept busy on average (``others_busy_cores``).
A resumed run carries its earlier attempts' figures in last.pt, up to the
checkpoint it resumes from, as its clocks are carried: the figure covers the
same training time as its img/s.
The 1-minute load average at the start and end is recorded too, and is the
fallback where /proc/stat is missing; it is only a hint, because it lags: a
sweep's next run starts while it still holds the previous run's threads.
``train_img_per_s_under_load`` is true when other processes kept more than
:data:`BUSY_FRACTION` of the cores busy; ``classbench summary`` and ``report``
mark such img/s.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: Other processes' load, as a fraction of the cores, above which img/s counts as measured under load.
BUSY_FRACTION = 0.25

#: A fresh run's earlier attempts (:func:`carried`); None in their place means they were not measured.
NOTHING_EARLIER = {"others_core_s": 0.0, "wall_s": 0.0}

#: /proc/stat's cpu fields that are busy time (the rest are idle and iowait; guest time is inside user).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal


def cores() -> int:
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average of the host; None where the OS has none (e.g. Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


@dataclass(frozen=True)
class CpuSample:
    busy_s: float  # the machine's busy CPU seconds since boot, all cores
    own_s: float  # this process's CPU seconds (all its threads, and its children that have ended)
    wall_s: float  # time.monotonic()
    load_avg: float | None


def sample() -> CpuSample:
    """Now: busy CPU seconds, own CPU seconds, the clock and the load average (busy_s is NaN off Linux)."""
    t = os.times()
    return CpuSample(_machine_busy_seconds(), t.user + t.system + t.children_user + t.children_system,
                     time.monotonic(), load_average())


def _machine_busy_seconds() -> float:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(fields[1 + i]) for i in _BUSY_FIELDS) / ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return float("nan")


def others_busy_cores(start: CpuSample, end: CpuSample, local_procs: int = 1,
                      earlier: dict | None = NOTHING_EARLIER) -> float | None:
    """Cores other processes kept busy on average between two samples (None: unknown, or too short to say).
    ``local_procs`` counts this run's processes on this node (DDP ranks), taken to use alike.  ``earlier``
    (:func:`carried`, from last.pt) adds a resumed run's earlier attempts, so the figure covers all of it."""
    so_far = carried(start, end, local_procs, earlier)
    if so_far is None or not so_far["wall_s"] >= 1.0:  # under a second the clock ticks (1/100 s) dominate
        return None
    return so_far["others_core_s"] / so_far["wall_s"]


def carried(start: CpuSample | None, end: CpuSample, local_procs: int = 1,
            earlier: dict | None = NOTHING_EARLIER) -> dict | None:
    """The CPU seconds other processes used and the wall seconds they span, this attempt's (``start`` to
    ``end``) plus ``earlier`` attempts'; last.pt keeps it for a resume.  None where either part is unknown:
    no /proc/stat, or a checkpoint whose earlier attempts were not measured."""
    if start is None or not _valid_carried(earlier):
        return None
    busy = end.busy_s - start.busy_s
    if busy != busy:  # NaN: no /proc/stat
        return None
    core_s = max(0.0, busy - local_procs * (end.own_s - start.own_s))
    wall = end.wall_s - start.wall_s
    return {"others_core_s": core_s + earlier["others_core_s"], "wall_s": wall + earlier["wall_s"]}


def _valid_carried(d) -> bool:
    return isinstance(d, dict) and all(isinstance(d.get(k), (int, float)) and 0 <= d[k] < float("inf")
                                       for k in ("others_core_s", "wall_s"))


def under_load(start: float | None, end: float | None, own_threads: int, n_cores: int) -> bool | None:
    """The load-average fallback: whether others kept more than BUSY_FRACTION of the cores busy at the
    start or the end (None: unknown).  At the end the run's own busy threads count in the load average;
    they are taken off (at most the cores they can occupy)."""
    others = []
    if start is not None:
        others.append(start)
    if end is not None:
        others.append(end - min(own_threads, n_cores))
    if not others:
        return None
    return max(others) > BUSY_FRACTION * n_cores


def summary_fields(start: CpuSample, own_threads: int, local_procs: int = 1,
                   earlier: dict | None = NOTHING_EARLIER) -> dict:
    """summary.json's load fields, from the sample taken at the start of this attempt and one taken now;
    ``earlier``: a resumed run's earlier attempts (:func:`carried`).  The load averages are this attempt's."""
    end, n = sample(), cores()
    others = others_busy_cores(start, end, local_procs, earlier)
    busy = (others > BUSY_FRACTION * n) if others is not None else under_load(start.load_avg, end.load_avg, own_threads, n)
    return {"load_avg_start": start.load_avg, "load_avg_end": end.load_avg, "cpu_cores": n,
            "others_busy_cores": None if others is None else round(others, 2),
            "train_img_per_s_under_load": busy}
