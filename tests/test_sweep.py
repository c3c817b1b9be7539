"""`classbench sweep`: grids of runs, skipping finished ones, failures reported, several at once."""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from classbench.cli import main
from classbench.config import load_config, to_yaml
from classbench.errors import ConfigError
from classbench.drivers.sweep import Sweep, config_hash, parse_sets, plan, run_config_hash, split_values

from conftest import REPO

RESNET20 = str(REPO / "configs/cifar10/resnet20.yaml")
# Tiny synthetic data so that each run takes seconds; one thread per run (the machine is shared).
SYNTHETIC = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=128", "data.image_size=16",
             "data.val_size=32", "data.train_subset_size=16", "train.batch_size=16", "eval.batch_size=64",
             "eval.splits=[val,test]", "log.every=5", "log.progress=never", "train.threads=1"]


def run_folders(runs_dir):
    return sorted((runs_dir / "synthetic" / "resnet20").iterdir())


def lr_of(run_dir):
    return yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"]


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    """`classbench sweep configs/cifar10/resnet20.yaml --set optim.lr=0.05,0.1 train.steps=20` on tiny data."""
    runs = tmp_path_factory.mktemp("sweep")
    argv = ["sweep", RESNET20, "--set", "optim.lr=0.05,0.1", "train.steps=20", *SYNTHETIC, "--runs-dir", str(runs)]
    return runs, argv


def test_sweep_makes_one_run_per_value_and_prints_the_summary(first_sweep, capsys):
    runs, argv = first_sweep
    assert main(argv) == 0
    out = capsys.readouterr().out
    folders = run_folders(runs)
    assert len(folders) == 2
    assert sorted(lr_of(f) for f in folders) == [0.05, 0.1]
    for f in folders:
        assert json.loads((f / "status.json").read_text())["status"] == "finished"
        assert json.loads((f / "summary.json").read_text())["steps"] == 20
    assert "sweep: 2 runs: 2 finished" in out
    assert "| run | config | model |" in out  # the `classbench summary` table
    assert sum(line.startswith("| synthetic/resnet20/") for line in out.splitlines()) == 2


def test_rerun_skips_finished_runs_and_force_reruns_them_two_at_a_time(first_sweep, capsys):
    runs, argv = first_sweep
    before = run_folders(runs)
    assert len(before) == 2  # made by the previous test
    t0 = time.perf_counter()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skip resnet20 optim.lr=") == 2 and "2 skipped" in out
    assert run_folders(runs) == before and time.perf_counter() - t0 < 30

    assert main([*argv, "--force", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    after = run_folders(runs)
    assert len(after) == 4 and "2 finished" in out
    assert sorted(lr_of(f) for f in after) == [0.05, 0.05, 0.1, 0.1]


def test_a_failed_run_is_reported_and_does_not_stop_the_others(tmp_path, capsys):
    code = main(["sweep", RESNET20, "--set", "model.args={bogus: 1},{}", "train.steps=3", *SYNTHETIC,
                 "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 finished, 1 failed" in out
    assert "FAILED:" in out and "model.args={bogus: 1}" in out and "exit status 2" in out
    assert "has no option 'bogus'" in out  # the last lines of its stderr
    (folder,) = run_folders(tmp_path)  # the other run finished
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"


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
    assert [j.label for j in jobs] == ["resnet20 optim.lr=0.05 train.seed=0", "resnet20 optim.lr=0.05 train.seed=1",
                                      "resnet20 optim.lr=0.1 train.seed=0", "resnet20 optim.lr=0.1 train.seed=1"]
    assert all(j.cfg.train.runs_dir == str(tmp_path) for j in jobs)
    with pytest.raises(ConfigError, match="optim.lr=-1"):
        plan([RESNET20], parse_sets(["optim.lr=0.1,-1"]))


def test_config_hash_ignores_where_and_how_a_run_is_shown(tmp_path):
    a = load_config(RESNET20, ["optim.lr=0.1"])
    assert config_hash(a) == config_hash(load_config(RESNET20, ["optim.lr=0.1", "train.runs_dir=elsewhere",
                                                                "train.threads=3", "log.progress=never"]))
    assert config_hash(a) != config_hash(load_config(RESNET20, ["optim.lr=0.05"]))
    (tmp_path / "config.yaml").write_text(to_yaml(a))
    assert run_config_hash(tmp_path) == config_hash(a)  # what a rerun compares with


def test_jobs_divide_threads_and_assign_gpus_round_robin(tmp_path, monkeypatch):
    import classbench.drivers.sweep as sweep_mod

    launched, lock = [], threading.Lock()

    class FakeProcess:
        def __init__(self, cmd, stdout, stderr, env):
            with lock:
                launched.append((cmd, env.get("CUDA_VISIBLE_DEVICES")))

        def wait(self):
            time.sleep(0.2)
            return 0

    monkeypatch.setattr(sweep_mod.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr("classbench.train.precision.default_threads", lambda: 8)
    base = [o for o in SYNTHETIC if not o.startswith("train.threads")]

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01,0.02,0.03,0.04", *base]), str(tmp_path))
    Sweep(jobs, n_jobs=2, out=open(tmp_path / "log", "w")).run()
    assert sorted(g for _, g in launched) == ["3", "3", "5", "5"]

    launched.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    jobs = plan([RESNET20], parse_sets(["optim.lr=0.01,0.02", *base]), str(tmp_path))
    Sweep(jobs, n_jobs=2, out=open(tmp_path / "log", "w")).run()
    assert all("train.threads=4" in cmd for cmd, _ in launched) and len(launched) == 2
