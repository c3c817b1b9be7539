"""Sweeps: every config times every combination of ``--set`` values (and seeds), one run each.

``classbench sweep A.yaml B.yaml --set optim.lr=0.05,0.1 train.steps=20 --seeds 3`` plans
twelve runs (2 configs x 2 learning rates x seeds 0, 1, 2, each with ``train.steps=20``), runs
each as its own ``python -m classbench train`` process, then prints ``classbench summary`` of
the runs folder.  ``--launcher slurm`` submits the same plan as a Slurm job array instead
(:mod:`classbench.drivers.slurm`).

* Values are split on commas outside brackets, braces and quotes, so
  ``eval.splits=[val,test]`` and ``model.args={width: 8, depth: 2}`` stay one
  value; a token without a comma is one value for every run.
* ``--seeds N`` is ``--set train.seed=0,1,...,N-1``.  It varies only the training seed:
  ``data.split_seed`` stays as configured, so every seed is scored on the same val and test images.
* Run names carry the swept values, except the seed: ``--set optim.lr=0.05,0.1 --seeds 2`` makes
  runs named ``resnet20-lr=0.05`` (two seeds) and ``resnet20-lr=0.1`` (two seeds), so that the
  seeds of one recipe share a name and form one arm of the comparison.  ``--name NAME`` (or
  ``--set name=NAME``) replaces the config's name as the first part.
* Every combination is resolved (and validated) before anything runs: a typo
  fails the whole sweep at once, naming the combination.
* A run is identified by :func:`~classbench.runfolder.config_hash`.  A rerun skips every
  combination that already has a finished run with the same hash (unless ``force``), and
  resumes, from its ``last.pt``, every one whose run stopped half way (interrupted, crashed,
  killed with the sweep).  A run that is still training is left alone, never started twice.
* ``jobs > 1`` runs several at once: CPU threads are divided among them (``train.threads``),
  on CPU and on GPUs alike (a GPU run's loader and host work need cores too), and, with CUDA,
  ``CUDA_VISIBLE_DEVICES`` is assigned round-robin over the visible GPUs.
* The sweep learns where each child's run went through the run-folder channel
  (``$CLASSBENCH_RUN_DIR_FILE``, see :mod:`classbench.runfolder`) and how it ended from its
  ``status.json``, not from the child's output.
* A child dies with the sweep, even when the sweep is SIGKILLed: it is started with
  ``PR_SET_PDEATHSIG`` = SIGTERM, so it saves ``last.pt`` and stops; the rerun resumes it.
* A failed run is reported (its overrides, exit status and the last lines of
  its stderr) and does not stop the others; the sweep then exits with status 1.
  Each run's stdout and stderr are kept in ``<runs_dir>/.sweep/<stamp>/``; the last lines of
  stderr are also kept in memory, so a full disk still gets its error shown.
* Ctrl-C or SIGTERM stops the sweep: no new run starts, the running ones get
  SIGTERM (they save ``last.pt``), and the sweep exits with status 130.  A run that this
  SIGTERM kills before it can catch it (in torch's import) counts as interrupted, not failed.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import runfolder
from ..config import Config, load_config, parse_override
from ..errors import ConfigError
from ..runfolder import HASH_EXCLUDED, config_hash, is_finished, run_config_hash  # noqa: F401 - the run-folder module owns them

STDERR_TAIL = 12
SEED_KEY = "train.seed"
NAME_KEY = "name"
MAX_NAME = 120  # characters of a run name (it is a folder name too)


# ---------------------------------------------------------------- planning
def split_values(text: str) -> list[str]:
    """Split on commas that are outside brackets, braces, parentheses and quotes."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "[{(":
            depth += 1
            cur.append(ch)
        elif ch in "]})":
            depth = max(0, depth - 1)
            cur.append(ch)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_sets(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """``["optim.lr=0.05,0.1", "train.steps=20"]`` -> ``[("optim.lr", ["0.05", "0.1"]), ("train.steps", ["20"])]``."""
    sets: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for token in tokens:
        if "=" not in token:
            raise ConfigError(
                f"--set {token!r} is not of the form key=v1,v2,... (give the configs before --set, e.g. "
                "`classbench sweep configs/cifar10/resnet20.yaml --set optim.lr=0.05,0.1`)."
            )
        key, raw = token.split("=", 1)
        key = key.strip()
        parse_override(f"{key}=0")  # checks the key's shape
        if key in seen:
            raise ConfigError(f"--set gives {key} twice; list all its values once: {key}=v1,v2,...")
        seen.add(key)
        values = split_values(raw)
        if any(v == "" for v in values) and len(values) > 1:
            raise ConfigError(f"--set {token!r} has an empty value between commas.")
        sets.append((key, values))
    return sets


def add_seeds(sets: list[tuple[str, list[str]]], seeds: int | None) -> list[tuple[str, list[str]]]:
    """``--seeds N``: the sets plus ``train.seed=0,...,N-1``."""
    if seeds is None:
        return sets
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    if any(k == SEED_KEY for k, _ in sets):
        raise ConfigError(f"Give either --seeds N or --set {SEED_KEY}=..., not both.")
    return [*sets, (SEED_KEY, [str(s) for s in range(seeds)])]


def _name_part(text: str) -> str:
    """A value as a piece of a folder name: letters, digits and ``._+=-`` kept, the rest becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_") or "_"


def _short_key(key: str) -> str:
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def run_name(base: str, swept: list[tuple[str, str]]) -> str:
    """``resnet20`` + ``[("optim.lr", "0.1"), ("model.name", "vgg11")]`` -> ``resnet20-lr=0.1-model=vgg11``.

    Keys are shortened to their last part (``<section>.name`` to the section, since "name=" alone
    says nothing) unless two swept keys share it.  A name too long for a folder keeps its start and
    ends with a hash of the whole."""
    leaves = [_short_key(k) for k, _ in swept]
    parts = [f"{leaf if leaves.count(leaf) == 1 else key}={_name_part(v)}"
             for (key, v), leaf in zip(swept, leaves)]
    name = "-".join([base, *parts])
    if len(name) > MAX_NAME:
        import hashlib

        name = name[:MAX_NAME - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


@dataclass
class Job:
    index: int
    config: str
    overrides: list[str]  # the sweep's key=value for this run (name and train.runs_dir included)
    label: str
    cfg: Config
    hash: str
    extra: list[str] = field(default_factory=list)  # added at launch: train.threads=...
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.name


def plan(configs: list[str], sets: list[tuple[str, list[str]]], runs_dir: str | None = None,
         *, seeds: int | None = None, name: str | None = None) -> list[Job]:
    """Resolve every (config, combination); duplicates (same hash) are dropped.

    Each run is named after its config (or ``name``) plus the values swept, except the seed."""
    if not configs:
        raise ConfigError("Give at least one config, e.g. `classbench sweep configs/cifar10/resnet20.yaml --set optim.lr=0.05,0.1`.")
    sets = add_seeds(sets, seeds)
    if name is not None:
        if any(k == NAME_KEY for k, _ in sets):
            raise ConfigError("Give either --name NAME or --set name=..., not both.")
        sets = [(NAME_KEY, [name]), *sets]
    varying = [k for k, vs in sets if len(vs) > 1]
    in_name = [k for k in varying if k not in (SEED_KEY, NAME_KEY)]
    jobs: list[Job] = []
    seen: set[str] = set()
    for config in configs:
        for combo in itertools.product(*(vs for _, vs in sets)):
            overrides = [f"{k}={v}" for (k, _), v in zip(sets, combo)]
            if runs_dir is not None:
                overrides.append(f"train.runs_dir={runs_dir}")
            try:
                cfg = load_config(config, overrides)
                swept = [(k, v) for (k, _), v in zip(sets, combo) if k in in_name]
                if swept:
                    overrides = [o for o in overrides if not o.startswith(f"{NAME_KEY}=")]
                    overrides.insert(0, f"{NAME_KEY}={run_name(cfg.name, swept)}")
                    cfg = load_config(config, overrides)
            except ConfigError as e:
                raise ConfigError(f"Sweep run {config} {' '.join(overrides)}: {e}") from None
            h = config_hash(cfg)
            if h in seen:
                continue
            seen.add(h)
            seed = f" seed={cfg.train.seed}" if SEED_KEY in varying else ""
            jobs.append(Job(len(jobs) + 1, str(config), overrides, cfg.name + seed, cfg, h))
    return jobs


# ---------------------------------------------------------------- finding earlier runs
def finished_runs(runs_dir: str | Path) -> dict[str, Path]:
    """config hash -> the latest finished run folder under ``runs_dir`` with that config."""
    root = Path(runs_dir)
    if not root.is_dir():
        return {}
    out: dict[str, Path] = {}
    for path in runfolder.discover(root):  # sorted: a later run folder of the same config wins
        if is_finished(path):
            h = run_config_hash(path)
            if h is not None:
                out[h] = path
    return out


@dataclass
class Earlier:
    """What a runs folder already holds for one config hash."""

    finished: Path | None = None
    resumable: Path | None = None  # stopped half way, with a last.pt
    live: Path | None = None  # still training (its process is alive)
    live_pid: int | None = None


def earlier_runs(runs_dirs: list[str | Path]) -> dict[str, Earlier]:
    """config hash -> the finished, resumable and live run folders of that config (the latest of each)."""
    from ..compare.runs import load_run

    out: dict[str, Earlier] = collections.defaultdict(Earlier)
    for d in sorted({str(d) for d in runs_dirs}):
        if not Path(d).is_dir():
            continue
        for path in runfolder.discover(d):
            h = run_config_hash(path)
            if h is None:
                continue
            e = out[h]
            if is_finished(path):
                e.finished = path
                continue
            status = load_run(path).status  # "running" only while its process lives; a dead one is "crashed"
            if status == runfolder.RUNNING:
                e.live, e.live_pid = path, (runfolder.read_status(path) or {}).get("pid")
            elif runfolder.RunFolder(path).last_pt.is_file():
                e.resumable = path
    return dict(out)


# ---------------------------------------------------------------- one child process
def _parent_death_signal():
    """A preexec_fn that makes the child get SIGTERM when the sweep dies, however it dies.

    Linux's ``prctl(PR_SET_PDEATHSIG)`` survives exec; SIGTERM lets the trainer save ``last.pt``.
    libc is loaded here, in the parent: the child between fork and exec must not import anything.
    Elsewhere (no prctl) children are still stopped by a sweep that ends normally."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the sweep died between fork and prctl
            os._exit(143)

    return preexec


@dataclass
class ChildResult:
    returncode: int
    run_dir: Path | None
    status: str | None  # what the run's status.json says at the end, None without a run folder
    stderr_tail: list[str]
    log_problem: str | None = None  # why the logs could not be written, if they could not


def run_child(cmd: list[str], env: dict[str, str], log_base: Path | None, run_dir_file: Path,
              started=None, on_run_dir=None) -> ChildResult:
    """Run one ``classbench train`` child to its end.

    Its stdout and stderr go through pipes: the parent writes them to ``<log_base>.out``/``.err``
    as well as it can and keeps stderr's last lines in memory, so a full disk cannot swallow the
    error that explains it.  ``started(proc)`` is called once the child runs, ``on_run_dir(path)``
    as soon as the child has announced its run folder."""
    env = {**env, runfolder.RUN_DIR_FILE_ENV: str(run_dir_file)}
    try:
        run_dir_file.unlink(missing_ok=True)
    except OSError:
        pass
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, preexec_fn=_parent_death_signal())
    if started is not None:
        started(proc)
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    problems: list[str] = []

    def pump(stream, suffix: str, keep: bool) -> None:
        sink = None
        if log_base is not None:
            try:
                sink = open(f"{log_base}{suffix}", "wb")
            except OSError as e:
                problems.append(f"{log_base}{suffix}: {e.strerror or e}")
        for raw in iter(stream.readline, b""):
            if keep:
                tail.append(raw.decode(errors="replace").rstrip("\n"))
            if sink is not None:
                try:
                    sink.write(raw)
                    sink.flush()
                except OSError as e:
                    problems.append(f"{log_base}{suffix}: {e.strerror or e}")
                    sink = None
        stream.close()
        if sink is not None:
            try:
                sink.close()
            except OSError as e:
                problems.append(f"{log_base}{suffix}: {e.strerror or e}")

    def watch() -> None:  # the run folder, as soon as the child says where it is
        while proc.poll() is None:
            announced = runfolder.read_announced_run_dir(run_dir_file)
            if announced is not None:
                on_run_dir(announced)
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=pump, args=(proc.stdout, ".out", False), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, ".err", True), daemon=True)]
    if on_run_dir is not None:
        threads.append(threading.Thread(target=watch, daemon=True))
    for t in threads:
        t.start()
    code = proc.wait()
    for t in threads:
        t.join()
    run_dir = runfolder.read_announced_run_dir(run_dir_file)
    try:
        run_dir_file.unlink(missing_ok=True)
    except OSError:
        pass
    status = None
    if run_dir is not None:
        try:
            status = (runfolder.read_status(run_dir) or {}).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
    return ChildResult(code, run_dir, status, list(tail), problems[0] if problems else None)


def outcome(child: ChildResult, stopped: bool) -> str:
    """finished | interrupted | failed, from the run's status.json (the exit status only without a run)."""
    our_sigterm = stopped and child.returncode == -signal.SIGTERM  # this sweep's stop, before the run caught it
    if child.status == runfolder.FINISHED and (child.returncode == 0 or our_sigterm):
        return "finished"  # (this sweep's SIGTERM can land after the run wrote its summary, while it exits)
    if child.status == runfolder.INTERRUPTED:
        return "interrupted"
    if child.status is None and (stopped or child.returncode in (130, -signal.SIGINT, -signal.SIGTERM, 143)):
        return "interrupted"  # stopped before its run folder existed: nothing to resume, nothing lost
    if our_sigterm and child.status == runfolder.RUNNING:
        return "interrupted"  # killed in its first writes: nothing it trained is lost; a rerun starts or resumes it
    return "failed"


def train_command(job: Job, resume_dir: Path | None) -> list[str]:
    """The child's command line: a fresh run of the job, or the resume of its earlier run folder.

    A resume keeps the run's stored config, except the keys that do not change results
    (:data:`HASH_EXCLUDED`): those follow this sweep.  So a run first launched by ``--jobs 2`` (one thread)
    and resumed by ``--jobs 1`` trains on every core, and this sweep's ``--set train.threads=N`` or
    ``train.checkpoint_every=N`` reaches the runs it resumes."""
    base = [sys.executable, "-m", "classbench", "train"]
    if resume_dir is not None:
        kept = [o for o in job.overrides if o.split("=", 1)[0] in HASH_EXCLUDED and not o.startswith("train.runs_dir=")]
        if job.cfg is not None:  # a Slurm task has no resolved config: its extra gives the task's CPUs
            kept.insert(0, f"train.threads={job.cfg.train.threads}")
        return [*base, "--resume", str(resume_dir), *kept, *job.extra]
    return [*base, job.config, *job.overrides, *job.extra]


# ---------------------------------------------------------------- running
@dataclass
class Result:
    job: Job
    status: str  # finished | skipped | resumed... see STATUS_ORDER
    returncode: int | None = None
    run_dir: Path | None = None
    seconds: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)
    log: Path | None = None
    resumed: bool = False
    log_problem: str | None = None


STATUS_ORDER = ("finished", "skipped", "running elsewhere", "failed", "interrupted", "not started")


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA, no GPUs
        return []


def assign_resources(jobs: list[Job], n_jobs: int) -> list[str]:
    """Threads per run and the GPU list to cycle over; sets ``job.extra``. Returns the GPUs.

    With several runs at once the cores are divided among them whether they train on CPU or on
    a GPU: a GPU run still uses host threads (batches, evaluation, torch's intra-op pool), and
    N runs of all cores each on one machine slow every one of them down."""
    from ..train.precision import default_threads

    gpus = _visible_gpus() if n_jobs > 1 else []
    threads = max(1, default_threads() // n_jobs)
    for job in jobs:
        if n_jobs > 1 and job.cfg.train.threads == 0:
            job.extra = [f"train.threads={threads}"]
    return gpus


class Sweep:
    def __init__(self, jobs: list[Job], *, n_jobs: int = 1, force: bool = False, out=None) -> None:
        if n_jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {n_jobs}.")
        self.jobs, self.n_jobs, self.force = jobs, n_jobs, force
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stop = threading.Event()
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self._resume: dict[int, Path] = {}

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def run(self) -> list[Result]:
        earlier = earlier_runs([j.cfg.train.runs_dir for j in self.jobs])
        results: dict[int, Result] = {}
        todo = []
        n = len(self.jobs)
        for job in self.jobs:
            e = earlier.get(job.hash, Earlier())
            if e.finished is not None and not self.force:
                results[job.index] = Result(job, "skipped", run_dir=e.finished)
                self.say(f"[{job.index}/{n}] skip {job.label}: finished in {e.finished}")
            elif e.live is not None:
                results[job.index] = Result(job, "running elsewhere", run_dir=e.live)
                self.say(f"[{job.index}/{n}] skip {job.label}: still training in {e.live} (pid {e.live_pid}); "
                         "not started a second time")
            else:
                if e.resumable is not None and (e.finished is None or not self.force):
                    self._resume[job.index] = e.resumable
                todo.append(job)
        gpus = assign_resources(todo, self.n_jobs)
        slots: queue.Queue[int] = queue.Queue()
        for s in range(self.n_jobs):
            slots.put(s)
        pool = ThreadPoolExecutor(max_workers=self.n_jobs)
        futures = [pool.submit(self._run_one, job, slots, gpus) for job in todo]
        old_term = None
        if threading.current_thread() is threading.main_thread():  # SIGTERM stops the sweep as Ctrl-C does
            old_term = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            for f in futures:
                r = f.result()
                results[r.job.index] = r
        except KeyboardInterrupt:
            self._stop.set()
            self.say("sweep: interrupted; waiting for the running trainings to save a checkpoint and stop")
            with self._lock:
                for p in self._running:  # (a terminal's Ctrl-C may have reached them already: harmless)
                    _signal(p, signal.SIGTERM)  # saves last.pt once training runs; ends a starting one at once
            self.say(f"sweep: run the same sweep again to resume the interrupted runs from their {runfolder.LAST_PT}")
            pool.shutdown(wait=True, cancel_futures=True)
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is None:
                    r = f.result()
                    results[r.job.index] = r
            for job in todo:
                results.setdefault(job.index, Result(job, "not started"))
        finally:
            pool.shutdown(wait=True)
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        return [results[j.index] for j in self.jobs]

    def _run_one(self, job: Job, slots: queue.Queue, gpus: list[str]) -> Result:
        if self._stop.is_set():
            return Result(job, "not started")
        slot = slots.get()
        try:
            if self._stop.is_set():
                return Result(job, "not started")
            return self._launch(job, slot, gpus)
        finally:
            slots.put(slot)

    def _log_dir(self, job: Job) -> tuple[Path, Path | None]:
        """The folder of the sweep's logs, and the run's log prefix (None when the folder cannot be made)."""
        logs = Path(job.cfg.train.runs_dir) / ".sweep" / self.stamp
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.say(f"[{job.index}/{len(self.jobs)}] cannot write logs to {logs}: {e.strerror or e}; "
                     "the last lines of stderr are kept in memory")
            return Path(job.cfg.train.runs_dir), None
        return logs, logs / f"{job.index:03d}-{_name_part(job.name)}"

    def _launch(self, job: Job, slot: int, gpus: list[str]) -> Result:
        logs, base = self._log_dir(job)
        env = dict(os.environ)
        env.update(job.env)
        on_gpu = bool(gpus) and job.cfg.train.device in ("auto", "cuda")  # cuda:N and cpu are left alone
        if on_gpu:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        resume_dir = self._resume.get(job.index)
        cmd = train_command(job, resume_dir)
        where = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if on_gpu else ""
        how = f"resume {job.label} from {resume_dir}" if resume_dir else f"start {job.label}"
        self.say(f"[{job.index}/{len(self.jobs)}] {how}{where}")

        def started(proc: subprocess.Popen) -> None:
            with self._lock:
                self._running.add(proc)
                if self._stop.is_set():  # the sweep was stopped while this one started
                    _signal(proc, signal.SIGTERM)

        channel = (logs if base is not None else Path(_tempdir())) / f".{job.index:03d}-{os.getpid()}.run_dir"
        t0 = time.perf_counter()
        child = None
        try:
            child = run_child(cmd, env, base, channel, started)
        finally:
            with self._lock:
                self._running = {p for p in self._running if p.poll() is None}
        seconds = time.perf_counter() - t0
        status = outcome(child, self._stop.is_set())
        run_dir = child.run_dir or resume_dir
        r = Result(job, status, child.returncode, run_dir, seconds, child.stderr_tail, base,
                   resumed=resume_dir is not None, log_problem=child.log_problem)
        if status == "finished":
            self.say(f"[{job.index}/{len(self.jobs)}] done  {job.label} in {seconds:.1f} s: {run_dir}")
        else:
            where = f"; log: {base}.err" if base is not None and not child.log_problem else ""
            self.say(f"[{job.index}/{len(self.jobs)}] {status.upper()} {job.label} (exit status {child.returncode}, "
                     f"after {seconds:.1f} s){where}")
        return r


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except OSError:
        pass


# ---------------------------------------------------------------- reporting
def report(results: list[Result], out=None) -> str:
    """The per-run outcome table and every failure's details."""
    lines = ["", f"sweep: {len(results)} runs: " + ", ".join(
        f"{sum(r.status == s for r in results)} {s}" for s in STATUS_ORDER if any(r.status == s for r in results))]
    for r in results:
        where = str(r.run_dir) if r.run_dir else (f"exit status {r.returncode}" if r.returncode is not None else "")
        resumed = " (resumed)" if r.resumed else ""
        lines.append(f"  {r.status:<11} {r.job.label}{resumed}  {where}".rstrip())
    for r in results:
        if r.status != "failed":
            continue
        logs = (f"stdout/stderr in {r.log}.out / .err" if r.log is not None and not r.log_problem
                else f"logs not written ({r.log_problem or 'no log folder'})")
        lines += ["", f"FAILED: {r.job.config} {' '.join(r.job.overrides + r.job.extra)}",
                  f"  exit status {r.returncode}; run folder {r.run_dir or '(none created)'}; {logs}; "
                  "last lines of stderr:"]
        lines += [f"    {line}" for line in r.stderr_tail] or ["    (empty)"]
    if any(r.status == "interrupted" for r in results):
        lines += ["", f"Run the same sweep again to resume the interrupted runs from their {runfolder.LAST_PT}."]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.write(text)
    return text


def summary_tables(runs_dirs: list[str], split: str = "test", metric: str = "top1") -> str:
    """`classbench summary` (markdown) of each runs folder."""
    import warnings

    from ..compare.runs import load_runs
    from ..compare.summary import summary_text

    parts = []
    for d in runs_dirs:
        if not Path(d).is_dir():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # partial runs of a failed job: the table says so
            runs = load_runs(d, require=False, warn=False)
        if runs:
            text, _ = summary_text(runs, split=split, metric=metric)  # by arm once seeds make arms
            parts.append(f"\nclassbench summary {d}\n\n" + text)
    return "".join(parts)


def exit_status(results: list[Result]) -> int:
    if any(r.status == "failed" for r in results):
        return 1
    if any(r.status in ("interrupted", "not started") for r in results):
        return 130
    return 0
