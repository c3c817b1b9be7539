"""TensorBoard logging, an optional extra (``pip install classbench[tensorboard]``).

The trainer mirrors every metrics.jsonl record here when ``log.tensorboard=true``:

    tb = TensorBoardLogger(run_dir, hparams=to_dict(cfg))   # after the run folder exists
    ...
    tb.log(record)          # the same dict that goes to metrics.jsonl
    ...
    tb.close(final_metrics) # e.g. the summary.json dict; also on failure (finally:)

Events go to ``<run_dir>/tensorboard/``; ``tensorboard --logdir runs`` shows
every run.  Scalars are tagged ``<split>/<key>`` (``train/loss``,
``val/top1``...) at the record's ``step``.  ``close`` writes the flattened
hyperparameters with the final metrics (``hparam/<key>``) for the HPARAMS tab.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import ClassbenchError
from ..config import flatten

_SKIP = {"step", "split"}


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch raises ImportError when the tensorboard package is missing
        raise ClassbenchError(
            "log.tensorboard=true needs the tensorboard package, which is not installed. "
            "Install it with `pip install classbench[tensorboard]` (or `pip install tensorboard`), "
            "or set log.tensorboard=false."
        ) from e
    return SummaryWriter


def _hparam_value(v: Any) -> int | float | str | bool:
    if isinstance(v, (bool, int, float, str)):
        return v
    if v is None:
        return "None"
    return str(v)


def _scalar(v: Any) -> float | None:
    """The float value of a numeric scalar (int, float, numpy scalar, 1-element tensor); None otherwise."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    import torch

    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.dtype.is_complex or v.dtype == torch.bool:
            return None
        return float(v.item())
    import numpy as np

    if isinstance(v, np.generic) and np.issubdtype(v.dtype, np.number) and not np.issubdtype(v.dtype, np.complexfloating):
        return float(v)
    return None


class TensorBoardLogger:
    """Mirror metrics.jsonl records to TensorBoard event files.

    ``hparams`` is the resolved config (nested dicts are flattened to dotted
    keys).  ``purge_step``: on resume, pass the step training resumes from so
    TensorBoard drops events a crashed attempt wrote after it.
    """

    def __init__(self, run_dir: str | os.PathLike, hparams: dict | None = None, *, purge_step: int | None = None,
                 subdir: str = "tensorboard"):
        SummaryWriter = _summary_writer()
        self.log_dir = Path(run_dir) / subdir
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)
        self.hparams = {k: _hparam_value(v) for k, v in flatten(dict(hparams or {})).items()}
        self.last: dict[str, float] = {}
        self._closed = False

    def log(self, record: dict) -> None:
        """Write every numeric scalar of one metrics.jsonl record as ``<split>/<key>`` at ``step``."""
        if self._closed:
            return
        step = record.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            return
        split = str(record.get("split", "train"))
        for key, value in record.items():
            v = None if key in _SKIP else _scalar(value)
            if v is None:
                continue
            tag = f"{split}/{key}"
            self.writer.add_scalar(tag, v, global_step=int(step))
            if math.isfinite(v):
                self.last[tag] = v

    def close(self, final_metrics: dict | None = None) -> None:
        """Write the hyperparameters with the final metrics, then flush and close.  Idempotent.

        ``final_metrics`` (e.g. summary.json's dict) adds its numeric values;
        otherwise the last value of every eval scalar is used.
        """
        if self._closed:
            return
        self._closed = True
        metrics: dict[str, float] = {}
        for tag, v in self.last.items():
            if not tag.startswith("train/"):
                metrics[f"hparam/{tag}"] = v
        for k, v in (final_metrics or {}).items():
            fv = _scalar(v)
            if fv is not None and math.isfinite(fv):
                metrics[f"hparam/{k}"] = fv
        try:
            if self.hparams and metrics:
                # run_name="." keeps the hparams in the same folder as the scalars.
                self.writer.add_hparams(self.hparams, metrics, run_name=".")
        finally:
            self.writer.flush()
            self.writer.close()

    def __enter__(self) -> "TensorBoardLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
