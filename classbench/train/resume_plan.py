"""A new budget on resume: what happens to a budget-shaped lr schedule, said before it happens.

cosine, warmup_linear and onecycle are stretched over the whole budget, so
resuming with another ``train.epochs``/``train.steps`` changes the lr from the
next step on.  ``train.resume_schedule`` chooses:

* ``continue``: keep the plan the run was trained under; past its end the lr
  holds the plan's final value (a cut budget simply stops earlier on it);
* ``replan``: stretch the schedule over the new budget from the start, as if
  the run had been planned that long (the lr usually jumps);
* ``ask`` (default): when the two differ, refuse with both spelled out, before
  anything is trained or written.
"""

from __future__ import annotations

from ..errors import ConfigError
from .optim import Schedule


def _lr(v: float) -> str:
    return f"{v:.4g}"


def describe(schedule: Schedule, step: int, planned: int, new_total: int) -> dict[str, str]:
    """One line per choice: the lr now and after, for ``continue`` and ``replan``."""
    old = schedule.replanned(planned)
    new = schedule.replanned(new_total)
    name = schedule.cfg.name
    head = (f"sched.name={name} was planned over {planned} steps and the new budget is {new_total}; "
            f"at step {step} the lr is {_lr(old.lr_at(step))}")
    if new_total > planned:
        cont = (f"follow the old plan to step {planned}, then hold its final lr {_lr(old.lr_at(planned))} "
                f"to step {new_total}")
    else:
        cont = f"follow the old plan and stop at step {new_total} (lr {_lr(old.lr_at(new_total))} there)"
    replan = (f"stretch {name} over {new_total} steps: the lr becomes {_lr(new.lr_at(step))} at step {step} "
              f"and ends at {_lr(new.lr_at(new_total))}")
    return {"head": head, "continue": cont, "replan": replan}


def plan(schedule: Schedule, step: int, planned: int | None, new_total: int, choice: str, run_dir) -> str | None:
    """Set ``schedule``'s plan for a resumed run; returns the line to show (None when nothing changes).

    ``planned`` is the budget the run's lr was planned over (None: unknown, keep the new budget).
    Raises ConfigError for ``ask`` when continuing and re-planning differ.
    """
    if planned is None or planned == new_total or not schedule.depends_on_total or new_total <= step:
        return None  # same plan, a schedule that ignores the budget, or nothing left to train
    d = describe(schedule, step, planned, new_total)
    if choice == "ask":
        raise ConfigError(
            f"Resuming {run_dir} with a new budget changes its lr schedule: {d['head']}. Choose how to go on: "
            f"train.resume_schedule=continue to {d['continue']}; or train.resume_schedule=replan to {d['replan']}. "
            "Nothing was trained or written."
        )
    if choice == "continue":
        schedule.total = planned
    else:
        schedule.total = new_total
    schedule.apply()
    return f"resume: {d['head']}; train.resume_schedule={choice}: {d[choice]}."
