"""The trainer's side of the run folder: everything a run writes there, and when.

    rec = Recorder.create(cfg, dist)          # or Recorder.reopen(run_dir, dist) for --resume
    rec.start(cfg, device, step)              # env.json, config.yaml, status "running", TensorBoard
    rec.record({"step": ..., "split": ...})   # one metrics.jsonl line (and its TensorBoard scalars)
    rec.save_checkpoint("last", state)        # checkpoints/last.pt, atomically
    rec.finish(summary)                       # summary.json, status "finished"

Under DDP every rank holds a Recorder for the same folder (rank 0 creates it and
broadcasts the path), but only rank 0 writes: the methods do nothing elsewhere.
File names and formats are :mod:`classbench.runfolder`'s.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from .. import runfolder
from ..config import Config, flatten, to_dict, to_yaml
from ..errors import ClassbenchError
from ..io import append_jsonl, atomic_write_json, atomic_write_text
from ..runfolder import RunFolder
from . import distributed
from .checkpoint import save_checkpoint


class Recorder:
    def __init__(self, run_dir: str | Path, dist: distributed.DistInfo, *, resumed: bool) -> None:
        self.folder = RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.is_main = dist.rank == 0
        self.resumed = resumed
        self.tb = None  # the TensorBoard logger, between start() and finish() / a stop
        # One writer per run folder: rank 0 holds the folder's flock until release() or its death.
        self.lock = runfolder.lock_writer(self.run_dir) if self.is_main else None

    def release(self) -> None:
        """Let another process write this run folder (the end of fit(), or a refused resume)."""
        if self.lock is not None:
            self.lock.release()

    @classmethod
    def create(cls, cfg: Config, dist: distributed.DistInfo) -> "Recorder":
        """A fresh run folder: rank 0 makes it and tells the other ranks where."""
        if dist.rank == 0:
            try:
                path = runfolder.create_run_dir(cfg.train.runs_dir, cfg.data.name, cfg.name)
            except OSError as e:  # runs_dir is a file, read-only, full, ...
                raise ClassbenchError(f"Cannot create a run folder under train.runs_dir={cfg.train.runs_dir}: "
                                      f"{e.strerror or e} ({e.filename}). Set train.runs_dir to a writable folder.") from None
            if dist.world_size > 1:
                distributed.broadcast_object(str(path), dist)
        else:
            path = Path(distributed.broadcast_object(None, dist))
        return cls(path, dist, resumed=False)

    @classmethod
    def reopen(cls, run_dir: str | Path, dist: distributed.DistInfo) -> "Recorder":
        """An existing run folder, to resume; the caller checks its last.pt."""
        return cls(run_dir, dist, resumed=True)

    def evaluated_steps(self, up_to: int) -> list[int]:
        """The steps at which the run evaluated, up to ``up_to`` (read back on resume)."""
        return [r["step"] for r in runfolder.read_metrics(self.run_dir, warn=False)
                if r.get("split") != "train" and r.get("step", 0) <= up_to]

    # ---------------------------------------------------------------- lifetime
    def start(self, cfg: Config, device, step: int) -> None:
        """Before the first step of this attempt: the records that say the run is alive."""
        if not self.is_main:
            return
        if self.resumed:
            # A run killed mid-write leaves the temporary file of that write (.<name>.<random>.tmp).
            for stale in self.folder.temp_files():
                stale.unlink(missing_ok=True)
            # Lines written after the checkpoint belong to steps that will be trained again.
            kept = [r for r in runfolder.read_metrics(self.run_dir) if r.get("step", 0) <= step]
            atomic_write_text(self.folder.metrics_jsonl, "".join(json.dumps(r) + "\n" for r in kept))
            runfolder.add_resume_environment(self.run_dir, {**runfolder.environment(device), "step": step})
        else:
            atomic_write_json(self.folder.env_json, runfolder.environment(device))
        # Also on resume: overrides (a new budget) make this the config the run really finishes under.
        atomic_write_text(self.folder.config_yaml, to_yaml(cfg))
        runfolder.write_status(self.run_dir, runfolder.RUNNING)
        runfolder.announce_run_dir(self.run_dir)
        if cfg.log.tensorboard:
            from .tensorboard import TensorBoardLogger

            self.tb = TensorBoardLogger(self.run_dir, _hparams(cfg), purge_step=step + 1 if self.resumed else None,
                                        subdir=runfolder.TENSORBOARD)

    @contextmanager
    def closing(self):
        """On a stop or crash, flush the TensorBoard events written so far; a finished run closes with its hparams."""
        try:
            yield
        except BaseException:
            if self.tb is not None:
                self.tb.close()
            raise

    def test_outcomes(self, pred, target, confidence, num_classes: int) -> None:
        """What best.pt made of the test split (before summary.json, so a finished run has it)."""
        if self.is_main:
            runfolder.write_test_outcomes(self.run_dir, pred, target, confidence, num_classes)

    def finish(self, summary: dict, message: str = "") -> None:
        """summary.json and status "finished"; `message` says why a run ended early (early stopping)."""
        if not self.is_main:
            return
        atomic_write_json(self.folder.summary_json, summary)
        runfolder.write_status(self.run_dir, runfolder.FINISHED, message)
        if self.tb is not None:
            self.tb.close(tensorboard_final_metrics(summary))

    # ---------------------------------------------------------------- records
    def record(self, rec: dict) -> None:
        """One metrics.jsonl line."""
        if not self.is_main:
            return
        append_jsonl(self.folder.metrics_jsonl, rec)
        if self.tb is not None:
            self.tb.log(rec)

    def save_checkpoint(self, kind: str, state: dict) -> None:
        if self.is_main:
            save_checkpoint(self.folder.checkpoint(kind), state)

    def status(self, status: str, message: str = "") -> None:
        if self.is_main:
            runfolder.write_status(self.run_dir, status, message)

    def failed(self, e: BaseException) -> None:
        """A crash: say so in status.json, if the run got as far as writing one."""
        if self.is_main and self.folder.status_json.exists():
            try:
                runfolder.write_status(self.run_dir, runfolder.FAILED, f"{type(e).__name__}: {e}"[:500], last_resort=True)
            except ClassbenchError:
                pass  # the disk is still full: the error being raised says more than status.json could

    def nonfinite(self, diagnosis: dict, what: str) -> None:
        if self.is_main:
            atomic_write_json(self.folder.nonfinite_json, diagnosis)
            runfolder.write_status(self.run_dir, runfolder.NONFINITE_STATUS, what)


def tensorboard_final_metrics(summary: dict) -> dict:
    """The summary.json values shown beside the hyperparameters (HPARAMS tab); `classbench tensorboard` shares it."""
    return {k: summary[k] for k in ("best_val_top1", "test_top1", "test_top5") if summary.get(k) is not None}


def tensorboard_hparams(cfg: Config) -> dict:
    return _hparams(cfg)


def _hparams(cfg: Config) -> dict:
    """The config as flat dotted keys with TensorBoard-friendly values."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(to_dict(cfg)).items()}
