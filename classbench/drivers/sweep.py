"""Sweeps: every config times every combination of ``--set`` values, one run each.

``classbench sweep A.yaml B.yaml --set optim.lr=0.05,0.1 train.steps=20`` plans
four runs (2 configs x 2 learning rates, each with ``train.steps=20``), runs
each as its own ``python -m classbench train`` process, then prints
``classbench summary`` of the runs folder.

* Values are split on commas outside brackets, braces and quotes, so
  ``eval.splits=[val,test]`` and ``model.args={width: 8, depth: 2}`` stay one
  value; a token without a comma is one value for every run.
* Every combination is resolved (and validated) before anything runs: a typo
  fails the whole sweep at once, naming the combination.
* A run is identified by :func:`config_hash`, a hash of its resolved config
  without the keys that do not change results (``train.runs_dir``,
  ``train.threads``, ``log.progress``, ``log.tensorboard``).  A rerun skips every
  combination that already has a finished run (``summary.json`` written and
  ``status.json`` saying ``finished``) whose ``config.yaml`` has the same hash,
  unless ``force``.
* ``jobs > 1`` runs several at once: CPU threads are divided among them
  (``train.threads``) and, with CUDA, ``CUDA_VISIBLE_DEVICES`` is assigned
  round-robin over the visible GPUs.
* A failed run is reported (its overrides, exit status and the last lines of
  its stderr) and does not stop the others; the sweep then exits with status 1.
  Each run's stdout and stderr are kept in ``<runs_dir>/.sweep/<stamp>/``.
* Ctrl-C or SIGTERM stops the sweep: no new run starts, the running ones get
  SIGTERM (they save ``last.pt``), and the sweep exits with status 130.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, from_yaml_text, load_config, parse_override, to_dict
from ..errors import ClassbenchError, ConfigError

HASH_EXCLUDED = ("train.runs_dir", "train.threads", "log.progress", "log.tensorboard")
STDERR_TAIL = 12


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


def config_hash(cfg: Config | dict) -> str:
    """A stable hash of a resolved config, without the keys that do not change results."""
    d = to_dict(cfg) if isinstance(cfg, Config) else json.loads(json.dumps(cfg))
    for key in HASH_EXCLUDED:
        section, leaf = key.split(".")
        if isinstance(d.get(section), dict):
            d[section].pop(leaf, None)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_config_hash(run_dir: str | Path) -> str | None:
    """The hash of a run folder's config.yaml, or None when it has none or it does not load."""
    path = Path(run_dir) / "config.yaml"
    try:
        return config_hash(from_yaml_text(path.read_text()))
    except (OSError, ClassbenchError):
        return None


def is_finished(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "status.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return status == "finished" and (run_dir / "summary.json").is_file()


def finished_runs(runs_dir: str | Path) -> dict[str, Path]:
    """config hash -> the latest finished run folder under ``runs_dir`` with that config."""
    from ..compare.runs import discover

    root = Path(runs_dir)
    if not root.is_dir():
        return {}
    out: dict[str, Path] = {}
    for path in discover(root):  # sorted: a later run folder of the same config wins
        if is_finished(path):
            h = run_config_hash(path)
            if h is not None:
                out[h] = path
    return out


@dataclass
class Job:
    index: int
    config: str
    overrides: list[str]  # the sweep's key=value for this run (train.runs_dir included when given)
    label: str
    cfg: Config
    hash: str
    extra: list[str] = field(default_factory=list)  # added at launch: train.threads=...
    env: dict[str, str] = field(default_factory=dict)


def plan(configs: list[str], sets: list[tuple[str, list[str]]], runs_dir: str | None = None) -> list[Job]:
    """Resolve every (config, combination); duplicates (same hash) are dropped."""
    if not configs:
        raise ConfigError("Give at least one config, e.g. `classbench sweep configs/cifar10/resnet20.yaml --set optim.lr=0.05,0.1`.")
    varying = [k for k, vs in sets if len(vs) > 1]
    jobs: list[Job] = []
    seen: set[str] = set()
    for config in configs:
        for combo in itertools.product(*(vs for _, vs in sets)):
            overrides = [f"{k}={v}" for (k, _), v in zip(sets, combo)]
            if runs_dir is not None:
                overrides.append(f"train.runs_dir={runs_dir}")
            try:
                cfg = load_config(config, overrides)
            except ConfigError as e:
                raise ConfigError(f"Sweep run {config} {' '.join(overrides)}: {e}") from None
            h = config_hash(cfg)
            if h in seen:
                continue
            seen.add(h)
            shown = [o for o in overrides if o.split("=", 1)[0] in varying]
            label = " ".join([cfg.name, *shown])
            jobs.append(Job(len(jobs) + 1, str(config), overrides, label, cfg, h))
    return jobs


# ---------------------------------------------------------------- running
@dataclass
class Result:
    job: Job
    status: str  # finished | skipped | failed | interrupted | not started
    returncode: int | None = None
    run_dir: Path | None = None
    seconds: float = 0.0
    stderr_tail: list[str] = field(default_factory=list)
    log: Path | None = None


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
    """Threads per run (CPU) and the GPU list to cycle over; sets ``job.extra``. Returns the GPUs."""
    from ..train.precision import default_threads

    gpus = _visible_gpus() if n_jobs > 1 else []
    threads = max(1, default_threads() // n_jobs)
    for job in jobs:
        on_cpu = job.cfg.train.device == "cpu" or not gpus
        if n_jobs > 1 and on_cpu and job.cfg.train.threads == 0:
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

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def run(self) -> list[Result]:
        done: dict[str, Path] = {}
        if not self.force:
            for d in sorted({j.cfg.train.runs_dir for j in self.jobs}):
                done.update(finished_runs(d))
        results: dict[int, Result] = {}
        todo = []
        for job in self.jobs:
            if job.hash in done:
                results[job.index] = Result(job, "skipped", run_dir=done[job.hash])
                self.say(f"[{job.index}/{len(self.jobs)}] skip {job.label}: finished in {done[job.hash]}")
            else:
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
            self.say("sweep: resume an interrupted run with `classbench train --resume RUN_DIR`; "
                     "rerunning the sweep starts the unfinished combinations afresh")
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

    def _launch(self, job: Job, slot: int, gpus: list[str]) -> Result:
        logs = Path(job.cfg.train.runs_dir) / ".sweep" / self.stamp
        logs.mkdir(parents=True, exist_ok=True)
        base = logs / f"{job.index:03d}-{job.cfg.name}"
        env = dict(os.environ)
        env.update(job.env)
        on_gpu = bool(gpus) and job.cfg.train.device in ("auto", "cuda")  # cuda:N and cpu are left alone
        if on_gpu:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        cmd = [sys.executable, "-m", "classbench", "train", job.config, *job.overrides, *job.extra]
        where = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if on_gpu else ""
        self.say(f"[{job.index}/{len(self.jobs)}] start {job.label}{where}")
        t0 = time.perf_counter()
        with open(f"{base}.out", "wb") as out, open(f"{base}.err", "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
            with self._lock:
                self._running.add(proc)
                if self._stop.is_set():  # the sweep was stopped while this one started
                    _signal(proc, signal.SIGTERM)
            try:
                code = proc.wait()
            finally:
                with self._lock:
                    self._running.discard(proc)
        seconds = time.perf_counter() - t0
        stdout = Path(f"{base}.out").read_text(errors="replace")
        tail = Path(f"{base}.err").read_text(errors="replace").splitlines()[-STDERR_TAIL:]
        run_dir = _run_dir_from_output(stdout) or _run_dir_from_resume_hint(tail)
        if code == 0:
            status = "finished"
        elif self._stop.is_set() or code in (130, -signal.SIGINT) or any(
                "received: saved a resumable checkpoint" in line for line in tail):
            status = "interrupted"
        else:
            status = "failed"
        r = Result(job, status, code, run_dir, seconds, tail, base)
        if status == "finished":
            self.say(f"[{job.index}/{len(self.jobs)}] done  {job.label} in {seconds:.1f} s: {run_dir}")
        else:
            self.say(f"[{job.index}/{len(self.jobs)}] {status.upper()} {job.label} (exit status {code}, "
                     f"after {seconds:.1f} s); log: {base}.err")
        return r


def _raise_keyboard_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except OSError:
        pass


def _run_dir_from_output(stdout: str) -> Path | None:
    for line in stdout.splitlines():
        if line.startswith("run ") and line[3:].strip():
            return Path(line[3:].strip())
    return None


def _run_dir_from_resume_hint(lines: list[str]) -> Path | None:
    for line in reversed(lines):
        if "--resume " in line:
            return Path(line.split("--resume ", 1)[1].split()[0])
    return None


# ---------------------------------------------------------------- reporting
def report(results: list[Result], out=None) -> str:
    """The per-run outcome table and every failure's details."""
    lines = ["", f"sweep: {len(results)} runs: " + ", ".join(
        f"{sum(r.status == s for r in results)} {s}"
        for s in ("finished", "skipped", "failed", "interrupted", "not started")
        if any(r.status == s for r in results))]
    for r in results:
        where = str(r.run_dir) if r.run_dir else (f"exit status {r.returncode}" if r.returncode is not None else "")
        lines.append(f"  {r.status:<11} {r.job.label}  {where}".rstrip())
    for r in results:
        if r.status != "failed":
            continue
        lines += ["", f"FAILED: {r.job.config} {' '.join(r.job.overrides + r.job.extra)}",
                  f"  exit status {r.returncode}; stdout/stderr in {r.log}.out / .err; last lines of stderr:"]
        lines += [f"    {line}" for line in r.stderr_tail] or ["    (empty)"]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.write(text)
    return text


def summary_tables(runs_dirs: list[str], split: str = "test", metric: str = "top1") -> str:
    """`classbench summary` (markdown) of each runs folder."""
    import warnings

    from ..compare.runs import load_runs
    from ..compare.summary import render, summarize

    parts = []
    for d in runs_dirs:
        if not Path(d).is_dir():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # partial runs of a failed job: the table says so
            runs = load_runs(d, require=False, warn=False)
        if runs:
            parts.append(f"\nclassbench summary {d}\n\n" + render(summarize(runs, split=split, metric=metric),
                                                                   "markdown", split, metric))
    return "".join(parts)


def exit_status(results: list[Result]) -> int:
    if any(r.status == "failed" for r in results):
        return 1
    if any(r.status in ("interrupted", "not started") for r in results):
        return 130
    return 0
