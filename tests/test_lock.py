"""One writer per run folder (issue #17): classbench.runfolder.lock_writer, with real processes.

The training processes come from the fork server (tests/support/forkserver.py): each child
runs ``classbench.cli.main(argv)`` as a real process.  STALL_IN_CHECKPOINT_WRITE holds a
child inside the fsync of its last.pt temp file, so the test knows the run is live and has
an in-flight temp file when the second writer arrives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from classbench import runfolder
from classbench.errors import ClassbenchError, TrainingInterrupted
from classbench.train.trainer import Trainer, resume

from support.forkserver import STALL_IN_CHECKPOINT_WRITE
from support.runs import temp_files, wait_for
from support.counts import Counts
from support.cli import assert_one_clean_error

COUNTS = Counts()
_write_counts = COUNTS.fixture()
count = COUNTS.add

STEPS = ["train.steps=12", "train.checkpoint_every=2", "eval.every=4", "log.every=2"]


def _stopped_run(tiny_cfg, at: int = 2) -> Path:
    """A run interrupted at step ``at`` of 12: something left for two resumes to fight over."""
    trainer = Trainer(tiny_cfg(*STEPS), stop_after=at)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    return trainer.run_dir


def _no_duplicates(run_dir: Path) -> None:
    keys = [(r["step"], r["split"]) for r in runfolder.read_metrics(run_dir, warn=False)]
    assert len(keys) == len(set(keys)), keys
    steps = [s for s, split in keys if split == "train"]
    assert steps == sorted(steps), steps


def _error_line(log: Path) -> str:
    text = log.read_text()
    return next((ln for ln in text.splitlines() if ln.startswith("error: ")), "")


@pytest.mark.slow  # spawns processes
def test_two_resumes_at_once_one_is_refused_naming_the_holder(forkserver, tiny_cfg, tmp_path):
    run_dir = _stopped_run(tiny_cfg)
    marker = tmp_path / "midwrite"
    env = {"MIDWRITE_MARKER": str(marker)}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # Both started at the same moment; the winner stalls inside its first last.pt write (alive, holding the lock).
    pids = [forkserver.spawn(log, ["train", "--resume", str(run_dir)], hook=STALL_IN_CHECKPOINT_WRITE, env=env)
            for log in logs]
    try:
        wait_for(lambda: marker.exists() and any(_error_line(log) for log in logs), 120, "one resume refused")
        loser = next(i for i, log in enumerate(logs) if _error_line(log))
        winner = 1 - loser
        res = forkserver.wait(pids[loser])
        line = assert_one_clean_error(res["code"], logs[loser].read_text(), f"pid {pids[winner]}", str(run_dir))
        assert "one writer" in line
        assert not _error_line(logs[winner])
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert forkserver.wait(pids[winner])["signal"] == signal.SIGKILL
    # The lock died with its holder: the next writer goes ahead with no clean-up, and the metrics are one run's.
    resume(run_dir)
    assert runfolder.read_summary(run_dir)["steps"] == 12
    assert not temp_files(run_dir)
    _no_duplicates(run_dir)
    count("lock_concurrent_resumes", 2)


@pytest.mark.slow  # spawns processes
def test_a_resume_of_a_live_run_is_refused_and_leaves_its_checkpoint_write_alone(forkserver, tiny_cfg, tmp_path):
    run_dir = _stopped_run(tiny_cfg)
    marker = tmp_path / "midwrite"
    live = forkserver.spawn(tmp_path / "live.log", ["train", "--resume", str(run_dir)],
                            hook=STALL_IN_CHECKPOINT_WRITE, env={"MIDWRITE_MARKER": str(marker)})
    try:
        wait_for(marker.exists, 120, "the live run inside a checkpoint write")
        in_flight = temp_files(run_dir)
        assert in_flight, "the live run has a last.pt temp file"
        inode = in_flight[0].stat().st_ino
        second = forkserver.spawn(tmp_path / "second.log", ["train", "--resume", str(run_dir)])
        res = forkserver.wait(second)
        assert_one_clean_error(res["code"], (tmp_path / "second.log").read_text(), f"pid {live}")
        # Before the lock, the second resume deleted this file and the live run died on a false "disk full".
        assert in_flight[0].exists() and in_flight[0].stat().st_ino == inode
        assert json.loads(runfolder.RunFolder(run_dir).status_json.read_text())["pid"] == live
        # Readers never take the lock and never block.
        t = time.monotonic()
        from classbench.compare.runs import load_run

        assert load_run(run_dir).metrics
        assert time.monotonic() - t < 10
    finally:
        os.kill(live, signal.SIGKILL)
    forkserver.wait(live)
    resume(run_dir)  # after SIGKILL of the holder: no stale lock, no manual clean-up
    assert runfolder.read_summary(run_dir)["steps"] == 12
    _no_duplicates(run_dir)
    count("lock_live_run_refusals")


@pytest.mark.slow  # spawns processes
def test_sigkill_of_the_lock_holder_frees_the_run_for_the_next_writer(forkserver, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = forkserver.spawn(tmp_path / "holder.log", code=(
        "import time\nfrom classbench import runfolder\n"
        f"lock = runfolder.lock_writer({str(run_dir)!r})\n"
        f"open({str(tmp_path / 'locked')!r}, 'w').close()\ntime.sleep(60)\n"))
    try:
        wait_for((tmp_path / "locked").exists, 60, "the holder has the lock")
        with pytest.raises(ClassbenchError, match=f"pid {holder}"):
            runfolder.lock_writer(run_dir)
    finally:
        os.kill(holder, signal.SIGKILL)
    forkserver.wait(holder)
    assert runfolder.RunFolder(run_dir).lock.exists()  # the file stays; only a live flock counts
    with runfolder.lock_writer(run_dir) as lock:
        assert json.loads(runfolder.RunFolder(run_dir).lock.read_text())["pid"] == os.getpid()
        assert lock.fd is not None
    count("lock_sigkill_recoveries")


def test_the_lock_is_per_open_and_released_by_release(tmp_path):
    first = runfolder.lock_writer(tmp_path)
    with pytest.raises(ClassbenchError, match=f"pid {os.getpid()}") as e:
        runfolder.lock_writer(tmp_path)  # even in the same process: flock is per open file
    assert "\n" not in str(e.value)
    first.release()
    runfolder.lock_writer(tmp_path).release()


def test_release_wipes_the_holder_s_note(tmp_path):
    lock = runfolder.lock_writer(tmp_path)
    path = runfolder.RunFolder(tmp_path).lock
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert path.read_text() == ""


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
def test_a_refused_writer_names_the_kernel_s_holder_not_a_stale_note(tmp_path):
    """CI stop 37: a resume refused between the winner's flock and its note named the previous holder."""
    path = runfolder.RunFolder(tmp_path).lock
    path.write_text(json.dumps({"pid": 424242, "host": "elsewhere", "since": "2026-01-01T00:00:00+00:00"}))
    # A holder caught in that moment: it has the flock and has not written its note (a SIGKILLed
    # holder's note stays behind the same way).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(path)!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ClassbenchError) as e:
            runfolder.lock_writer(tmp_path)
        assert f"pid {holder.pid})" in str(e.value), str(e.value)
        assert "424242" not in str(e.value) and "elsewhere" not in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    runfolder.lock_writer(tmp_path).release()  # the kernel dropped the dead holder's lock


def test_a_failed_or_refused_resume_frees_the_lock(tiny_cfg):
    run_dir = _stopped_run(tiny_cfg)
    (runfolder.RunFolder(run_dir).last_pt).write_bytes(b"not a checkpoint")
    with pytest.raises(ClassbenchError):
        Trainer(tiny_cfg(*STEPS), resume_dir=run_dir)
    runfolder.lock_writer(run_dir).release()  # nobody holds it any more


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_readers_never_wait_for_the_writer(tiny_cfg, capsys):
    """summary/plot/report/eval while a writer holds the lock (in a thread, so the lock is really held)."""
    from classbench.cli import main

    run_dir = _stopped_run(tiny_cfg, at=4)  # evaluated once: best.pt exists
    held, done = threading.Event(), threading.Event()

    def hold():
        with runfolder.lock_writer(run_dir):
            held.set()
            done.wait(600)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(60)
        runs = run_dir.parents[2]
        for argv in (["summary", str(runs)], ["plot", str(runs), "--out", str(run_dir.parent / "plots")],
                     ["eval", str(run_dir), "--split", "val"]):
            assert main(argv) == 0, capsys.readouterr().err
            assert t.is_alive(), "the writer let go of its lock: a reader waited for it"  # whatever the speed
    finally:
        done.set()
        t.join()
