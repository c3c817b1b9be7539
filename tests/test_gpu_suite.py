"""benchmarks/gpu_suite.sh (issue #21, item 5), checked on the CPU with --smoke.

The smoke run trains every run of the GPU plan for 2 steps on small CIFAR copies in the official format
(support/data.py), then records them with `classbench record`, under a temporary folder: the same
script, configs and commands as on a GPU, at a tiny budget.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from support.data import write_cifar10, write_cifar100

SCRIPT = REPO / "benchmarks" / "gpu_suite.sh"
INSIGHT = {"resnet18-imagenet-stem", "resnet18-ms1", "resnet18-ms2", "vitn-12x256-8x8", "vitn-12x256-8x8-ra"}


def run_suite(tmp_path: Path, data: Path | None, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CLASSBENCH_DATA", "OUT")}
    env["OUT"] = str(tmp_path / "out")
    env["CLASSBENCH_DATA"] = str(data if data is not None else tmp_path / "no-data")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def records(folder: Path) -> dict[str, list[dict]]:
    """config name -> the configs of the run records under folder."""
    out: dict[str, list[dict]] = {}
    for cfg in sorted(folder.rglob("config.yaml")):
        c = yaml.safe_load(cfg.read_text())
        assert (cfg.parent / "summary.json").is_file(), cfg.parent
        assert not list(cfg.parent.rglob("*.pt")), f"{cfg.parent}: a record holds no checkpoint"
        out.setdefault(c["name"], []).append(c)
    return out


def repo_results() -> set[str]:
    return {str(p.relative_to(REPO)) for p in (REPO / "results").rglob("*")} if (REPO / "results").exists() else set()


@pytest.mark.slow
def test_smoke_runs_the_whole_plan_on_cpu_and_records_it_outside_the_repo(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, n_train_per_batch=20, n_test=40)
    write_cifar100(data, n_train=300, n_test=40)
    before = repo_results()
    proc = run_suite(tmp_path, data, "--smoke")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert repo_results() == before  # smoke never writes into the repo's results/
    results = tmp_path / "out" / "results"

    resnet18 = records(results / "gpu-seed003-resnet18")
    assert list(resnet18) == ["resnet18"] and resnet18["resnet18"][0]["train"]["device"] == "cpu"
    assert resnet18["resnet18"][0]["train"]["steps"] == 2  # the smoke budget, on seed 003's recipe
    assert resnet18["resnet18"][0]["model"]["args"]["init"] == "kaiming_fan_in"

    for dataset in ("cifar10", "cifar100"):
        suite = records(results / f"gpu-seed002-{dataset}")
        enhuiz = {p.stem for p in (REPO / "configs" / dataset).glob("*.yaml")
                  if "enhuiz/image-classification" in p.read_text()}
        assert set(suite) == enhuiz and len(enhuiz) == 19
        seeds = {name: sorted(c["train"]["seed"] for c in cfgs) for name, cfgs in suite.items()}
        # one seed each; the insight questions' arms get the smoke's 2 seeds (the GPU run: 3)
        assert seeds == {name: [0, 1] if name in INSIGHT else [0] for name in enhuiz}
        assert all(c["data"]["name"] == dataset for cfgs in suite.values() for c in cfgs)

    pooling = records(results / "gpu-seed004-cifar10")
    assert sorted(pooling) == ["cvit-tiny", "mcvit-tiny"]
    assert all(sorted(c["train"]["seed"] for c in cfgs) == [0, 1] for cfgs in pooling.values())
    assert {c["model"]["name"] for cfgs in pooling.values() for c in cfgs} == {"cvit_tiny", "mcvit_tiny"}

    fast = records(results / "gpu-fast")
    assert list(fast) == ["fast"] and sorted(c["train"]["seed"] for c in fast["fast"]) == [0, 1]
    summary = json.loads(next((results / "gpu-fast").rglob("summary.json")).read_text())
    assert summary["model"] == "airbench_net" and summary["steps"] == 2
    assert "gpu_suite: every part finished" in (tmp_path / "out" / "runs" / "gpu_suite.log").read_text()


@pytest.mark.slow
def test_without_cifar100_the_suite_part_is_skipped_with_a_message(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, n_train_per_batch=20, n_test=40)
    proc = run_suite(tmp_path, data, "--smoke", "--only", "seed002-cifar100")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "skipped seed002-cifar100: no cifar100 copy here: no cifar-100-python/ or cifar-100-python.tar.gz" in proc.stdout
    assert not list((tmp_path / "out" / "results").rglob("config.yaml"))


@pytest.mark.slow
def test_time_limit_stops_the_suite_cleanly_and_a_rerun_goes_on(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, n_train_per_batch=20, n_test=40)
    # seed002-cifar10's smoke is 24 runs (19 configs, 5 more seeds): one at a time they take well over 40 s
    # (a run's process start alone takes seconds), so the limit stops that sweep while it runs, after the
    # data check, and the next part never starts
    proc = run_suite(tmp_path, data, "--smoke", "--jobs", "1", "--only", "seed002-cifar10", "seed003-resnet18",
                     "--time-limit", "40")
    assert proc.returncode == 3, (proc.stdout + proc.stderr)[-3000:]
    assert "stopped at --time-limit (40 s): seed002-cifar10's sweep" in proc.stdout
    assert "not started: seed003-resnet18's sweep of 1 config(s)" in proc.stdout
    assert "FAILED" not in proc.stdout and "run the same command again to go on" in proc.stdout
    results = tmp_path / "out" / "results"
    first = sum(len(v) for v in records(results / "gpu-seed002-cifar10").values()) if results.exists() else 0
    assert first < 24  # what finished is recorded, and only that
    # a rerun goes on: the part that never started runs and is recorded (the sweep resumes stopped runs:
    # tests/test_sweep.py)
    proc = run_suite(tmp_path, data, "--smoke", "--only", "seed003-resnet18")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert list(records(results / "gpu-seed003-resnet18")) == ["resnet18"]


@pytest.mark.slow
def test_a_fresh_machine_skips_the_runs_the_results_already_record(tmp_path):
    """A GPU lease starts bare: the records in results/ are all that is left of the last one."""
    data = tmp_path / "data"
    write_cifar10(data, n_train_per_batch=20, n_test=40)
    proc = run_suite(tmp_path, data, "--smoke", "--only", "fast", "--runs-dir", str(tmp_path / "machine1"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    results = tmp_path / "out" / "results" / "gpu-fast"
    recorded = sorted(p.parent.relative_to(results) for p in results.rglob("summary.json"))
    assert len(recorded) == 2  # the smoke's 2 seeds
    proc = run_suite(tmp_path, data, "--smoke", "--only", "fast", "--runs-dir", str(tmp_path / "machine2"))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert f"reusing the 2 finished run(s) recorded in {results}" in log and log.count("skip fast seed=") == 2
    machine2 = tmp_path / "machine2" / "fast"
    assert sorted(p.parent.relative_to(machine2) for p in machine2.rglob("summary.json")) == recorded  # nothing trained
    assert sorted(p.parent.relative_to(results) for p in results.rglob("summary.json")) == recorded  # nothing added


@pytest.mark.slow
def test_a_copy_that_does_not_load_fails_the_part(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    proc = run_suite(tmp_path, data, "--smoke", "--only", "fast")
    assert proc.returncode == 1
    assert "FAILED: fast: cifar10 is there but does not load" in proc.stdout and "md5" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--only", "nope"], "unknown part 'nope'"),
    (["--seeds-fast", "0"], "must be positive integers"),
    (["--time-limit", "10m"], "must be positive integers"),
    (["--jobs", "x"], "must be positive integers"),
    (["--device"], "--device needs a value"),
    (["--smoke", "--results", str(REPO / "results" / "smoke")], "must not write into the repo's results/"),
])
def test_bad_arguments_exit_2_before_anything_runs(tmp_path, args, message):
    before = repo_results()
    proc = run_suite(tmp_path, None, *args, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "out").exists() and repo_results() == before


@pytest.mark.slow
def test_without_a_gpu_the_full_suite_refuses_to_start(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    proc = run_suite(tmp_path, None, "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
                     timeout=120)
    assert proc.returncode == 2 and "no GPU is visible" in proc.stderr
    assert not list((tmp_path / "runs").rglob("config.yaml"))
