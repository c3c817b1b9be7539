"""Hooks for ``Trainer(cfg, after_step=...)``.

Stopping a run after step N needs no hook: ``Trainer(cfg, stop_after=N)`` behaves as SIGTERM during step N.
"""

from __future__ import annotations

from typing import Callable


def at_step(n: int, action: Callable) -> Callable:
    """An ``after_step`` hook that calls ``action(trainer)`` once step ``n`` is trained, before that step's
    log, evaluation and checkpoint writes."""

    def hook(trainer) -> None:
        if trainer.step == n:
            action(trainer)

    return hook
