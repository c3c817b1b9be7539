"""`classbench sweep ... --launcher slurm`: a sweep as one Slurm job array.

Plain ``sbatch``, ``squeue``, ``scontrol`` (and ``sacct`` where the cluster keeps accounting),
called as a user would; no Python library in between.  submitit would pickle Python callables
into its own job folder, so what a task runs could be neither read nor resubmitted by hand, and
a pickle written by one classbench version would have to load in another.  Here every task is a
``classbench`` command line, and the sweep folder holds what a user needs to read and rerun it:

``<runs_dir>/sweeps/<name>-<id>/``
    ``sweep.json``   the sweep's identity (its id: a hash of its combinations' config hashes)
    ``tasks.json``   one entry per array task: config, overrides, run name, config hash
    ``tasks.txt``    the same as the ``classbench train`` command line of each task
    ``job.sbatch``   the batch script (``sbatch --array=3,4 job.sbatch`` reruns tasks 3 and 4)
    ``jobs.json``    the job arrays submitted so far, with the tasks of each
    ``tasks/N.json`` task N's state: its run folder, starts, last outcome (written by the task)
    ``logs/``        Slurm's output of each task (``%A_%a.out``), and the training's own stdout and
                     stderr of each start of task N (``taskN-startK.out``/``.err``)

A task (:func:`run_task`) finds its run: finished -> it exits at once; stopped half way (its
own run folder from ``tasks/N.json``, or one of the same config hash) -> it resumes it from
``last.pt``; else it trains afresh.  The trainer runs as a child (it dies with the task), and
tells the task its run folder through ``$CLASSBENCH_RUN_DIR_FILE``.

Preemption and time limits: the batch script asks for ``--signal=B:USR1@<stop margin>``.  On
that signal, or on SIGTERM while the job is still running (preemption), the task passes SIGTERM
to the trainer, which saves ``last.pt`` and stops as interrupted, and then the task requeues
itself with ``scontrol requeue``.  The requeued task resumes its run folder; resume is exact, so
the metrics equal those of an uninterrupted run.  A ``scancel`` is obeyed, never undone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import runfolder
from ..errors import ClassbenchError, ConfigError
from ..io import atomic_write_json, atomic_write_text
from .sweep import Earlier, Job, _name_part, earlier_runs, outcome, run_child, train_command

SWEEP_FILE = "sweep.json"
TASKS_FILE = "tasks.json"
TASKS_TEXT = "tasks.txt"
SCRIPT = "job.sbatch"
JOBS_FILE = "jobs.json"
STATE_DIR = "tasks"
LOG_DIR = "logs"
FORMAT = 1
#: Seconds before the time limit at which a task is told to save and requeue (``--stop-margin``).
DEFAULT_STOP_MARGIN = 120
#: A task must be able to train at least this long between its start and its warning signal.
MIN_TRAIN_S = 60
TASK_STATES = ("pending", "running", "finished", "failed", "preempted")


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: int = 0
    mem: str | None = None
    array_parallelism: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    stop_margin: int = DEFAULT_STOP_MARGIN
    sweep_dir: str | None = None


# ---------------------------------------------------------------- checks
def parse_time(text: str) -> int:
    """A Slurm time limit in seconds: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    t = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if not m:
        raise ConfigError(f"--time {text!r} is not a Slurm time limit; use minutes, MM:SS, HH:MM:SS or D-HH:MM:SS "
                          "(e.g. --time 2:00:00).")
    days, a, b, c = m.groups()
    a, b, c = int(a), (int(b) if b is not None else None), (int(c) if c is not None else None)
    if days is not None:  # D-H, D-H:M, D-H:M:S
        return int(days) * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if b is None:
        return a * 60  # minutes
    if c is None:
        return a * 60 + b  # minutes:seconds
    return a * 3600 + b * 60 + c


def check_options(opts: SlurmOptions) -> None:
    """Input checks that need no cluster; each failure is one line."""
    if opts.cpus_per_run < 1:
        raise ConfigError(f"--cpus-per-run must be at least 1, got {opts.cpus_per_run}.")
    if opts.gpus_per_run < 0:
        raise ConfigError(f"--gpus-per-run must be 0 or more, got {opts.gpus_per_run}.")
    if opts.array_parallelism is not None and opts.array_parallelism < 1:
        raise ConfigError(f"--array-parallelism must be at least 1, got {opts.array_parallelism}.")
    if opts.stop_margin < 10:
        raise ConfigError(f"--stop-margin must be at least 10 s (an evaluation and a checkpoint save), "
                          f"got {opts.stop_margin}.")
    if opts.time is not None and opts.time.strip().lower() not in ("infinite", "unlimited"):
        limit = parse_time(opts.time)
        if limit < opts.stop_margin + MIN_TRAIN_S:
            raise ConfigError(
                f"--time {opts.time} ({limit} s) is shorter than one evaluation and checkpoint plus some training: "
                f"a task is told {opts.stop_margin} s before its limit (--stop-margin) to finish the step, "
                f"evaluation and checkpoint it is in, so --time must be at least {opts.stop_margin + MIN_TRAIN_S} s; "
                "raise --time (or lower --stop-margin if one evaluation is quick).")
    for a in opts.sbatch_args:
        if not a.startswith("-"):
            raise ConfigError(f"--sbatch-arg {a!r} is not an sbatch option; write it as --sbatch-arg=--qos=high.")
        if a.split("=", 1)[0] in ("--array", "-a", "--output", "-o", "--signal", "--wrap"):
            raise ConfigError(f"--sbatch-arg {a!r}: classbench sets {a.split('=', 1)[0]} itself.")


def require_slurm() -> str:
    path = shutil.which("sbatch")
    if path is None:
        raise ClassbenchError("--launcher slurm needs Slurm's `sbatch` on PATH, and there is none: run the sweep on a "
                              "Slurm login node (or load Slurm, e.g. `module load slurm`), or drop --launcher slurm.")
    return path


def _slurm(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    text = errors[-1] if errors else "(no message)"
    return re.sub(r"^\w+: error: ", "", text)


def check_partition(partition: str | None) -> None:
    """An unknown partition is named, with the ones that exist (when sinfo can list them)."""
    if partition is None or shutil.which("sinfo") is None:
        return
    r = _slurm(["sinfo", "-h", "-o", "%R"])
    if r.returncode != 0:
        raise ClassbenchError(f"Cannot reach the Slurm controller (sinfo: {_first_error(r.stderr)}).")
    known = sorted({p.strip() for p in r.stdout.split() if p.strip()})
    if partition not in known:
        raise ClassbenchError(f"Unknown Slurm partition {partition!r} (--partition); partitions here: "
                              f"{', '.join(known) or 'none'}.")


# ---------------------------------------------------------------- the sweep folder
def sweep_id(jobs: list[Job]) -> str:
    return hashlib.sha256(",".join(sorted(j.hash for j in jobs)).encode()).hexdigest()[:12]


def default_sweep_dir(jobs: list[Job]) -> Path:
    """``<runs_dir>/sweeps/<first config's file name>-<sweep id>``: the same sweep finds the same folder."""
    return Path(jobs[0].cfg.train.runs_dir) / "sweeps" / f"{_name_part(Path(jobs[0].config).stem)}-{sweep_id(jobs)}"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ClassbenchError(f"{path} is unreadable ({e}); it is not a sweep folder that classbench wrote.") from None


def load_sweep(sweep_dir: str | Path) -> tuple[dict, list[dict]]:
    """sweep.json and tasks.json of a sweep folder; one clear line if it is not one."""
    d = Path(sweep_dir)
    if not d.is_dir():
        raise ClassbenchError(f"{d} is not a folder; give the sweep folder that `classbench sweep --launcher slurm` "
                              "printed (runs/sweeps/<name>-<id>).")
    meta, tasks = _read_json(d / SWEEP_FILE), _read_json(d / TASKS_FILE)
    if not isinstance(meta, dict) or not isinstance(tasks, list) or meta.get("format") != FORMAT:
        raise ClassbenchError(f"{d} is not a classbench sweep folder (no valid {SWEEP_FILE} and {TASKS_FILE}).")
    return meta, tasks


def task_entries(jobs: list[Job]) -> list[dict]:
    return [{"index": j.index, "config": str(Path(j.config).resolve()), "overrides": j.overrides,
             "name": j.name, "label": j.label, "hash": j.hash, "runs_dir": str(j.cfg.train.runs_dir)}
            for j in jobs]


def prepare_sweep_dir(jobs: list[Job], opts: SlurmOptions) -> Path:
    """The sweep folder of these jobs, created or checked to hold this same sweep."""
    d = Path(opts.sweep_dir) if opts.sweep_dir else default_sweep_dir(jobs)
    sid = sweep_id(jobs)
    if d.exists():
        if not d.is_dir():
            raise ClassbenchError(f"--sweep-dir {d} is a file; give a folder.")
        meta = _read_json(d / SWEEP_FILE)
        if meta is None:
            if any(d.iterdir()):
                raise ClassbenchError(f"--sweep-dir {d} is not empty and holds no {SWEEP_FILE}: it is not a sweep "
                                      "folder; give a new or empty folder.")
        elif not isinstance(meta, dict) or meta.get("id") != sid:
            other = meta.get("id") if isinstance(meta, dict) else "?"
            raise ClassbenchError(
                f"{d} holds another sweep ({other}, {meta.get('tasks', '?') if isinstance(meta, dict) else '?'} "
                f"tasks), not this one ({sid}, {len(jobs)} tasks): give a new --sweep-dir, or the same configs, "
                "--set values and seeds as that sweep.")
    for sub in ("", STATE_DIR, LOG_DIR):
        (d / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / SWEEP_FILE, {"format": FORMAT, "id": sid, "tasks": len(jobs), "cwd": os.getcwd(),
                                        "python": sys.executable, "created": runfolder.now()})
    atomic_write_json(d / TASKS_FILE, task_entries(jobs))
    atomic_write_text(d / TASKS_TEXT, "".join(
        f"{j.index}\t{j.hash}\tclassbench train {shlex.join([j.config, *j.overrides])}\n" for j in jobs))
    return d.resolve()


def array_spec(indices: list[int], parallelism: int | None) -> str:
    """[1, 2, 3, 5] -> ``1-3,5`` (with ``%N`` for the parallelism)."""
    parts, start, prev = [], None, None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    return ",".join(parts) + (f"%{parallelism}" if parallelism else "")


def batch_script(sweep_dir: Path, name: str, array: str, opts: SlurmOptions) -> str:
    lines = ["#!/bin/bash",
             f"# classbench sweep {sweep_dir.name}: one array task per line of tasks.txt.",
             "# Rerun by hand with `sbatch job.sbatch` (or `sbatch --array=3,4 job.sbatch`): finished tasks exit at",
             f"# once, interrupted ones resume from {runfolder.LAST_PT}.  `classbench sweep --status <this folder>` shows them.",
             f"#SBATCH --job-name={name}",
             f"#SBATCH --array={array}",
             f"#SBATCH --output={sweep_dir / LOG_DIR}/%A_%a.out",
             "#SBATCH --open-mode=append",
             "#SBATCH --requeue",
             f"#SBATCH --signal=B:USR1@{opts.stop_margin}",
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={opts.cpus_per_run}",
             f"#SBATCH --chdir={os.getcwd()}"]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.time:
        lines.append(f"#SBATCH --time={opts.time}")
    if opts.mem:
        lines.append(f"#SBATCH --mem={opts.mem}")
    if opts.gpus_per_run:
        lines.append(f"#SBATCH --gres=gpu:{opts.gpus_per_run}")
    lines += [f"#SBATCH {a}" for a in opts.sbatch_args]
    lines += ["", f"exec {shlex.quote(sys.executable)} -m classbench sweep --run-task {shlex.quote(str(sweep_dir))} "
                  '"$SLURM_ARRAY_TASK_ID"', ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the queue
def queue_states(name: str) -> dict[int, str]:
    """Array task index -> its Slurm state (PENDING, RUNNING, ...), for the jobs called ``name`` in the queue."""
    r = _slurm(["squeue", "-h", "-r", "--name", name, "-o", "%K|%T"])
    if r.returncode != 0:
        raise ClassbenchError(f"Cannot read the Slurm queue (squeue: {_first_error(r.stderr)}).")
    out = {}
    for line in r.stdout.splitlines():
        task, _, state = line.strip().partition("|")
        if task.isdigit():
            out[int(task)] = state.strip()
    return out


def accounting_states(job_ids: list[str]) -> dict[int, str]:
    """Array task index -> the last state sacct knows (clusters without accounting: {})."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    r = _slurm(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", "JobID,State"])
    if r.returncode != 0:
        return {}
    out = {}
    for line in r.stdout.splitlines():
        jid, _, state = line.partition("|")
        m = re.fullmatch(r"\d+_(\d+)", jid.strip())
        if m:
            out[int(m.group(1))] = state.split()[0] if state.strip() else ""
    return out


def job_name(sweep_dir: Path) -> str:
    return f"classbench-{sweep_dir.name}"


# ---------------------------------------------------------------- submitting
def submit(jobs: list[Job], opts: SlurmOptions, *, force: bool = False, out=None) -> int:
    """Submit the combinations that are neither finished nor queued as one job array; returns at once."""
    out = out or sys.stdout
    if force:
        raise ConfigError("--force is not available with --launcher slurm: tasks skip finished runs by config hash; "
                          "move the finished run folders away, or use another --runs-dir.")
    check_options(opts)
    require_slurm()
    check_partition(opts.partition)
    d = prepare_sweep_dir(jobs, opts)
    name = job_name(d)
    earlier = earlier_runs([j.cfg.train.runs_dir for j in jobs])
    queued = queue_states(name)
    todo, n = [], len(jobs)
    for j in jobs:
        e = earlier.get(j.hash, Earlier())
        if e.finished is not None:
            print(f"[{j.index}/{n}] skip {j.label}: finished in {e.finished}", file=out)
        elif j.index in queued:
            print(f"[{j.index}/{n}] skip {j.label}: already in the queue ({queued[j.index].lower()})", file=out)
        else:
            todo.append(j.index)
    if not todo:
        print(f"sweep: nothing to submit: all {n} tasks are finished or queued. "
              f"Follow them with `classbench sweep --status {d}`.", file=out)
        return 0
    array = array_spec(todo, opts.array_parallelism)
    script = d / SCRIPT
    atomic_write_text(script, batch_script(d, name, array, opts))
    r = _slurm(["sbatch", "--parsable", str(script)])
    if r.returncode != 0:
        raise ClassbenchError(f"Slurm refused the job array: {_first_error(r.stderr)} (script: {script}).")
    job_id = r.stdout.strip().split(";")[0]
    jobs_file = d / JOBS_FILE
    history = _read_json(jobs_file) or []
    history.append({"job_id": job_id, "array": array, "tasks": todo, "submitted": runfolder.now()})
    atomic_write_json(jobs_file, history)
    print(f"sweep: submitted job array {job_id} ({len(todo)} of {n} tasks: {array}) from {script}", file=out)
    print(f"sweep: follow it with `classbench sweep --status {d}`", file=out)
    return 0


# ---------------------------------------------------------------- one array task
def _task_state_path(sweep_dir: Path, index: int) -> Path:
    return sweep_dir / STATE_DIR / f"{index}.json"


def read_task_state(sweep_dir: Path, index: int) -> dict:
    try:
        state = json.loads(_task_state_path(sweep_dir, index).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class _Stop:
    """The signal that asked this task to stop, if any."""

    signum: int | None = None


def run_task(sweep_dir: str | Path, index: int) -> int:
    """Run array task ``index`` of a sweep folder (the batch script's only command)."""
    d = Path(sweep_dir).resolve()
    _meta, tasks = load_sweep(d)
    entry = next((t for t in tasks if t.get("index") == index), None)
    if entry is None:
        raise ClassbenchError(f"{d} has no task {index} (it has {len(tasks)}).")
    job_id = os.environ.get("SLURM_JOB_ID", "")
    state = read_task_state(d, index)
    state_path = _task_state_path(d, index)

    def save(**changes) -> None:
        state.update(changes, updated=runfolder.now(), job_id=job_id)
        atomic_write_json(state_path, state)

    # Which run: our own run folder first (a requeued task), then any of the same config.
    own = Path(state["run_dir"]) if state.get("run_dir") else None
    resume_dir = None
    if own is not None and runfolder.is_finished(own):
        save(state="finished")
        print(f"task {index}: finished in {own}", flush=True)
        return 0
    if own is not None and runfolder.RunFolder(own).last_pt.is_file():
        resume_dir = own
    else:
        e = earlier_runs([entry["runs_dir"]]).get(entry["hash"], Earlier())
        if e.finished is not None:
            save(state="finished", run_dir=str(e.finished))
            print(f"task {index}: finished in {e.finished}", flush=True)
            return 0
        if e.live is not None:
            save(state="failed", message=f"{e.live} is still training (pid {e.live_pid}) outside this task")
            print(f"task {index}: {e.live} is still training (pid {e.live_pid}); not started a second time",
                  file=sys.stderr, flush=True)
            return 1
        resume_dir = e.resumable

    job = Job(index, entry["config"], list(entry["overrides"]), entry["label"], None, entry["hash"])  # type: ignore[arg-type]
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    gpus = _gpus_of_task()
    if gpus > 1:
        job.extra = ["--nproc", str(gpus)]  # DDP on the task's GPUs; torchrun divides the cores
    elif cpus:
        job.extra = [f"train.threads={cpus}"]
    cmd = train_command(job, resume_dir)
    save(state="running", run_dir=str(resume_dir) if resume_dir else state.get("run_dir"),
         starts=int(state.get("starts", 0)) + 1, message="")
    print(f"task {index}: {'resume ' + str(resume_dir) if resume_dir else 'start ' + entry['label']} "
          f"(job {job_id}, restart {os.environ.get('SLURM_RESTART_COUNT', '0')})", flush=True)

    stop = _Stop()
    procs = []

    def on_signal(signum, frame):  # noqa: ARG001
        stop.signum = signum
        for p in procs:  # the trainer saves last.pt and stops at the end of its step
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass

    for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)
    train_log = d / LOG_DIR / f"task{index}-start{state['starts']}"  # the training's own .out/.err, per start
    child = run_child(cmd, dict(os.environ), train_log, d / STATE_DIR / f".{index}.run_dir", started=procs.append,
                      on_run_dir=lambda path: save(run_dir=str(path)))
    for line in child.stderr_tail:
        print(line, file=sys.stderr)
    run_dir = child.run_dir or resume_dir
    result = outcome(child, stop.signum is not None)
    if run_dir is not None:
        state["run_dir"] = str(run_dir)
    if result == "finished":
        save(state="finished")
        print(f"task {index}: finished in {run_dir}", flush=True)
        return 0
    if result == "interrupted":
        why = signal.Signals(stop.signum).name if stop.signum else "a signal"
        job_state = _job_state(job_id)
        if job_state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED") or _requeued_by_slurm(job_id):
            save(state="requeued", message=f"{why}: saved {runfolder.LAST_PT}; requeued by Slurm")
            print(f"task {index}: {why}: saved {run_dir}; requeued by Slurm, it resumes when it starts again",
                  flush=True)
            return 0
        if _should_requeue(stop.signum, job_state):
            requeued = _slurm(["scontrol", "requeue", job_id]) if job_id else None
            ok = requeued is not None and requeued.returncode == 0
            save(state="requeued" if ok else "interrupted",
                 message=f"{why}: saved {runfolder.LAST_PT}" + ("; requeued" if ok else
                                                     f"; requeue failed: {_first_error(requeued.stderr) if requeued else 'no job id'}"))
            print(f"task {index}: {why}: saved {run_dir}; " + ("requeued itself" if ok else "could not requeue"),
                  flush=True)
            return 0 if ok else 1
        save(state="interrupted", message=f"{why}: saved {runfolder.LAST_PT}; rerun the sweep to resume")
        print(f"task {index}: {why}: saved {run_dir}; stopped (rerun the sweep to resume)", flush=True)
        return 130
    save(state="failed", exit_code=child.returncode,
         message=(child.stderr_tail[-1] if child.stderr_tail else f"exit status {child.returncode}")[:500])
    return child.returncode or 1


def _gpus_of_task() -> int:
    """The GPUs Slurm gave this task (0 without --gpus-per-run)."""
    try:
        return int(os.environ.get("SLURM_GPUS_ON_NODE", "0") or 0)
    except ValueError:
        return 0


def _job_state(job_id: str) -> str:
    """This job's state in the queue now (RUNNING, PENDING, COMPLETING, ...; "" if unknown)."""
    if not job_id:
        return ""
    r = _slurm(["squeue", "-h", "-j", job_id, "-o", "%T"])
    return r.stdout.strip() if r.returncode == 0 else ""


def _requeued_by_slurm(job_id: str) -> bool:
    """Slurm counts a requeue at once (``Restarts``), while the job is still COMPLETING: more restarts
    than this attempt started with means that Slurm (``scontrol requeue``, preemption) requeued it."""
    if not job_id:
        return False
    r = _slurm(["scontrol", "show", "job", job_id])
    m = re.search(r"\bRestarts=(\d+)", r.stdout) if r.returncode == 0 else None
    started_with = os.environ.get("SLURM_RESTART_COUNT", "0")
    return m is not None and started_with.isdigit() and int(m.group(1)) > int(started_with)


def _should_requeue(signum: int | None, job_state: str) -> bool:
    """Requeue after our own time-limit warning (USR1), or after a SIGTERM while the job still runs
    (preemption with a grace time).  Not after a ``scancel`` (the job is no longer RUNNING), nor
    after an ``scontrol requeue`` or a preemption that requeues (Slurm has requeued it already)."""
    return signum == signal.SIGUSR1 or (signum == signal.SIGTERM and job_state == "RUNNING")


# ---------------------------------------------------------------- status
@dataclass
class TaskStatus:
    index: int
    label: str
    state: str  # one of TASK_STATES
    run_dir: Path | None
    detail: str


def task_statuses(sweep_dir: str | Path) -> list[TaskStatus]:
    from ..compare.runs import load_run

    d = Path(sweep_dir).resolve()
    _meta, tasks = load_sweep(d)
    history = _read_json(d / JOBS_FILE) or []
    queued = queue_states(job_name(d)) if shutil.which("squeue") else {}
    accounted = accounting_states([h["job_id"] for h in history if isinstance(h, dict) and h.get("job_id")])
    submitted = {i for h in history if isinstance(h, dict) for i in h.get("tasks", [])}
    earlier = earlier_runs(sorted({t["runs_dir"] for t in tasks}))
    out = []
    for t in tasks:
        i = t["index"]
        st = read_task_state(d, i)
        e = earlier.get(t["hash"], Earlier())
        run_dir = Path(st["run_dir"]) if st.get("run_dir") else (e.finished or e.live or e.resumable)
        run = load_run(run_dir) if run_dir is not None and run_dir.is_dir() else None
        run_status = run.status if run is not None else None
        step = max((r.get("step", 0) for r in run.metrics), default=0) if run is not None else 0
        q = queued.get(i)
        if run_status == runfolder.FINISHED or e.finished is not None:
            state, detail = "finished", ""
            run_dir = run_dir if run_status == runfolder.FINISHED else e.finished
        elif q == "RUNNING" or q == "COMPLETING":
            state, detail = "running", f"step {step}" if run is not None else "starting"
        elif q is not None:
            was_stopped = st.get("state") in ("requeued", "interrupted") or run_status == runfolder.INTERRUPTED
            state = "preempted" if was_stopped else "pending"
            detail = f"waiting to resume at step {step}" if was_stopped else q.lower()
        elif run_status == runfolder.INTERRUPTED or st.get("state") in ("requeued", "interrupted"):
            state, detail = "preempted", f"stopped at step {step}; rerun the sweep to resume"
        elif st.get("state") == "failed" or run_status in (runfolder.FAILED, runfolder.NONFINITE_STATUS, "crashed"):
            state = "failed"
            detail = st.get("message") or (run.status_info.get("message") if run is not None else "") or run_status or ""
        elif accounted.get(i):
            a = accounted[i]
            state = "preempted" if a == "PREEMPTED" else "failed"
            detail = a.lower()
        elif i in submitted:
            state, detail = "failed", "left the queue without finishing (cancelled?); rerun the sweep to resubmit"
        else:
            state, detail = "pending", "not submitted yet"
        out.append(TaskStatus(i, t["label"], state, run_dir, str(detail)))
    return out


def show_status(sweep_dir: str | Path, out=None) -> int:
    """The table of tasks, then the summary of the finished runs.  Exit 1 if a task failed."""
    out = out or sys.stdout
    statuses = task_statuses(sweep_dir)
    counts = {s: sum(t.state == s for t in statuses) for s in TASK_STATES}
    print(f"sweep {Path(sweep_dir).resolve()}: {len(statuses)} tasks: "
          + ", ".join(f"{c} {s}" for s, c in counts.items() if c), file=out)
    for t in statuses:
        where = f"  {t.run_dir}" if t.run_dir else ""
        detail = f"  ({t.detail})" if t.detail else ""
        print(f"  {t.index:>3}  {t.state:<9}  {t.label}{detail}{where}", file=out)
    finished = [t.run_dir for t in statuses if t.state == "finished" and t.run_dir is not None]
    if finished:
        print("\n" + finished_summary(finished), file=out, end="")
    else:
        print("\nNo task has finished yet.", file=out)
    return 1 if counts["failed"] else 0


def finished_summary(run_dirs: list[Path]) -> str:
    """`classbench summary` (markdown) of these run folders."""
    import warnings

    from ..compare.runs import assign_labels, load_run
    from ..compare.summary import render, summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [load_run(p) for p in sorted(set(run_dirs))]
    assign_labels(runs)
    return render(summarize(runs), "markdown", "test", "top1")
