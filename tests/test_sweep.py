"""`classbench sweep`: grids of runs named after what they vary, seeds as an axis, finished runs
skipped, interrupted ones resumed, children that die with the sweep, failures reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from classbench.cli import main
from classbench.compare.runs import pid_alive
from classbench.config import load_config, to_yaml
from classbench.drivers import sweep as sweep_mod
from classbench.drivers.sweep import (ChildResult, Sweep, assign_resources, config_hash, parse_sets, plan,
                                      run_config_hash, run_name, split_values, train_command)
from classbench.errors import ConfigError

from conftest import REPO

RESNET20 = str(REPO / "configs/cifar10/resnet20.yaml")
# Tiny synthetic data and a tiny model so that each run takes seconds; one thread per run (the machine is shared).
SYNTHETIC = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=128", "data.image_size=16",
             "data.val_size=32", "data.train_subset_size=16", "model.name=toy_dilated", "model.args.width=8",
             "optim.name=adam", "train.precision=fp32", "train.batch_size=16", "eval.batch_size=64",
             "eval.splits=[val,test]", "log.every=5", "log.progress=never", "train.threads=1"]


def run_folders(runs_dir, name="resnet20"):
    return sorted((runs_dir / "synthetic" / name).iterdir())


def all_run_folders(runs_dir):
    return sorted(p for p in (runs_dir / "synthetic").glob("*/*") if p.is_dir())


def lr_of(run_dir):
    return yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"]


def status_of(run_dir):
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    """`classbench sweep configs/cifar10/resnet20.yaml --set optim.lr=0.05,0.1 train.steps=20` on tiny data."""
    runs = tmp_path_factory.mktemp("sweep")
    argv = ["sweep", RESNET20, "--set", "optim.lr=0.05,0.1", "train.steps=20", *SYNTHETIC, "--runs-dir", str(runs)]
    assert main(argv) == 0
    return runs, argv


@pytest.mark.slow  # first_sweep spawns two training processes
def test_sweep_makes_one_run_per_value_named_after_it_and_prints_the_summary(first_sweep, capsys):
    runs, argv = first_sweep
    assert main(argv) == 0  # the rerun: everything skipped, the summary printed again
    out = capsys.readouterr().out
    # Each run's folder, config name and summary name carry the value swept (#13 item 2).
    for name, lr in (("resnet20-lr=0.05", 0.05), ("resnet20-lr=0.1", 0.1)):
        (folder,) = run_folders(runs, name)
        assert lr_of(folder) == lr
        assert yaml.safe_load((folder / "config.yaml").read_text())["name"] == name
        assert json.loads((folder / "summary.json").read_text())["name"] == name
        assert status_of(folder)["status"] == "finished"
        assert json.loads((folder / "summary.json").read_text())["steps"] == 20
    assert "| run | config | model |" in out  # the `classbench summary` table
    assert sum(line.startswith("| synthetic/resnet20-lr=0.05/") for line in out.splitlines()) == 1
    assert sum(line.startswith("| synthetic/resnet20-lr=0.1/") for line in out.splitlines()) == 1


@pytest.mark.slow  # spawns processes
def test_rerun_skips_finished_runs_and_force_reruns_them_two_at_a_time(first_sweep, capsys, monkeypatch):
    runs, argv = first_sweep
    before = all_run_folders(runs)
    assert len(before) == 2
    files = {p: p.read_bytes() for f in before for p in f.rglob("*") if p.is_file()}
    with monkeypatch.context() as m:  # skipped means no child at all, whatever the machine's speed
        m.setattr(sweep_mod, "run_child", lambda *a, **k: pytest.fail(f"a finished run was started again: {a[0]}"))
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skip resnet20-lr=") == 2 and "2 skipped" in out
    assert all_run_folders(runs) == before
    assert {p: p.read_bytes() for f in before for p in f.rglob("*") if p.is_file()} == files

    assert main([*argv, "--force", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    after = all_run_folders(runs)
    assert len(after) == 4 and "2 finished" in out
    assert sorted(lr_of(f) for f in after) == [0.05, 0.05, 0.1, 0.1]


@pytest.mark.slow  # spawns processes
def test_a_failed_run_is_reported_with_its_run_folder_and_does_not_stop_the_others(tmp_path, capsys):
    # SGD at lr 1e12 makes the loss non-finite within the first steps: the run has a folder, and stops.
    sgd = [o for o in SYNTHETIC if not o.startswith("optim.name=")]
    code = main(["sweep", RESNET20, "--set", "optim.lr=1e12,0.01", "optim.name=sgd", "train.steps=30", *sgd,
                 "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 finished, 1 failed" in out
    assert "FAILED:" in out and "optim.lr=1e12" in out and "exit status 2" in out
    assert "non-finite" in out  # the last lines of its stderr
    (bad,) = run_folders(tmp_path, "resnet20-lr=1e12")
    # The sweep learned the failed run's folder through the run-folder channel, not from a line of stdout.
    assert f"run folder {bad.resolve()}" in out
    assert status_of(bad)["status"] == "nonfinite"
    (good,) = run_folders(tmp_path, "resnet20-lr=0.01")
    assert status_of(good)["status"] == "finished"


# ---------------------------------------------------------------- planning, without training
def test_values_split_on_commas_outside_brackets():
    assert split_values("0.05,0.1") == ["0.05", "0.1"]
    assert split_values("[val,test]") == ["[val,test]"]
    assert split_values("{width: 8, d: [1,2]},{}") == ["{width: 8, d: [1,2]}", "{}"]
    assert split_values("20") == ["20"]
    assert parse_sets(["optim.lr=0.05,0.1", "train.steps=20", "eval.splits=[val,test]"]) == [
        ("optim.lr", ["0.05", "0.1"]), ("train.steps", ["20"]), ("eval.splits", ["[val,test]"])]
    with pytest.raises(ConfigError, match="give the configs before --set"):
        parse_sets(["optim.lr"])
    with pytest.raises(ConfigError, match="twice"):
        parse_sets(["optim.lr=0.1", "optim.lr=0.2"])


def test_plan_is_the_cartesian_product_and_checks_every_combination(tmp_path):
    jobs = plan([RESNET20, RESNET20], parse_sets(["optim.lr=0.05,0.1", "train.seed=0,1", *SYNTHETIC]), str(tmp_path))
    assert len(jobs) == 4  # the second, identical config adds nothing
    assert [j.label for j in jobs] == ["resnet20-lr=0.05 seed=0", "resnet20-lr=0.05 seed=1",
                                      "resnet20-lr=0.1 seed=0", "resnet20-lr=0.1 seed=1"]
    assert all(j.cfg.train.runs_dir == str(tmp_path) for j in jobs)
    with pytest.raises(ConfigError, match="optim.lr=-1"):
        plan([RESNET20], parse_sets(["optim.lr=0.1,-1"]))


def test_run_names_carry_the_swept_values_but_not_the_seed():
    """#13 item 2: `--set model.name=...` files each model under its own name; seeds of one recipe share one."""
    jobs = plan([RESNET20], parse_sets(["model.name=resnet20,toy_dilated", "train.seed=0,1", "optim.lr=0.1"]))
    assert [j.name for j in jobs] == ["resnet20-model=resnet20"] * 2 + ["resnet20-model=toy_dilated"] * 2
    assert [j.cfg.model.name for j in jobs] == ["resnet20", "resnet20", "toy_dilated", "toy_dilated"]
    # "<section>.name" is shortened to the section; two swept keys with the same short form keep
    # their full keys; odd characters become '_'.
    jobs = plan([RESNET20], parse_sets(["model.name=resnet20,toy_dilated", "optim.name=sgd,adam",
                                        "eval.splits=[val,test]"]))
    assert jobs[0].name == "resnet20-model=resnet20-optim=sgd"
    assert run_name("cfg", [("optim.lr", "0.1"), ("sched.lr", "0.2")]) == "cfg-optim.lr=0.1-sched.lr=0.2"
    assert run_name("cfg", [("model.args", "{width: 8, depth: [1,2]}")]) == "cfg-args=width_8_depth_1_2"
    long = run_name("cfg", [("optim.lr", "1" * 300)])
    assert len(long) <= 120 and long != run_name("cfg", [("optim.lr", "1" * 299)])
    # Nothing swept: the config's own name.
    assert [j.name for j in plan([RESNET20], parse_sets(["optim.lr=0.1"]))] == ["resnet20"]


def test_a_name_can_be_given_explicitly():
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.05,0.1"]), name="baseline")
    assert [j.name for j in jobs] == ["baseline-lr=0.05", "baseline-lr=0.1"]
    (job,) = plan([RESNET20], parse_sets(["optim.lr=0.1"]), seeds=1, name="mine")
    assert job.name == "mine" and job.cfg.name == "mine"
    with pytest.raises(ConfigError, match="either --name"):
        plan([RESNET20], parse_sets(["name=a"]), name="b")


def test_seeds_are_an_axis_and_the_split_seed_stays_fixed():
    """#15 item 1: --seeds N is train.seed=0..N-1; every seed sees the same val and test images."""
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.05,0.1", "data.split_seed=7"]), seeds=3)
    assert [(j.cfg.optim.lr, j.cfg.train.seed) for j in jobs] == [(lr, s) for lr in (0.05, 0.1) for s in (0, 1, 2)]
    assert {j.cfg.data.split_seed for j in jobs} == {7}
    assert len({j.name for j in jobs}) == 2  # one name per recipe: the seeds of an arm share it
    same = plan([RESNET20], parse_sets(["optim.lr=0.05,0.1", "data.split_seed=7", "train.seed=0,1,2"]))
    assert [j.hash for j in jobs] == [j.hash for j in same]
    with pytest.raises(ConfigError, match="either --seeds"):
        plan([RESNET20], parse_sets(["train.seed=0,1"]), seeds=2)
    with pytest.raises(ConfigError, match="at least 1"):
        plan([RESNET20], [], seeds=0)
    assert main(["sweep", RESNET20, "--seeds", "2", "--set", "train.seed=1", "--runs-dir", "/nonexistent"]) == 2


def test_config_hash_ignores_where_and_how_a_run_is_shown(tmp_path):
    a = load_config(RESNET20, ["optim.lr=0.1"])
    assert config_hash(a) == config_hash(load_config(RESNET20, ["optim.lr=0.1", "train.runs_dir=elsewhere",
                                                                "train.threads=3", "log.progress=never"]))
    assert config_hash(a) != config_hash(load_config(RESNET20, ["optim.lr=0.05"]))
    (tmp_path / "config.yaml").write_text(to_yaml(a))
    assert run_config_hash(tmp_path) == config_hash(a)  # what a rerun compares with


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_jobs_divide_threads_on_cpu_and_gpu_alike_and_assign_gpus_round_robin(tmp_path, monkeypatch):
    """#14 item 13: two GPU runs on an 8-core machine get 4 threads each, not 8 each."""
    launched = []

    def fake_child(cmd, env, log_base, run_dir_file, started=None):
        launched.append((cmd, env.get("CUDA_VISIBLE_DEVICES")))
        time.sleep(0.2)
        return ChildResult(0, None, "finished", [])

    monkeypatch.setattr(sweep_mod, "run_child", fake_child)
    monkeypatch.setattr("classbench.train.precision.default_threads", lambda: 8)
    base = [o for o in SYNTHETIC if not o.startswith("train.threads")]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01,0.02,0.03,0.04", *base]), str(tmp_path))
    Sweep(jobs, n_jobs=2, out=open(tmp_path / "log", "w")).run()
    assert sorted(g for _, g in launched) == ["3", "3", "5", "5"]
    assert all("train.threads=4" in cmd for cmd, _ in launched)

    launched.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01,0.02", *base]), str(tmp_path))
    Sweep(jobs, n_jobs=2, out=open(tmp_path / "log", "w")).run()
    assert all("train.threads=4" in cmd for cmd, _ in launched) and len(launched) == 2
    # A run that sets its own threads keeps them; one run at a time is not divided.
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01,0.02", *base, "train.threads=3"]), str(tmp_path))
    assign_resources(jobs, 2)
    assert all(j.extra == [] for j in jobs)
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01", *base]), str(tmp_path))
    assign_resources(jobs, 1)
    assert jobs[0].extra == []


def _threads_given(cmd: list[str]) -> str:
    """The value of the last train.threads= on a command line (the config merges overrides in order)."""
    return [a for a in cmd if a.startswith("train.threads=")][-1].split("=", 1)[1]


def test_a_resumed_run_follows_this_sweep_in_what_does_not_change_results(tmp_path):
    """A run first launched two at a time (one thread each) and resumed by a sweep of one at a time gets
    every core again; this sweep's checkpoint interval reaches it; what changes results stays the run's own."""
    from classbench.train.precision import default_threads

    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01", "train.checkpoint_every=7"]), str(tmp_path))
    assign_resources(jobs, 1)
    cmd = train_command(jobs[0], tmp_path / "run")
    assert cmd[cmd.index("--resume") + 1] == str(tmp_path / "run")
    assert _threads_given(cmd) == "0" and "train.checkpoint_every=7" in cmd  # 0: every physical core
    assert not [a for a in cmd if a.startswith(("optim.lr=", "train.runs_dir=", "name="))]
    assign_resources(jobs, 2)
    assert _threads_given(train_command(jobs[0], tmp_path / "run")) == str(max(1, default_threads() // 2))
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01", "train.threads=3"]), str(tmp_path))
    assign_resources(jobs, 2)
    assert _threads_given(train_command(jobs[0], tmp_path / "run")) == "3"
    # a Slurm task rebuilds its job without a resolved config; the task's CPUs come as its extra
    task = sweep_mod.Job(1, RESNET20, ["train.checkpoint_every=7"], "x", None, "h", extra=["train.threads=4"])  # type: ignore[arg-type]
    cmd = train_command(task, tmp_path / "run")
    assert _threads_given(cmd) == "4" and "train.checkpoint_every=7" in cmd


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_a_rerun_skips_what_finished_and_force_starts_it_again(tmp_path, monkeypatch):
    """The quick check of the skip/force logic beside the slow tests above: the children are stand-ins that
    write a finished run folder of the config they were given, through the run-folder channel."""
    from classbench import runfolder

    started = []

    def fake_child(cmd, env, log_base, run_dir_file, started_cb=None):
        cfg = load_config(cmd[4], cmd[5:])
        run_dir = runfolder.create_run_dir(cfg.train.runs_dir, cfg.data.name, cfg.name)
        (run_dir / runfolder.CONFIG).write_text(to_yaml(cfg))
        (run_dir / runfolder.SUMMARY).write_text(json.dumps({"name": cfg.name, "steps": cfg.train.steps}))
        runfolder.write_status(run_dir, runfolder.FINISHED)
        started.append(run_dir)
        return ChildResult(0, run_dir, runfolder.FINISHED, [])

    monkeypatch.setattr(sweep_mod, "run_child", fake_child)

    def sweep(**kw):
        jobs = plan([RESNET20], parse_sets(["optim.lr=0.05,0.1", "train.steps=20", *SYNTHETIC]), str(tmp_path))
        return [r.status for r in Sweep(jobs, out=open(os.devnull, "w"), **kw).run()]

    assert sweep() == ["finished", "finished"] and len(started) == 2
    assert sorted(lr_of(f) for f in started) == [0.05, 0.1]
    assert sweep() == ["skipped", "skipped"] and len(started) == 2  # nothing started again
    assert sweep(force=True, n_jobs=2) == ["finished", "finished"] and len(started) == 4
    assert sorted(lr_of(f) for f in all_run_folders(tmp_path)) == [0.05, 0.05, 0.1, 0.1]


@pytest.mark.parametrize("returncode, status, stopped, expected", [
    (0, "finished", False, "finished"),
    (-signal.SIGTERM, "finished", True, "finished"),  # the stop landed while a finished run exited
    (-signal.SIGTERM, "finished", False, "failed"),
    (130, "interrupted", True, "interrupted"),  # the run caught the stop: last.pt, status interrupted
    (-signal.SIGTERM, None, True, "interrupted"),  # killed in torch's import: no run folder yet
    (-signal.SIGTERM, "running", True, "interrupted"),  # this sweep's stop landed before the run caught it
    (-signal.SIGTERM, "running", False, "failed"),  # someone else's SIGTERM: this sweep cannot vouch for it
    (1, "running", True, "failed"),  # a crash is a crash, stop or not
    (1, "failed", False, "failed"),
])
def test_outcome_of_a_child(tmp_path, returncode, status, stopped, expected):
    """CI once saw a --time-limit stop reported as FAILED: the run died of the sweep's own SIGTERM."""
    child = ChildResult(returncode, tmp_path if status else None, status, [])
    assert sweep_mod.outcome(child, stopped) == expected


# ---------------------------------------------------------------- real processes
@pytest.mark.slow
def test_a_sigkilled_sweep_takes_its_children_along_and_its_rerun_resumes_them(tmp_path):
    """#13 item 6 and #17 item 2: `kill -9` of a sweep with --jobs 2 leaves no training behind; the rerun
    resumes both runs from last.pt in their own folders: 2 run folders for 2 combinations, never 4."""
    argv = [sys.executable, "-m", "classbench", "sweep", RESNET20, "--set", "optim.lr=0.01,0.02", "train.steps=400",
            "train.checkpoint_every=5", "eval.every=200", *SYNTHETIC, "--jobs", "2", "--runs-dir", str(tmp_path)]
    sweep = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 180
    folders = []
    while time.monotonic() < deadline:
        folders = [f for f in all_run_folders(tmp_path) if (f / "checkpoints" / "last.pt").exists()] \
            if (tmp_path / "synthetic").exists() else []
        if len(folders) == 2:
            break
        assert sweep.poll() is None, "the sweep ended before both runs saved a checkpoint"
        time.sleep(0.2)
    assert len(folders) == 2, "the runs did not start in time"
    pids = [status_of(f)["pid"] for f in folders]
    assert all(pid_alive(p) for p in pids)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(p) for p in pids), "the children outlived the SIGKILLed sweep"
    for f in folders:  # they stopped as SIGTERM stops a training: last.pt saved, status interrupted
        assert status_of(f)["status"] == "interrupted"
        assert (f / "checkpoints" / "last.pt").exists()

    from classbench.train.precision import default_threads

    # rerun one at a time without a thread count: the resumed runs train on every core, not on the one
    # thread the first sweep gave each
    rerun_argv = [a for a in argv if a != "train.threads=1"]
    rerun_argv[rerun_argv.index("--jobs") + 1] = "1"
    rerun = subprocess.run(rerun_argv, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stdout.count("resume resnet20-lr=") == 2
    assert all_run_folders(tmp_path) == folders  # resumed in place: no new run folder
    for f in folders:
        assert status_of(f)["status"] == "finished"
        summary = json.loads((f / "summary.json").read_text())
        assert summary["steps"] == 400 and summary["threads"] == default_threads()
        steps = [r["step"] for r in map(json.loads, (f / "metrics.jsonl").read_text().splitlines())
                 if r["split"] == "train"]
        assert steps == sorted(set(steps))  # no step recorded twice


def test_a_rerun_does_not_start_a_run_that_is_still_training(tmp_path, capsys):
    """A run folder whose status says running, with a live pid on this host, is left alone."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        jobs = plan([RESNET20], parse_sets(["optim.lr=0.01", "train.steps=5", *SYNTHETIC]), str(tmp_path))
        folder = tmp_path / "synthetic" / "resnet20" / "20990101-000000"
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "config.yaml").write_text(to_yaml(jobs[0].cfg))
        (folder / "status.json").write_text(json.dumps({"status": "running", "pid": live.pid,
                                                        "host": os.uname().nodename}))
        (results,) = Sweep(jobs, out=sys.stdout).run()
        assert results.status == "running elsewhere" and results.run_dir == folder
        assert "still training" in capsys.readouterr().out
        assert all_run_folders(tmp_path) == [folder]
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow  # mounts a tmpfs and spawns a process
def test_a_sweep_on_a_full_disk_shows_the_error_that_stopped_the_run(full_disk, capsys):
    """#17: the child's stderr log on a full disk stays empty; the sweep still shows why the run failed."""
    code = main(["sweep", RESNET20, "--set", "optim.lr=0.01", "train.steps=3", *SYNTHETIC,
                 "--runs-dir", str(full_disk / "runs")])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED:" in out
    failed = out[out.index("FAILED:"):]
    assert "(empty)" not in failed
    assert "No space left on device" in failed or "disk may be full" in failed
