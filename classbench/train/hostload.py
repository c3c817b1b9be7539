"""How busy the machine was: the load average against the cores, at the start and end of a run.

Throughput measured while other processes compete for the cores is not the
model's speed.  summary.json records the 1-minute load average at the start
(before training: other processes only) and at the end of the run (which
includes this run's own threads), and flags ``train_img_per_s_under_load``
when other processes kept more than :data:`BUSY_FRACTION` of the cores busy at
either end.  ``classbench summary`` and ``report`` mark such img/s.
"""

from __future__ import annotations

import os

#: Other processes' load, as a fraction of the cores, above which img/s counts as measured under load.
BUSY_FRACTION = 0.25


def cores() -> int:
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average of the host; None where the OS has none (e.g. Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def under_load(start: float | None, end: float | None, own_threads: int, n_cores: int) -> bool | None:
    """Whether others kept more than BUSY_FRACTION of the cores busy at the start or the end (None: unknown).

    At the end the run's own busy threads count in the load average; they are
    taken off (at most the cores they can occupy).
    """
    others = []
    if start is not None:
        others.append(start)
    if end is not None:
        others.append(end - min(own_threads, n_cores))
    if not others:
        return None
    return max(others) > BUSY_FRACTION * n_cores


def summary_fields(start: float | None, own_threads: int) -> dict:
    """summary.json's load fields, from the load taken at the start and the load now."""
    end, n = load_average(), cores()
    return {"load_avg_start": start, "load_avg_end": end, "cpu_cores": n,
            "train_img_per_s_under_load": under_load(start, end, own_threads, n)}
