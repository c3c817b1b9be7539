"""`classbench sweep --launcher slurm` against a real Slurm: the one-node cluster of .ci/slurm.conf.

Start it with `bash .ci/slurm.sh start` (CI's .ci/run does).  The tests marked `slurm` are skipped
only where Slurm is not installed at all (no `sbatch`); under CI they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from classbench.cli import main
from classbench.config import load_config
from classbench.drivers.slurm import array_spec, parse_time
from classbench.errors import ConfigError
from classbench.train.trainer import train

from conftest import REPO
from test_sweep import RESNET20, SYNTHETIC

TIMEOUT = 300  # seconds a test waits for its tasks (the 2 CPUs are shared with the rest of the suite)


@pytest.fixture(scope="module")
def partition():
    """The cluster's default partition; fails (never skips) when Slurm is installed but not running."""
    if shutil.which("sbatch") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the Slurm tests: .ci/run installs slurm-wlm and starts .ci/slurm.conf's cluster")
        pytest.skip("Slurm is not installed (no sbatch on PATH)")
    r = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail(f"sbatch exists but no Slurm controller answers ({r.stderr.strip()}); "
                    "start the test cluster with `bash .ci/slurm.sh start`")
    default = [p for p in r.stdout.split("\n") if "*" in p] or r.stdout.split("\n")
    return default[0].split()[0].rstrip("*")


def slurm_argv(runs, partition, *more, steps=20):
    return ["sweep", RESNET20, "--set", f"train.steps={steps}", *SYNTHETIC, "--runs-dir", str(runs),
            "--launcher", "slurm", "--partition", partition, "--time", "10:00", "--cpus-per-run", "1", *more]


def sweep_dir_of(runs) -> Path:
    (d,) = (Path(runs) / "sweeps").iterdir()
    return d


def queued(d: Path) -> list[str]:
    r = subprocess.run(["squeue", "-h", "-r", "--name", f"classbench-{d.name}", "-o", "%i %T"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split("\n") if r.stdout.strip() else []


def wait_for(what, predicate, timeout=TIMEOUT, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def task_state(d: Path, index: int) -> dict:
    try:
        return json.loads((d / "tasks" / f"{index}.json").read_text())
    except (OSError, ValueError):
        return {}


def train_records(run_dir: Path) -> list[tuple]:
    """The metrics that must equal an uninterrupted run's (not the clocks)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append(tuple(sorted((k, v) for k, v in r.items() if not k.startswith(("time", "img_per_s")))))
    return out


def run_folders(runs: Path) -> list[Path]:
    return sorted(p for p in (runs / "synthetic").glob("*/*") if p.is_dir())


def tree(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")} if path.exists() else {}


def release_start(job: str) -> None:
    """A requeued job waits ~2 minutes (Slurm's requeue delay) before it may start again: let it start now."""
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)


# ---------------------------------------------------------------- submitted, run and summarised
@pytest.mark.slurm
def test_a_2x2_seed_sweep_runs_through_slurm_and_its_status_ends_with_the_summary(tmp_path, partition, capsys):
    t0 = time.monotonic()
    assert main(slurm_argv(tmp_path, partition, "--set", "optim.lr=0.01,0.02", "--seeds", "2",
                           "--array-parallelism", "2")) == 0
    out = capsys.readouterr().out
    assert time.monotonic() - t0 < 60  # returns once queued
    assert "submitted job array" in out and "(4 of 4 tasks: 1-4%2)" in out
    d = sweep_dir_of(tmp_path)
    script = (d / "job.sbatch").read_text()
    for line in ("#SBATCH --array=1-4%2", f"#SBATCH --partition={partition}", "#SBATCH --time=10:00",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --signal=B:USR1@120", "#SBATCH --requeue"):
        assert line in script
    assert len((d / "tasks.txt").read_text().splitlines()) == 4

    wait_for("the 4 tasks to leave the queue", lambda: not queued(d))
    assert main(["sweep", "--status", str(d)]) == 0
    out = capsys.readouterr().out
    assert "4 tasks: 4 finished" in out
    assert out.count(" finished   resnet20-lr=") == 4
    table = [line for line in out.splitlines() if line.startswith("| ") and "/synthetic/resnet20-lr=" in line]
    assert len(table) == 4  # the summary of what finished
    folders = run_folders(tmp_path)
    assert sorted(p.parent.name for p in folders) == ["resnet20-lr=0.01"] * 2 + ["resnet20-lr=0.02"] * 2
    seeds = sorted((p.parent.name, yaml.safe_load((p / "config.yaml").read_text())["train"]["seed"]) for p in folders)
    assert seeds == [("resnet20-lr=0.01", 0), ("resnet20-lr=0.01", 1), ("resnet20-lr=0.02", 0), ("resnet20-lr=0.02", 1)]
    for p in folders:
        assert json.loads((p / "summary.json").read_text())["steps"] == 20


# ---------------------------------------------------------------- preemption and requeue
@pytest.mark.slurm
@pytest.mark.slow
def test_a_task_requeued_mid_run_resumes_and_ends_with_the_metrics_of_an_uninterrupted_run(tmp_path, partition,
                                                                                         capsys):
    """Twice: the time-limit warning (USR1, as --signal sends it; the task requeues itself) and an
    `scontrol requeue` from outside.  Each time the run saves last.pt, and the task resumes it."""
    steps = ["train.steps=240", "train.checkpoint_every=10", "eval.every=60", "optim.lr=0.01"]
    runs = tmp_path / "slurm"
    assert main(["sweep", RESNET20, "--set", *steps, *SYNTHETIC, "--runs-dir", str(runs),
                 "--launcher", "slurm", "--partition", partition, "--time", "10:00"]) == 0
    capsys.readouterr()
    d = sweep_dir_of(runs)
    job = f"{json.loads((d / 'jobs.json').read_text())[0]['job_id']}_1"

    def progress() -> int:
        rd = task_state(d, 1).get("run_dir")
        if not rd or not (Path(rd) / "metrics.jsonl").exists():
            return 0
        return max((json.loads(x)["step"] for x in (Path(rd) / "metrics.jsonl").read_text().splitlines()), default=0)

    # 1. the warning signal before the time limit: the task saves, then requeues itself
    wait_for("the run to pass step 20", lambda: progress() >= 20, every=0.2)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
    wait_for("the task to requeue itself", lambda: task_state(d, 1).get("state") == "requeued")
    run_dir = Path(task_state(d, 1)["run_dir"])
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    wait_for("the requeued task to be pending", lambda: any("PENDING" in q for q in queued(d)))
    release_start(job)
    wait_for("the second start", lambda: task_state(d, 1).get("starts") == 2 and task_state(d, 1).get("state") == "running")

    # 2. `scontrol requeue` from outside, in mid-run
    stopped_at = progress()
    wait_for("the resumed run to go on", lambda: progress() >= stopped_at + 20, every=0.2)
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for("the requeued task to be pending", lambda: any("PENDING" in q for q in queued(d)))
    assert main(["sweep", "--status", str(d)]) == 0
    assert "1 preempted" in capsys.readouterr().out
    release_start(job)
    wait_for("the task to finish", lambda: task_state(d, 1).get("state") == "finished")
    assert task_state(d, 1)["starts"] == 3
    assert run_folders(runs) == [run_dir]  # resumed in place each time
    (slurm_log,) = (d / "logs").glob("*_1.out")
    log = slurm_log.read_text()
    assert len(list((d / "logs").glob("task1-start*.err"))) == 3  # the training's own stderr, one per start
    assert log.count(f"task 1: resume {run_dir}") == 2
    assert "SIGUSR1: saved" in log and "requeued itself" in log and "requeued by Slurm" in log

    # The same run without interruption, here: every recorded metric is equal.
    cfg = load_config(RESNET20, [*steps, *SYNTHETIC, f"train.runs_dir={tmp_path / 'local'}", "train.threads=1"])
    plain = train(cfg)
    assert train_records(run_dir) == train_records(plain)
    s_slurm = json.loads((run_dir / "summary.json").read_text())
    s_plain = json.loads((plain / "summary.json").read_text())
    assert s_slurm["test_top1"] == s_plain["test_top1"] and s_slurm["best_val_step"] == s_plain["best_val_step"]


# ---------------------------------------------------------------- a rerun submits only what is missing
@pytest.mark.slurm
def test_a_rerun_of_a_half_finished_sweep_submits_only_what_is_missing(tmp_path, partition, capsys):
    argv = slurm_argv(tmp_path, partition, "--set", "optim.lr=0.01,0.02", "--seeds", "2")
    assert main([*argv, "--sbatch-arg=--hold"]) == 0
    capsys.readouterr()
    d = sweep_dir_of(tmp_path)
    job = json.loads((d / "jobs.json").read_text())[0]["job_id"]
    for task in (1, 2):
        subprocess.run(["scontrol", "release", f"{job}_{task}"], check=True)
    wait_for("tasks 1 and 2 to finish", lambda: all(task_state(d, i).get("state") == "finished" for i in (1, 2)))
    subprocess.run(["scancel", job], check=True)
    wait_for("the queue to empty", lambda: not queued(d))
    assert main(["sweep", "--status", str(d)]) == 1  # two tasks left the queue unfinished
    out = capsys.readouterr().out
    assert "2 finished, 2 failed" in out and "cancelled?" in out

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skip resnet20-lr=0.01 seed=") == 2
    assert "(2 of 4 tasks: 3-4)" in out
    history = json.loads((d / "jobs.json").read_text())
    assert [h["tasks"] for h in history] == [[1, 2, 3, 4], [3, 4]]
    wait_for("tasks 3 and 4 to finish", lambda: not queued(d))
    assert main(["sweep", "--status", str(d)]) == 0
    assert "4 tasks: 4 finished" in capsys.readouterr().out
    assert len(run_folders(tmp_path)) == 4  # one run per combination
    assert main(argv) == 0  # and now nothing at all
    assert "nothing to submit" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: one line, nothing lost
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_no_sbatch_on_path_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    before = tree(tmp_path)
    assert main(["sweep", RESNET20, "--set", "optim.lr=0.01,0.02", *SYNTHETIC, "--runs-dir", str(tmp_path),
                 "--launcher", "slurm"]) == 2
    assert "sbatch" in one_line_error(capsys) and tree(tmp_path) == before


def test_a_time_limit_shorter_than_one_evaluation_is_one_clear_line(tmp_path, capsys):
    before = tree(tmp_path)
    for bad in ("1", "0:02:30", "abc", "1:2:3:4"):
        assert main(["sweep", RESNET20, *SYNTHETIC, "--runs-dir", str(tmp_path), "--launcher", "slurm",
                     "--time", bad]) == 2
        err = one_line_error(capsys)
        assert "--time" in err and bad in err
    assert main(["sweep", RESNET20, *SYNTHETIC, "--runs-dir", str(tmp_path), "--launcher", "slurm",
                 "--time", "2"]) == 2
    assert "shorter than one evaluation" in one_line_error(capsys)
    assert tree(tmp_path) == before
    assert parse_time("90") == 5400 and parse_time("1:30") == 90 and parse_time("1:00:00") == 3600
    assert parse_time("2-0") == 172800 and parse_time("1-2:03:04") == 93784
    with pytest.raises(ConfigError):
        parse_time("1:2:3:4")
    assert array_spec([1, 2, 3, 5, 7, 8], 2) == "1-3,5,7-8%2" and array_spec([4], None) == "4"


def test_slurm_options_without_the_slurm_launcher_are_refused(tmp_path, capsys):
    assert main(["sweep", RESNET20, "--runs-dir", str(tmp_path), "--partition", "gpu"]) == 2
    assert "--partition" in one_line_error(capsys)


@pytest.mark.slurm
def test_an_unknown_partition_is_one_clear_line(tmp_path, partition, capsys):
    before = tree(tmp_path)
    assert main(slurm_argv(tmp_path, "no-such-partition")) == 2
    err = one_line_error(capsys)
    assert "'no-such-partition'" in err and partition in err
    assert tree(tmp_path) == before


@pytest.mark.slurm
def test_a_sweep_folder_from_another_sweep_is_one_clear_line(tmp_path, partition, capsys):
    shared = tmp_path / "the-sweep"
    assert main([*slurm_argv(tmp_path, partition, "--set", "optim.lr=0.01"), "--sweep-dir", str(shared),
                 "--sbatch-arg=--hold"]) == 0
    capsys.readouterr()
    job = json.loads((shared / "jobs.json").read_text())[0]["job_id"]
    subprocess.run(["scancel", job], check=True)
    before = {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()}
    assert main([*slurm_argv(tmp_path, partition, "--set", "optim.lr=0.02"), "--sweep-dir", str(shared)]) == 2
    err = one_line_error(capsys)
    assert "holds another sweep" in err and str(shared) in err
    assert {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()} == before
    assert not (tmp_path / "sweeps").exists()  # nothing submitted, nothing written elsewhere
    # A folder that is no sweep at all, and a status request for one:
    assert main(["sweep", "--status", str(tmp_path)]) == 2
    assert "not a classbench sweep folder" in one_line_error(capsys)


# ---------------------------------------------------------------- multi-node DDP, as docs/distributed.md says
@pytest.mark.slurm
@pytest.mark.slow
def test_ddp_under_srun_with_two_tasks_and_gloo(tmp_path, partition):
    """docs/distributed.md's batch script, on the one-node cluster: two srun tasks stand for two nodes."""
    script = tmp_path / "ddp.sbatch"
    script.write_text(DDP_SCRIPT.format(python=sys.executable, config=RESNET20, partition=partition,
                                        overrides=" ".join([*SYNTHETIC, "train.steps=10", "train.device=cpu",
                                                            f"train.runs_dir={tmp_path / 'runs'}"]),
                                        out=tmp_path / "ddp.out"))
    r = subprocess.run(["sbatch", "--parsable", "--wait", str(script)], capture_output=True, text=True,
                       timeout=TIMEOUT, cwd=REPO)
    log = (tmp_path / "ddp.out").read_text() if (tmp_path / "ddp.out").exists() else ""
    assert r.returncode == 0, r.stderr + log
    (run,) = run_folders(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 10


DDP_SCRIPT = """#!/bin/bash
#SBATCH --nodes=1 --ntasks=2 --cpus-per-task=1 --partition={partition} --time=10:00 --output={out}
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
srun --kill-on-bad-exit=1 bash -c '{python} -m torch.distributed.run \\
    --nnodes=$SLURM_NTASKS --node-rank=$SLURM_PROCID --nproc-per-node=1 \\
    --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT \\
    -m classbench train {config} {overrides}'
"""
