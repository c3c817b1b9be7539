"""Early stopping: stop after `patience` evaluations in a row without a new best val top-1."""

from __future__ import annotations


class EarlyStopping:
    """Counts evaluations since the last improvement of the selection score (strictly higher is better)."""

    def __init__(self, patience: int) -> None:
        if patience < 0:
            raise ValueError(f"patience must not be negative; got {patience}")
        self.patience = patience
        self.best = float("-inf")
        self.best_eval = 0  # 1-based number of the evaluation that set `best`
        self.evals = 0
        self.stale = 0  # evaluations since `best`

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def update(self, score: float) -> bool:
        """Record one evaluation's score; True when training should stop now."""
        self.evals += 1
        if score > self.best:
            self.best, self.best_eval, self.stale = score, self.evals, 0
        else:
            self.stale += 1
        return self.enabled and self.stale >= self.patience

    def reason(self) -> str:
        return (f"early stop: val top-1 did not improve for {self.stale} evaluations "
                f"(train.early_stop={self.patience}); best {self.best:.4f} at evaluation {self.best_eval}")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_eval": self.best_eval, "evals": self.evals, "stale": self.stale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_eval = float(state["best"]), int(state["best_eval"])
        self.evals, self.stale = int(state["evals"]), int(state["stale"])
