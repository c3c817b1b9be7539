"""Reliability and security guarantees, each proved here (see docs/reliability.md).

1. crash safety: SIGKILL at random moments (and mid checkpoint write) loses nothing;
2. exact resume: the checkpoint holds every state, resumes are bit-exact;
3. clean stops: SIGINT/SIGTERM save a resumable checkpoint and say how to resume;
4. non-finite loss: `stop` keeps the good checkpoints byte-identical, `skip` skips;
5. bad configs: one clear message and exit 2, never a traceback;
6. bad data: tests/test_bad_data.py;
7. bad checkpoints: weights_only everywhere, mismatches in plain words, payloads never run;
8. disk full / read-only: a clear error, the previous files intact, no temp files;
9. concurrency: runs never share a folder; readers survive runs being written.

Start-up is the cost of process tests (python + torch take seconds), so the
kill test and the concurrency tests fork their training processes from a
*fork server*: one Python process that imports torch and classbench once and
then forks a child per command.  Each child runs ``classbench.cli.main(argv)``
-- what ``python -m classbench`` runs -- as a real process that receives real
signals.  The SIGINT/SIGTERM and bad-config tests also start real
``python -m classbench`` processes.

With ``CLASSBENCH_RELIABILITY_REPORT=path`` the tests write their counts (kills
survived, bad inputs tried, ...) to ``path`` as JSON; see
benchmarks/reliability_report.py.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import classbench.io as cio
from classbench.cli import main
from classbench.config import load_config
from classbench.errors import ClassbenchError, NonFiniteLossError
from classbench.io import read_jsonl
from classbench.train.checkpoint import FORMAT_VERSION, load_checkpoint
from classbench.train.trainer import Trainer, resume, train

from conftest import REPO, TINY

# ---------------------------------------------------------------------------- counts for the record
COUNTS: dict[str, int] = {}


def count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    path = os.environ.get("CLASSBENCH_RELIABILITY_REPORT")
    if path:
        Path(path).write_text(json.dumps(dict(sorted(COUNTS.items())), indent=2) + "\n")


# ---------------------------------------------------------------------------- helpers
# A run small enough that a step (with a checkpoint write every step) takes milliseconds.
SMALL = {
    "data": {"name": "synthetic", "num_classes": 4, "synthetic_size": 128, "image_size": 8, "val_size": 32,
             "train_subset_size": 16, "pad": 1, "test_size": 32},
    "model": {"name": "toy_dilated", "args": {"width": 4}},
    "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
    "train": {"batch_size": 16, "steps": 150, "threads": 1, "checkpoint_every": 1},
    "eval": {"splits": ["val", "test"], "batch_size": 64, "every": 5},
    "log": {"every": 3, "progress": "never"},
}
TIMING_KEYS = ("time", "img_per_s")


def write_cfg(path: Path, cfg: dict, **changes: dict) -> str:
    cfg = json.loads(json.dumps(cfg))
    for section, values in changes.items():
        cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def metrics_without_timing(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_jsonl(run_dir / "metrics.jsonl")]


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("*/*/*") if p.is_dir())


def temp_files(run_dir: Path) -> list[Path]:
    return [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]


def wait_for(cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.exists()}


def assert_one_clean_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, err  # one message (warnings may precede it)
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}"
    return errors[0]


# ---------------------------------------------------------------------------- the fork server
ZYGOTE = r'''
import json, os, sys, traceback
import torch  # noqa: F401  -- imported once here; every child inherits it
import classbench.cli, classbench.commands.train, classbench.train.trainer, classbench.models, classbench.data.synthetic
out = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        out.write(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                              "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}) + "\n")
        out.flush()
        continue
    pid = os.fork()
    if pid:
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        continue
    code = 1
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ.update(req.get("env") or {})
        if req.get("hook"):
            exec(req["hook"], {})
        if req.get("argv") is not None:
            sys.argv = ["classbench", *req["argv"]]
            code = classbench.cli.main(req["argv"])
        else:
            exec(req["code"], {})
            code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
'''

# In a child: make the fsync of a last.pt temp file announce itself and stall, so the
# test can SIGKILL the child exactly between writing the new checkpoint and renaming it.
STALL_IN_CHECKPOINT_WRITE = r'''
import os, time
_fsync = os.fsync
def fsync(fd):
    target = os.readlink(f"/proc/self/fd/{fd}")
    if "/.last.pt." in target and target.endswith(".tmp"):
        open(os.environ["MIDWRITE_MARKER"], "w").close()
        time.sleep(30)
    _fsync(fd)
os.fsync = fsync
'''


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=REPO)

    def _ask(self, req: dict, timeout: float = 120.0) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"fork server: no answer to {req['op']} within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def spawn(self, log: Path, argv: list[str] | None = None, *, code: str | None = None,
              hook: str | None = None, env: dict | None = None) -> int:
        return self._ask({"op": "spawn", "argv": argv, "code": code, "hook": hook, "env": env, "log": str(log)})["pid"]

    def wait(self, pid: int, timeout: float = 120.0) -> dict:
        try:
            return self._ask({"op": "wait", "pid": pid}, timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            raise

    def run(self, log: Path, argv: list[str], timeout: float = 120.0) -> None:
        res = self.wait(self.spawn(log, argv), timeout)
        assert res == {"signal": 0, "code": 0}, f"{argv} ended with {res}:\n{log.read_text()}"

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def forkserver():
    fs = ForkServer()
    yield fs
    fs.close()


# ============================================================================ 1. crash safety
N_KILLS = 24  # every 4th one lands mid checkpoint write on purpose; the rest at seeded random moments


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to time kills inside a checkpoint write")
def test_sigkill_at_random_moments_loses_nothing(forkserver, tmp_path):
    cfg = write_cfg(tmp_path / "killme.yaml", SMALL)
    eval_every = SMALL["eval"]["every"]

    t = time.perf_counter()
    forkserver.run(tmp_path / "reference.log", ["train", cfg, f"train.runs_dir={tmp_path / 'ref'}"])
    t_ref = time.perf_counter() - t
    (reference,) = run_dirs(tmp_path / "ref")
    ref_metrics = metrics_without_timing(reference)
    ref_summary = json.loads((reference / "summary.json").read_text())

    rng = random.Random(20261123)
    runs = tmp_path / "runs"
    stats = dict(kills=0, targeted=0, mid_write=0, partial_lines=0, checks=0, resumes=0, progress=0, chains=0)
    run_dir: Path | None = None
    max_delay = None
    prev_step = 0
    leg = 0
    done: list[Path] = []  # runs that finished before their next kill

    def check(run_dir: Path) -> int:
        """What a SIGKILL leaves must load, and nothing saved before it may be lost."""
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # weights_only=True inside
        assert last["kind"] == "last" and last["step"] >= prev_step, "last.pt went back in time"
        step = last["step"]
        best_path = run_dir / "checkpoints" / "best.pt"
        assert best_path.exists() or step < eval_every
        if best_path.exists():
            best = load_checkpoint(best_path)
            assert best["kind"] == "best" and best["step"] <= step + 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics = metrics_without_timing(run_dir)
        stats["partial_lines"] += len(caught)
        # Every record of a step up to the checkpoint is there, exactly as in the uninterrupted run.
        assert [r for r in metrics if r["step"] <= step] == [r for r in ref_metrics if r["step"] <= step]
        stats["checks"] += 1
        return step

    while stats["kills"] < N_KILLS:
        leg += 1
        log = tmp_path / f"leg{leg}.log"
        targeted = run_dir is not None and stats["kills"] % 4 == 3
        marker = tmp_path / f"midwrite{leg}"
        argv = ["train", cfg, f"train.runs_dir={runs}"] if run_dir is None else ["train", "--resume", str(run_dir)]
        pid = forkserver.spawn(log, argv, hook=STALL_IN_CHECKPOINT_WRITE if targeted else None,
                               env={"MIDWRITE_MARKER": str(marker)})
        stats["resumes"] += run_dir is not None
        t0 = time.perf_counter()
        if run_dir is None:  # a fresh run: let it save its first checkpoint
            found = wait_for(lambda: [d for d in run_dirs(runs) if (d / "checkpoints" / "last.pt").exists()
                                      and d not in done], what="the first last.pt")
            run_dir = found[0]
            if max_delay is None:  # scale the random delays to this machine's speed
                max_delay = 2 * (time.perf_counter() - t0) + t_ref / N_KILLS
            time.sleep(rng.uniform(0, max_delay) / 2)
        elif targeted:
            wait_for(marker.exists, what="a checkpoint write")
        else:
            time.sleep(rng.uniform(0, max_delay))
        os.kill(pid, signal.SIGKILL)
        res = forkserver.wait(pid)
        if res["signal"] != signal.SIGKILL:  # it finished before the kill: a complete chain
            assert res == {"signal": 0, "code": 0}, log.read_text()
            assert metrics_without_timing(run_dir) == ref_metrics
            done.append(run_dir)
            stats["chains"] += 1
            run_dir, prev_step = None, 0
            continue
        stats["kills"] += 1
        stats["targeted"] += targeted
        stats["mid_write"] += bool(temp_files(run_dir))
        if targeted:
            assert temp_files(run_dir), "the targeted kill did not land inside a checkpoint write"
        step = check(run_dir)
        stats["progress"] += step > prev_step
        prev_step = step

    # The last resume runs to the end and matches the uninterrupted run exactly.
    forkserver.run(tmp_path / "final.log", ["train", "--resume", str(run_dir)])
    stats["resumes"] += 1
    stats["chains"] += 1
    assert metrics_without_timing(run_dir) == ref_metrics
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("best_val_top1", "best_val_step", "test_top1", "test_top5", "steps"):
        assert summary[key] == ref_summary[key], key
    assert not temp_files(run_dir), "a resumed run leaves no temp files of killed writes"
    assert stats["progress"] >= 3, stats  # kills did not all land in start-up
    for k, v in stats.items():
        count(f"kill_{k}", v)
    count("kill_files_lost", 0)  # every check above passed

