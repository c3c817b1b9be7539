"""The run folder: the product's contract, owned here and only here.

A run folder is ``runs/<dataset>/<config-name>/<YYYYmmdd-HHMMSS>[-N]/``.  This
module names its files, creates it without clashes, finds run folders, reads
their records, hashes their configs and finds their checkpoints.  Every other
module reaches a file of a run folder through :class:`RunFolder` (or the
readers below); a test greps the package for the file names to keep it so.

    folder = RunFolder(run_dir)
    folder.summary_json, folder.best_pt, folder.checkpoint("last")
    read_summary(run_dir), read_status(run_dir), read_metrics(run_dir)

Telling a parent process where a run went
-----------------------------------------
A parent that starts ``classbench train`` as a child (the sweep, a scheduler)
sets the environment variable ``CLASSBENCH_RUN_DIR_FILE`` (:data:`RUN_DIR_FILE_ENV`)
to a path of its choice.  As soon as the child has created (or reopened, for
``--resume``) its run folder, rank 0 writes the folder's absolute path there,
atomically, as one line of text (:func:`announce_run_dir`).  The parent reads it
with :func:`read_announced_run_dir` and then follows the run through
``status.json`` (:func:`read_status`), never by parsing the child's output.

One writer at a time
--------------------
A process that writes a run folder (train, ``--resume``, a sweep's child) first
takes :func:`lock_writer`: an ``flock`` on the folder's ``.lock`` file.  The
kernel drops an flock when its process dies (SIGKILL, power loss, reboot), so a
lock is never stale and the next writer needs no clean-up.  A second writer is
refused with one line naming the holder's pid.  Readers (summary, plot, report,
eval, predict, export) never take it, so they never block.

Run folders are untrusted input
-------------------------------
People share run folders.  :func:`read_metrics` skips (with a warning) records
whose ``step`` is not a non-negative integer or whose ``split`` is not a
string; :func:`check_checkpoint_record` refuses checkpoints whose stored input
size, classes or normalisation could not come from a real run; :func:`plain_text`
makes a string from a run safe to show in a terminal, a CSV cell or a plot.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import platform
import socket
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ClassbenchError
from .io import atomic_write_json, atomic_write_text, read_jsonl

# ---------------------------------------------------------------- file names
CONFIG = "config.yaml"  #: the resolved config; top-level ``name`` is the config name
ENV = "env.json"  #: git commit, versions, device, host, argv, start time
STATUS = "status.json"  #: one of STATUSES, with pid, host, updated, message
METRICS = "metrics.jsonl"  #: one JSON record a line; the last may be partial after a crash
SUMMARY = "summary.json"  #: written when the run finishes
NONFINITE = "nonfinite.json"  #: only after a non-finite loss
TEST_OUTCOMES = "test_outcomes.json"  #: best.pt's test outcomes (end of run): right or wrong per image, confusion, calibration
TEST_PREDICTIONS_NPZ = "test_predictions.npz"  #: what older runs stored instead of TEST_OUTCOMES (read, never written)
CHECKPOINTS = "checkpoints"  #: the folder of the checkpoints
TENSORBOARD = "tensorboard"  #: TensorBoard event files (log.tensorboard=true)
CHECKPOINT_KINDS = ("last", "best")  #: last.pt: full training state; best.pt: the val-chosen weights
LAST_PT = "last.pt"
BEST_PT = "best.pt"
LOCK = ".lock"  #: flock-ed by the one process writing the run (see "One writer at a time"); holds its pid

# ---------------------------------------------------------------- status vocabulary
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"
NONFINITE_STATUS = "nonfinite"
#: What status.json can say.  Readers add a derived "crashed" (compare.runs).
STATUSES = (RUNNING, FINISHED, FAILED, INTERRUPTED, NONFINITE_STATUS)

#: The channel to a parent process (see the module docstring).
RUN_DIR_FILE_ENV = "CLASSBENCH_RUN_DIR_FILE"

#: Config keys that do not change results: two runs that differ only here are the same experiment.
#: Where a run goes and how it is shown (runs_dir, log.*), CPU threads, how often last.pt is written
#: (resume is bit-exact), whether a missing dataset may be downloaded, and train.resume_schedule: an
#: instruction to one --resume with a new budget, not part of the planned experiment (the lr plan then in
#: force is saved in last.pt).
HASH_EXCLUDED = ("train.runs_dir", "train.threads", "train.checkpoint_every", "train.resume_schedule",
                 "data.download", "log.every", "log.progress", "log.tensorboard")


def checkpoint_name(kind: str) -> str:
    """``last`` -> ``last.pt``."""
    return {"last": LAST_PT, "best": BEST_PT}.get(kind, f"{kind}.pt")


def checkpoint_rel(kind: str) -> str:
    """``best`` -> ``checkpoints/best.pt``: how messages name a checkpoint inside a run folder."""
    return f"{CHECKPOINTS}/{checkpoint_name(kind)}"


class RunFolder:
    """The paths of one run folder's files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config_yaml = property(lambda self: self.path / CONFIG)
    env_json = property(lambda self: self.path / ENV)
    status_json = property(lambda self: self.path / STATUS)
    metrics_jsonl = property(lambda self: self.path / METRICS)
    summary_json = property(lambda self: self.path / SUMMARY)
    nonfinite_json = property(lambda self: self.path / NONFINITE)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    tensorboard = property(lambda self: self.path / TENSORBOARD)
    last_pt = property(lambda self: self.checkpoint("last"))
    best_pt = property(lambda self: self.checkpoint("best"))
    test_outcomes = property(lambda self: self.path / TEST_OUTCOMES)
    legacy_test_predictions = property(lambda self: self.path / TEST_PREDICTIONS_NPZ)
    lock = property(lambda self: self.path / LOCK)

    def checkpoint(self, kind: str) -> Path:
        return self.checkpoints / checkpoint_name(kind)

    def records(self) -> list[Path]:
        """The files whose change time says the run is alive."""
        return [self.metrics_jsonl, self.status_json, self.config_yaml, self.summary_json]

    def temp_files(self) -> list[Path]:
        """Leftovers of a write killed half way (``.<name>.<random>.tmp``, see classbench.io)."""
        return [*self.path.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]


# ---------------------------------------------------------------- creation
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
        RunFolder(path).checkpoints.mkdir()
        return path
    raise RuntimeError(f"could not create a fresh run folder under {parent}")


# ---------------------------------------------------------------- one writer at a time
class WriterLock:
    """The write lock of one run folder, held until :meth:`release` or the end of the process."""

    def __init__(self, fd: int, run_dir: Path) -> None:
        self.fd: int | None = fd
        self.run_dir = run_dir

    def release(self) -> None:
        if self.fd is not None:
            # Wipe the holder's note while still holding the lock: a note left behind would name this
            # process to a writer refused in the moment between the next holder's flock and its own note.
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _kernel_lock_pid(fd: int) -> int | None:
    """The pid that holds the flock on ``fd``'s file, from /proc/locks (Linux); None where unknown.

    The kernel's word beats the note in the file: a holder killed by SIGKILL leaves its note behind,
    and the next holder writes its own only after its flock succeeds.
    """
    try:
        st = os.fstat(fd)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 13446 fe:00:5529982 0 EOF"; "->" marks a waiter, not a holder
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key and fields[4].isdigit():
                    pid = int(fields[4])
                    return pid if pid > 0 else None  # 0: the holder lives outside our pid namespace
    except (OSError, ValueError):
        pass
    return None


def _lock_holder(fd: int) -> dict:
    """Who holds the lock: the note the holder writes right after locking, checked against the kernel.

    Wait a moment for the note (the holder may be between its flock and its write); if it never
    names the pid the kernel names, the note is stale and the kernel's pid is all there is to say.
    """
    kernel_pid = _kernel_lock_pid(fd)
    for _ in range(20):
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
            if isinstance(holder, dict) and (kernel_pid is None or holder.get("pid") == kernel_pid):
                return holder
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {"pid": kernel_pid} if kernel_pid is not None else {}


def lock_writer(run_dir: str | Path) -> WriterLock:
    """Take the run folder's write lock, or raise a one-line ClassbenchError naming the pid that holds it.

    ``flock`` (not a pid file): the kernel releases it when the holder dies, however it dies, so a lock
    left by a SIGKILL or a reboot never blocks the next writer.  The descriptor is close-on-exec, so a
    program the writer starts does not inherit the lock.
    """
    run_dir = Path(run_dir)
    path = RunFolder(run_dir).lock
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise ClassbenchError(f"Cannot open {path} to lock the run folder for writing: {e.strerror or e}.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _lock_holder(fd) if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else {}
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise ClassbenchError(f"Cannot lock {path}: {e.strerror or e}. The file system may not support "
                                  "locks; put train.runs_dir on a local disk.") from None
        who = f"pid {plain_text(holder.get('pid', '?'))}"
        if holder.get("host") and holder.get("host") != socket.gethostname():
            who += f" on host {plain_text(holder['host'])}"
        since = f" since {plain_text(holder['since'])}" if holder.get("since") else ""
        raise ClassbenchError(
            f"{run_dir} is being written by another process ({who}{since}): a run folder has one writer at a time. "
            f"Wait for it to end or stop it; summary, plot, report and eval can read the run meanwhile."
        ) from None
    holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
    except OSError:
        pass  # the lock holds without the note; a refused writer then says "pid ?"
    return WriterLock(fd, run_dir)


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
    """What env.json holds: enough to tell where and with what a run was made."""
    import numpy
    import torch

    from . import __version__
    from .host import cpu_summary

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
        "cpu": cpu_summary(),  # the speed of a run depends on it several-fold (AVX2 / AVX-512 BF16 / AMX)
        "host": socket.gethostname(),
        "argv": sys.argv,
        "started": now(),
    }


def attempt_environments(env: Any) -> list[dict | None]:
    """An env.json's attempts in order: the first attempt's environment (None where it is unknown:
    ``first_attempt_unknown``), then each resume's (``resumes``).  Empty for anything but an object."""
    if not isinstance(env, dict):
        return []
    resumes = env.get("resumes")
    resumes = [e for e in resumes if isinstance(e, dict)] if isinstance(resumes, list) else []
    return [None if env.get("first_attempt_unknown") else env, *resumes]


def add_resume_environment(run_dir: str | Path, env: dict) -> None:
    """A resume's environment, appended to env.json's ``resumes`` list.  The top level stays the first
    attempt's; a run resumed on another machine, thread count or commit then says so (``host.timing_setups``
    names such a run's set-ups, all of them).  A missing env.json (a folder from elsewhere) gets
    ``first_attempt_unknown``: the resume's environment is not passed off as the first attempt's.  A
    damaged one is left as it is, for a person to read: the readers already report it."""
    path = RunFolder(run_dir).env_json
    try:
        first = _read_json(path)
    except (OSError, ValueError):
        return
    if first is None:
        first = {"first_attempt_unknown": True}
    elif not isinstance(first, dict):
        return
    resumes = first.get("resumes")
    first["resumes"] = [*(resumes if isinstance(resumes, list) else []), env]
    atomic_write_json(path, first)


def write_status(run_dir: str | Path, status: str, message: str = "", *, last_resort: bool = False) -> None:
    """status.json, atomically.  ``last_resort`` (recording a failure): if the atomic write fails -- a full
    disk has no room for the temporary file -- overwrite the existing file in place, in the space it holds."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {STATUSES}")
    record = {"status": status, "pid": os.getpid(), "host": socket.gethostname(), "updated": now(), "message": message}
    path = RunFolder(run_dir).status_json
    try:
        atomic_write_json(path, record)
    except ClassbenchError:
        if not last_resort or not path.is_file():
            raise
        data = (json.dumps(record, indent=2, default=str) + "\n").encode("utf-8")
        try:  # write first, truncate after: no new block is needed while the file shrinks or stays in its block
            with open(path, "r+b") as f:
                f.write(data)
                f.truncate(len(data))
        except OSError:
            raise ClassbenchError(f"Cannot record the failure in {path}: the disk is full.") from None


def announce_run_dir(run_dir: str | Path) -> None:
    """Tell a parent process where this run lives, if it asked (``$CLASSBENCH_RUN_DIR_FILE``)."""
    target = os.environ.get(RUN_DIR_FILE_ENV)
    if target:
        atomic_write_text(target, f"{Path(run_dir).resolve()}\n")


def read_announced_run_dir(path: str | Path) -> Path | None:
    """The run folder a child wrote to ``path`` (see :func:`announce_run_dir`); None if it wrote none."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


# ---------------------------------------------------------------- discovery
def is_run_dir(path: str | Path) -> bool:
    folder = RunFolder(path)
    return folder.config_yaml.is_file() or folder.metrics_jsonl.is_file()


def discover(runs_dir: str | os.PathLike, pattern: str | None = None) -> list[Path]:
    """Every run folder under ``runs_dir`` (itself included), sorted by path.

    A run folder is one that holds config.yaml or metrics.jsonl; the walk does
    not descend into run folders (their checkpoints/ etc. are not runs).
    ``pattern`` (the commands' ``--filter REGEX``) keeps the folders whose path, relative to
    ``runs_dir`` or in full, it is found in.
    """
    rx = _compile_filter(pattern) if pattern else None
    root = Path(runs_dir)
    if not root.exists():
        raise ClassbenchError(
            f"Runs folder {root} does not exist. Train something first (`classbench train ...`) "
            "or pass the folder that holds your runs, e.g. `classbench summary path/to/runs`."
        )
    if not root.is_dir():
        raise ClassbenchError(f"{root} is not a folder. Pass the folder that holds your runs.")
    found: list[Path] = []
    for dirpath, dirnames, _files in os.walk(root, followlinks=False):
        p = Path(dirpath)
        if is_run_dir(p):
            found.append(p)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    if rx:
        found = [p for p in found if rx.search(_relative_posix(p, root)) or rx.search(p.as_posix())]
    return sorted(found)


def _compile_filter(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ClassbenchError(f"--filter {pattern!r} is not a valid regular expression: {e}") from e


def _relative_posix(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def last_update(run_dir: str | Path) -> float:
    """The newest change time of the run's records (0.0 if none exists)."""
    latest = 0.0
    for path in RunFolder(run_dir).records():
        try:
            latest = max(latest, path.stat().st_mtime)
        except OSError:
            pass
    return latest


# ---------------------------------------------------------------- reading
def _read_json(path: Path) -> Any:
    """The JSON in ``path``; None when there is no such file.  Raises OSError/ValueError if unreadable.
    Readers check that it is an object: a hand-edited file may hold anything."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_summary(run_dir: str | Path) -> Any:
    """summary.json (a dict), or None for a run that has not finished.  Raises OSError/ValueError if damaged."""
    return _read_json(RunFolder(run_dir).summary_json)


def read_status(run_dir: str | Path) -> Any:
    """status.json (``status``, ``pid``, ``host``, ``updated``, ``message``), or None if there is none.
    Raises OSError/ValueError if damaged."""
    return _read_json(RunFolder(run_dir).status_json)


def read_env(run_dir: str | Path) -> Any:
    return _read_json(RunFolder(run_dir).env_json)


#: metrics.jsonl fields that are numbers (or null) in every record that has them
_METRIC_NUMBERS = ("epoch", "loss", "top1", "top5", "lr", "time", "time_no_ckpt", "img_per_s")


def _metric_problem(rec: dict) -> str | None:
    """Why a metrics record cannot be used (a hand-edited or crafted file), or None."""
    step = rec.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"step {_short(step)} is not a non-negative integer"
    if not isinstance(rec.get("split"), str):
        return f"split {_short(rec.get('split'))} is not a string"
    for key in _METRIC_NUMBERS:
        v = rec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"{key} {_short(v)} is not a number"
    return None


def read_metrics(run_dir: str | Path, *, warn: bool = True) -> list[dict[str, Any]]:
    """Every usable metrics.jsonl record, in file order.  A partial last line is skipped, and so is a
    record whose step, split or numbers have the wrong type (one warning says how many and why)."""
    path = RunFolder(run_dir).metrics_jsonl
    good, bad = [], []
    for rec in read_jsonl(path, warn=warn):
        problem = _metric_problem(rec)
        (bad.append(problem) if problem else good.append(rec))
    if bad and warn:
        warnings.warn(f"{plain_text(path)}: skipped {len(bad)} record(s) that no run writes (first: {bad[0]})",
                      stacklevel=2)
    return good


def read_config_text(run_dir: str | Path) -> str | None:
    """config.yaml as text, or None if there is none."""
    path = RunFolder(run_dir).config_yaml
    return path.read_text(encoding="utf-8") if path.is_file() else None


# ---------------------------------------------------------------- text from a run
# Run names, model names, class names and messages come from files anyone can edit.  Control
# characters (ANSI escapes, carriage returns, bidi overrides) would rewrite a terminal line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain_text(value: Any) -> str:
    """``value`` as one printable line: control and direction characters written as escapes (``\\x1b``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))


def plot_text(value: Any) -> str:
    """:func:`plain_text` that matplotlib draws as written: ``$`` would start mathtext (and bad mathtext raises)."""
    return plain_text(value).replace("$", r"\$")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows rather than runs: text starting with = + - @ gets a leading '."""
    if not isinstance(value, str):
        return value
    text = plain_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(value: Any, limit: int = 40) -> str:
    text = plain_text(repr(value))
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- data for a reader
def data_config_for_reader(data_cfg, source: str | Path):
    """The data settings a *reader* (eval, report) uses to rebuild a stored run's data.

    A run's config may name any ``data.root``: reading the run must not create folders or download there.
    The run's root is used only when it is an existing folder, and then read-only (no download); otherwise
    the reader's own settings apply ($CLASSBENCH_DATA, else ./data, as for ``train``), with a warning
    saying so.  Returns a copy; ``data_cfg`` is left as it was.
    """
    import dataclasses

    root = data_cfg.root
    if root is None:
        return dataclasses.replace(data_cfg)  # the run used the default: this machine's default is the reader's
    if Path(root).is_dir():
        return dataclasses.replace(data_cfg, download=False)
    mine = os.environ.get("CLASSBENCH_DATA") or "./data"
    warnings.warn(f"{plain_text(source)}: the run's data.root={plain_text(root)} does not exist here; reading its "
                  f"data from {plain_text(mine)} (this machine's $CLASSBENCH_DATA, else ./data) instead", stacklevel=2)
    return dataclasses.replace(data_cfg, root=None)


# ---------------------------------------------------------------- checkpoints from elsewhere
#: Bounds on what a checkpoint may claim about its input (a crafted file may claim anything).
MAX_CHECKPOINT_SIDE = 16384
MAX_CHECKPOINT_CLASSES = 100_000


def check_checkpoint_record(ckpt: dict, path: str | Path) -> None:
    """Refuse, with one CheckpointError line, a checkpoint whose description could not come from a run:
    input size not [3, H, W] with 1 <= H, W <= MAX_CHECKPOINT_SIDE; num_classes not in 1..MAX_CHECKPOINT_CLASSES;
    classes not that many strings; mean/std not 3 finite numbers (std > 0); model_name or config not text."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{plain_text(path)} is not a checkpoint classbench wrote: {what}. "
                               "It may be damaged or crafted; nothing was loaded from it.")

    if not isinstance(ckpt.get("model_name"), str):
        raise bad(f"model_name {_short(ckpt.get('model_name'))} is not text")
    n = ckpt.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHECKPOINT_CLASSES:
        raise bad(f"num_classes {_short(n)} is not an integer in 1..{MAX_CHECKPOINT_CLASSES}")
    classes = ckpt.get("classes")
    if classes is not None and (not isinstance(classes, (list, tuple)) or len(classes) != n
                                or not all(isinstance(c, str) for c in classes)):
        raise bad(f"classes is not a list of {n} names")
    inp = ckpt.get("input")
    if not isinstance(inp, dict):
        raise bad("input is not a mapping")
    size = inp.get("size")
    if (not isinstance(size, (list, tuple)) or len(size) != 3 or size[0] != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CHECKPOINT_SIDE for v in size[1:])):
        raise bad(f"input size {_short(size)} is not [3, H, W] with 1 <= H, W <= {MAX_CHECKPOINT_SIDE}")
    for key in ("mean", "std"):
        v = inp.get(key)
        if v is None:
            continue
        if (not isinstance(v, (list, tuple)) or len(v) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                or (key == "std" and not all(x > 0 for x in v))):
            raise bad(f"input {key} {_short(v)} is not 3 finite numbers" + (" above 0" if key == "std" else ""))
    if (inp.get("mean") is None) != (inp.get("std") is None):
        raise bad("input has a mean without a std, or a std without a mean")
    if not isinstance(ckpt.get("config"), str):
        raise bad("its stored config is not text")
    step = ckpt.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad(f"step {_short(step)} is not a non-negative integer")


def is_finished(run_dir: str | Path) -> bool:
    """status.json says finished and summary.json exists."""
    try:
        status = read_status(run_dir).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return status == FINISHED and RunFolder(run_dir).summary_json.is_file()


# ---------------------------------------------------------------- the config hash
def config_hash(cfg: Any) -> str:
    """A stable hash of a resolved config (a Config or its plain dict), without the keys that do not
    change results (:data:`HASH_EXCLUDED`)."""
    from .config import Config, to_dict

    d = to_dict(cfg) if isinstance(cfg, Config) else json.loads(json.dumps(cfg))
    for key in HASH_EXCLUDED:
        section, leaf = key.split(".")
        if isinstance(d.get(section), dict):
            d[section].pop(leaf, None)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_config_hash(run_dir: str | Path) -> str | None:
    """The hash of a run folder's config.yaml, or None when it has none or it does not load."""
    from .config import load_run_config

    try:
        return config_hash(load_run_config(run_dir, check=False))
    except (OSError, ClassbenchError):
        return None


# ---------------------------------------------------------------- checkpoints
def resolve_checkpoint(path: str | Path, kind: str = "best") -> Path:
    """A checkpoint file, or a run folder's checkpoints/<kind>.pt."""
    p = Path(path)
    if p.is_dir():
        cand = RunFolder(p).checkpoint(kind)
        if not cand.exists():
            raise CheckpointError(
                f"{p} is a folder but holds no {checkpoint_rel(kind)}; give a run folder of a run that "
                "saved a checkpoint, or the .pt file itself."
            )
        return cand
    if not p.exists():
        raise CheckpointError(f"Checkpoint {p} does not exist.")
    return p


# ---------------------------------------------------------------- stored test outcomes
# What best.pt made of the test split, written at the end of a run and published in records: whether it got each
# image right (McNemar's test pairs two runs image by image: classbench.compare.comparison), the confusion
# matrix (per-class accuracy), and the calibration bins (ECE and the reliability diagram).  Plain JSON, because
# a record is published: nothing names a class per image (the labels are the dataset's; a predicted class per
# image gives away the label of every image the model got right), and no per-image array of numbers sits in
# the repo looking like data.  The labels' digest proves that two runs were scored on the same images in the
# same order.  Older run folders hold test_predictions.npz instead; it is still read, and copy_record
# publishes it in this format.
TEST_OUTCOMES_FORMAT = "classbench test outcomes 1"
#: Equal-width confidence bins of the stored calibration: (k/B, (k+1)/B], the first also holding 0.  15, as in
#: Guo et al., "On Calibration of Modern Neural Networks" (2017).
CALIBRATION_BINS = 15
#: The arrays of the older .npz formats that name a class per image: ``pred`` and (before 2026-12-03) ``target``.
TEST_PREDICTIONS_LEGACY = ("pred", "target")


def labels_digest(labels) -> str:
    """sha256 of the labels as little-endian int64: the identity of a scored image sequence."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(np.asarray(labels).reshape(-1), dtype="<i8").tobytes()).hexdigest()


def confusion_matrix(pred, target, num_classes: int):
    """(counts[true class, predicted class], other[true class]) as int64: ``other`` counts the predictions
    outside 0..num_classes-1, which a head with more outputs than the dataset has classes can make (seed
    002's ResNets keep 1000).  ValueError for a label outside the classes."""
    import numpy as np

    n = int(num_classes)
    pred = np.asarray(pred).astype(np.int64, copy=False).reshape(-1)
    target = np.asarray(target).astype(np.int64, copy=False).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"{pred.size} predictions for {target.size} labels")
    if target.size and (target.min() < 0 or target.max() >= n):
        raise ValueError(f"labels outside 0..{n - 1}")
    inside = (pred >= 0) & (pred < n)
    conf = np.bincount(target[inside] * n + pred[inside], minlength=n * n).reshape(n, n)
    return conf, np.bincount(target[~inside], minlength=n).astype(np.int64)


def calibration_bins(confidence, correct, bins: int = CALIBRATION_BINS) -> dict:
    """``{"count", "confidence_sum", "correct"}`` per equal-width confidence bin (k/B, (k+1)/B], the first
    also holding 0: all that expected calibration error and a reliability diagram need
    (classbench.compare.stats.calibration).  ``confidence`` is the probability the model gave its
    predicted class.  ValueError for unequal lengths, no images, or a confidence outside [0, 1]."""
    import numpy as np

    conf = np.asarray(confidence, dtype=float).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != ok.shape or conf.size == 0:
        raise ValueError(f"{conf.size} confidences for {ok.size} outcomes")
    if not np.all(np.isfinite(conf)) or np.any((conf < 0) | (conf > 1)):
        raise ValueError("confidences must be probabilities in [0, 1]")
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return {"count": np.bincount(idx, minlength=bins), "confidence_sum": np.bincount(idx, weights=conf, minlength=bins),
            "correct": np.bincount(idx, weights=ok, minlength=bins).astype(np.int64)}


def _outcomes(pred, target, confidence, num_classes: int) -> dict:
    """The test outcomes (as :func:`read_test_outcomes` gives them) of predictions with their true labels."""
    import numpy as np

    pred, target = np.asarray(pred, dtype=np.int64).reshape(-1), np.asarray(target, dtype=np.int64).reshape(-1)
    conf, other = confusion_matrix(pred, target, num_classes)
    out = {"correct": pred == target, "labels_sha256": labels_digest(target), "confusion": conf, "confusion_other": other}
    if confidence is not None:
        out["calibration"] = calibration_bins(confidence, out["correct"])
    return out


def _outcomes_json(out: dict) -> bytes:
    """The file of :func:`write_test_outcomes`: one key a line, so a record's diff stays readable."""
    import base64

    import numpy as np

    correct = np.asarray(out["correct"], dtype=bool)
    doc: dict[str, Any] = {"format": TEST_OUTCOMES_FORMAT, "images": int(correct.size),
                           "labels_sha256": str(out["labels_sha256"]),
                           "correct_bits": base64.b64encode(np.packbits(correct, bitorder="little").tobytes()).decode()}
    if "confusion" in out:
        doc["confusion"] = np.asarray(out["confusion"]).tolist()
        if np.asarray(out["confusion_other"]).any():  # only a head with more outputs than the dataset has classes
            doc["confusion_other"] = np.asarray(out["confusion_other"]).tolist()
    if "calibration" in out:
        doc["calibration"] = {k: np.asarray(v).tolist() for k, v in out["calibration"].items()}
    lines = [f"{json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}" for k, v in doc.items()]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def write_test_outcomes(run_dir: str | Path, pred, target, confidence, num_classes: int) -> Path:
    """Store best.pt's test outcomes atomically (:data:`TEST_OUTCOMES`, JSON): ``images``; ``labels_sha256``
    (:func:`labels_digest` of ``target``); ``correct_bits``, whether each image in split order was right
    (``numpy.packbits``, little bit order, base64); ``confusion`` (counts[true class, predicted class]);
    ``confusion_other`` (per true class, only when some prediction is outside the classes: see
    :func:`confusion_matrix`); and ``calibration`` (:func:`calibration_bins`, when ``confidence`` is given).
    Neither ``pred`` nor ``target`` is stored."""
    from .io import atomic_write_bytes

    path = RunFolder(run_dir).test_outcomes
    atomic_write_bytes(path, _outcomes_json(_outcomes(pred, target, confidence, num_classes)))
    return path


def _load_npz(path: Path) -> dict:
    """The arrays of an .npz file, without pickles."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ClassbenchError(f"{plain_text(path)} is damaged ({e}); delete it (the run then counts as one without "
                              "stored test outcomes).") from e


def _int_array(value: Any, shape_ok) -> Any:
    """``value`` (JSON) as an int64 array when it is a list of non-negative integers of an accepted shape."""
    import numpy as np

    try:
        a = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if a.dtype.kind not in "iu" or not shape_ok(a.shape) or (a < 0).any():
        return None
    return a.astype(np.int64)


def _read_outcomes_json(path: Path) -> dict:
    import base64
    import binascii

    import numpy as np

    def damaged(what: str) -> ClassbenchError:
        return ClassbenchError(f"{plain_text(path)} is damaged ({what}); delete it (the run then counts as one "
                               "without stored test outcomes).")

    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise damaged(f"not JSON: {_short(str(e), 60)}") from None
    if not isinstance(doc, dict) or doc.get("format") != TEST_OUTCOMES_FORMAT:
        raise damaged(f"its format is not {TEST_OUTCOMES_FORMAT!r}")
    n, digest, bits = doc.get("images"), doc.get("labels_sha256"), doc.get("correct_bits")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or not isinstance(digest, str) or not isinstance(bits, str):
        raise damaged("it lacks 'images', 'labels_sha256' or 'correct_bits'")
    try:
        packed = np.frombuffer(base64.b64decode(bits, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        raise damaged("'correct_bits' is not base64") from None
    if packed.size != (n + 7) // 8:
        raise damaged(f"'correct_bits' holds {packed.size} bytes for {n} images")
    out: dict[str, Any] = {"correct": np.unpackbits(packed, bitorder="little")[:n].astype(bool), "labels_sha256": digest}
    if "confusion" in doc:
        conf = _int_array(doc["confusion"], lambda s: len(s) == 2 and s[0] == s[1])
        other = _int_array(doc.get("confusion_other", [0] * len(conf if conf is not None else [])),
                           lambda s: conf is not None and s == (len(conf),))
        if conf is None or other is None:
            raise damaged("'confusion' is not a square matrix of counts with a count per class in 'confusion_other'")
        out["confusion"], out["confusion_other"] = conf, other
    if "calibration" in doc:
        cal = doc["calibration"] if isinstance(doc["calibration"], dict) else {}
        count = _int_array(cal.get("count"), lambda s: len(s) == 1 and s[0] > 0)
        hits = _int_array(cal.get("correct"), lambda s: count is not None and s == count.shape)
        try:
            sums = np.asarray(cal.get("confidence_sum"), dtype=float)
        except (ValueError, TypeError):
            sums = None
        if (count is None or hits is None or sums is None or sums.shape != count.shape or not np.isfinite(sums).all()
                or (hits > count).any() or (sums < 0).any() or (sums > count).any()):
            raise damaged("'calibration' is not per-bin counts, correct counts and confidence sums")
        out["calibration"] = {"count": count, "confidence_sum": sums, "correct": hits}
    return out


def _read_legacy_npz(path: Path) -> dict:
    """An older run folder's test_predictions.npz in the shape of :func:`read_test_outcomes`; its ``pred``
    (and ``target``) kept as they are, for copy_record to publish without them."""
    import numpy as np

    out = _load_npz(path)
    pred, target = out.get("pred"), out.get("target")
    if isinstance(pred, np.ndarray) and isinstance(target, np.ndarray) and target.shape == pred.shape:
        out.setdefault("correct", pred == target)
        out.setdefault("labels_sha256", np.array(labels_digest(target)))
    correct, digest = out.get("correct"), out.get("labels_sha256")
    if (not isinstance(correct, np.ndarray) or correct.ndim != 1 or correct.dtype != bool
            or (pred is not None and (not isinstance(pred, np.ndarray) or pred.shape != correct.shape))
            or not isinstance(digest, np.ndarray) or digest.shape != () or digest.dtype.kind != "U"):
        raise ClassbenchError(f"{plain_text(path)} lacks a 'correct' array and a 'labels_sha256' digest; delete it.")
    out["labels_sha256"] = str(digest)
    if "confusion" in out:
        out.setdefault("confusion_other", np.zeros(out["confusion"].shape[0] if out["confusion"].ndim else 0, dtype=np.int64))
    if "confidence" in out:
        try:
            out["calibration"] = calibration_bins(out.pop("confidence"), correct)
        except ValueError as e:
            raise ClassbenchError(f"{plain_text(path)} is damaged ({e}); delete it.") from None
    return out


def test_outcomes_path(run_dir: str | Path) -> Path | None:
    """The run's stored test outcomes: :data:`TEST_OUTCOMES`, else an older folder's
    :data:`TEST_PREDICTIONS_NPZ`; None when it has neither."""
    folder = RunFolder(run_dir)
    return next((p for p in (folder.test_outcomes, folder.legacy_test_predictions) if p.is_file()), None)


def read_test_outcomes(run_dir: str | Path) -> dict[str, Any] | None:
    """``{"correct", "labels_sha256"[, "confusion", "confusion_other"][, "calibration"]}``, or None for a run
    without stored test outcomes (:func:`test_outcomes_path`).

    ``labels_sha256`` is a str; ``correct`` a bool array in split order; ``confusion`` a square int64 matrix
    and ``confusion_other`` the predictions outside the classes per true class (zeros when there are none):
    together they count every image, and the diagonal the correct ones; ``calibration`` the
    :func:`calibration_bins`, which count every image.  An older .npz also gives its ``pred`` (and, before
    2026-12-03, ``target``, from which ``correct`` and the digest are derived).  Raises ClassbenchError,
    in one line, if the file is damaged."""
    import numpy as np

    path = test_outcomes_path(run_dir)
    if path is None:
        return None
    out = _read_outcomes_json(path) if path.name == TEST_OUTCOMES else _read_legacy_npz(path)
    correct, conf = out["correct"], out.get("confusion")
    if conf is not None:
        other = out["confusion_other"]
        if (conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.dtype.kind not in "iu"
                or other.shape != (len(conf),) or other.dtype.kind not in "iu"
                or (conf < 0).any() or (other < 0).any() or int(conf.sum() + other.sum()) != correct.size
                or int(np.trace(conf)) != int(correct.sum())):
            raise ClassbenchError(f"{plain_text(path)}: its confusion matrix does not count its {correct.size} "
                                  "outcomes (damaged); delete it.")
    cal = out.get("calibration")
    if cal is not None and (int(cal["count"].sum()) != correct.size or int(cal["correct"].sum()) != int(correct.sum())):
        raise ClassbenchError(f"{plain_text(path)}: its calibration bins do not count its {correct.size} outcomes "
                              "(damaged); delete it.")
    return out


def published_test_outcomes(run_dir: str | Path, labels=None) -> bytes | None:
    """The :data:`TEST_OUTCOMES` file that a record of ``run_dir`` holds when the run has an older
    test_predictions.npz instead; None when it has none.

    The confusion matrix needs the true labels: the file's own (before 2026-12-03), else ``labels(run_dir)``
    (the dataset's, or None when they are not on this machine), used only when they match the stored digest.
    Without them the record keeps what was right, the calibration and the digest, and has no per-class
    counts."""
    folder = RunFolder(run_dir)
    if folder.test_outcomes.is_file() or not folder.legacy_test_predictions.is_file():
        return None
    stored = read_test_outcomes(run_dir)
    target = stored.get("target")
    if target is None and "pred" in stored and labels is not None:
        target = labels(run_dir)
        if target is not None and (len(target) != stored["correct"].size
                                   or labels_digest(target) != stored["labels_sha256"]):
            target = None
    try:
        summary = read_summary(run_dir)
    except (OSError, ValueError):
        summary = None
    n_cls = summary.get("num_classes") if isinstance(summary, dict) else None
    if target is not None and "pred" in stored and isinstance(n_cls, int) and not isinstance(n_cls, bool):
        stored.update({k: v for k, v in _outcomes(stored["pred"], target, None, n_cls).items() if k != "labels_sha256"})
    return _outcomes_json(stored)


# ---------------------------------------------------------------- records: a finished run without its weights
# A record is what a reader needs to check a published number with the tool itself (summary, compare, plot):
# config, env, status, metrics, summary, test predictions and any other small file of the run, laid out as
# <dest>/<dataset>/<config name>/<stamp>/.  It never holds model weights (large, and no table reads them).
#: File endings of model weights: left out wherever they are, besides the whole checkpoints/ folder.
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".onnx")
RECORD_COPIED, RECORD_SAME = "copied", "same"


def record_files(run_dir: str | Path) -> list[Path]:
    """The files of ``run_dir``'s record, relative to it, sorted: every regular file except the checkpoints
    folder, weight files (:data:`WEIGHT_SUFFIXES`), hidden files (the writer lock, half-written temp files)
    and symlinks (a shared folder's link could point anywhere).  An older run's test_predictions.npz is
    listed as the :data:`TEST_OUTCOMES` that the record holds instead (:func:`published_test_outcomes`)."""
    root = Path(run_dir)
    out = []
    for dirpath, dirnames, files in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here == root and d == CHECKPOINTS))
        for f in files:
            p = here / f
            if f.startswith(".") or f.lower().endswith(WEIGHT_SUFFIXES) or p.is_symlink() or not p.is_file():
                continue
            out.append(p.relative_to(root))
    if Path(TEST_PREDICTIONS_NPZ) in out:
        out.remove(Path(TEST_PREDICTIONS_NPZ))
        out = [p for p in out if p != Path(TEST_OUTCOMES)] + [Path(TEST_OUTCOMES)]
    return sorted(out)


def _path_part(value: Any, what: str, run_dir: Path) -> str:
    """``value`` as one folder name of a record's path; a crafted config must not place a record elsewhere."""
    text = value if isinstance(value, str) else ""
    if not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text or _CONTROL.search(text):
        raise ClassbenchError(f"{plain_text(run_dir)}: its {what} {_short(value)} cannot be a folder name; "
                              "cannot record this run.")
    return text


def record_path(run_dir: str | Path, dest: str | Path) -> Path:
    """Where ``run_dir``'s record goes: ``dest/<data.name>/<config name>/<run folder name>``."""
    from .config import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, check=False)
    return (Path(dest) / _path_part(cfg.data.name, "data.name", run_dir) / _path_part(cfg.name, "name", run_dir)
            / _path_part(run_dir.resolve().name, "folder name", run_dir))


def _recorded_bytes(run_dir: Path, rel: Path, labels=None) -> bytes | None:
    """What a record holds for ``rel`` when it is not a copy of the run's file: the test outcomes of an older
    run, made from its test_predictions.npz (:func:`published_test_outcomes`; ClassbenchError when that file
    is damaged, so that no damaged file is published).  None: copy the file."""
    if rel != Path(TEST_OUTCOMES) or (run_dir / rel).is_file():
        return None
    return published_test_outcomes(run_dir, labels)


def _same_file(run_dir: Path, rel: Path, record: Path, labels=None) -> bool:
    import filecmp

    rewritten = _recorded_bytes(run_dir, rel, labels)
    if rewritten is None:
        return filecmp.cmp(run_dir / rel, record / rel, shallow=False)
    try:
        return (record / rel).read_bytes() == rewritten
    except OSError:
        return False


def _same_record(run_dir: Path, files: list[Path], record: Path, labels=None) -> bool:
    have = sorted(p.relative_to(record) for p in record.rglob("*") if p.is_file() or p.is_symlink())
    return have == files and all(_same_file(run_dir, f, record, labels) for f in files)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def copy_record(run_dir: str | Path, dest: str | Path, labels=None) -> tuple[Path, str]:
    """Copy a finished run's record (:func:`record_files`) to :func:`record_path`; returns (record, what happened):
    :data:`RECORD_COPIED`, or :data:`RECORD_SAME` when an identical record is already there.

    Atomic: the files are copied (and fsync'd) into a hidden temporary folder beside the record, which is then
    renamed into place, so a record is complete or absent (readers skip hidden folders).  A record that exists
    with other contents is never overwritten (ClassbenchError); neither is an unfinished run recorded.  An older
    run's test_predictions.npz is published as :data:`TEST_OUTCOMES`, without a class per image; ``labels(run_dir)`` gives the
    dataset's test labels for their confusion matrix (see :func:`published_test_outcomes`)."""
    import shutil
    import tempfile

    from .io import _umask as io_umask

    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise ClassbenchError(f"{plain_text(run_dir)} has not finished (no {STATUS} saying {FINISHED} with a "
                              f"{SUMMARY}); only finished runs are recorded.")
    record = record_path(run_dir, dest)
    files = record_files(run_dir)
    if record.exists():
        if _same_record(run_dir, files, record, labels):
            return record, RECORD_SAME
        raise ClassbenchError(f"{plain_text(record)} already holds a different record of {plain_text(run_dir)}; "
                              "it was left as it is. Delete it first if the run has really changed.")
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=record.parent, prefix=f".{record.name}.", suffix=".tmp"))
    except OSError as e:
        raise ClassbenchError(f"Cannot create the record {plain_text(record)}: {e.strerror or e}.") from None
    try:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            rewritten = _recorded_bytes(run_dir, rel, labels)
            if rewritten is None:
                shutil.copy2(run_dir / rel, tmp / rel)
            else:
                (tmp / rel).write_bytes(rewritten)
            _fsync(tmp / rel)
        os.chmod(tmp, 0o777 & ~io_umask())  # mkdtemp makes 0700; give the record the mode mkdir would
        os.rename(tmp, record)  # fails if a record appeared meanwhile (a non-empty folder is never replaced)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if record.exists() and _same_record(run_dir, files, record, labels):
            return record, RECORD_SAME
        raise ClassbenchError(f"Cannot record {plain_text(run_dir)} at {plain_text(record)}: {e.strerror or e}. "
                              "Nothing was written there.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(record.parent)
    return record, RECORD_COPIED
