"""What a new user tripped on (#13): resume schedules, load-aware img/s, TensorBoard after the fact,
Ctrl-C, predict on folders with CSV, packaged configs (also from an installed wheel)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from support.configs import TINY

from classbench.cli import main


def _train(tmp_path: Path, *overrides: str) -> Path:
    from classbench.config import load_config
    from classbench.train.trainer import train

    return train(load_config(None, [*TINY, f"train.runs_dir={tmp_path / 'runs'}", *overrides]))


@pytest.fixture(scope="module")
def onecycle_run(tmp_path_factory) -> Path:
    """A finished 16-step onecycle run (4 evaluations)."""
    return _train(tmp_path_factory.mktemp("onecycle"), "train.steps=16", "eval.every=4",
                  "sched.name=onecycle", "optim.lr=0.05")


# ---------------------------------------------------------------- 5. a new budget on resume
def _lrs(run_dir: Path) -> dict[int, float]:
    from classbench.io import read_jsonl

    return {r["step"]: r["lr"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"}


def test_resume_with_a_new_budget_asks_before_changing_the_schedule(onecycle_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(onecycle_run, run)
    def records():  # the run's records; hidden files (a lock the resume takes and lets go) are not
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")}

    before = records()
    rc = main(["train", "--resume", str(run), "train.steps=32"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    # old and new plan, the lr now and after, both choices
    assert "planned over 16 steps and the new budget is 32" in err
    assert "train.resume_schedule=continue" in err and "train.resume_schedule=replan" in err
    assert "the lr becomes" in err and "at step 16 the lr is" in err
    assert records() == before  # nothing trained or written


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_resume_continue_keeps_the_old_plan_and_replan_stretches_it(onecycle_run, tmp_path, capsys):
    from classbench.config import load_config
    from classbench.train.optim import Schedule

    old_end = _lrs(onecycle_run)[16]
    runs = {}
    for choice in ("continue", "replan"):
        run = tmp_path / choice
        shutil.copytree(onecycle_run, run)
        assert main(["train", "--resume", str(run), "train.steps=32", f"train.resume_schedule={choice}"]) == 0
        err = capsys.readouterr().err
        assert f"train.resume_schedule={choice}:" in err  # said before training on
        runs[choice] = _lrs(run)
    # continue: the old plan's final lr holds for the added steps
    assert all(abs(runs["continue"][s] - old_end) < 1e-12 for s in range(17, 33) if s in runs["continue"])
    # replan: the lr follows a 32-step onecycle from step 17 on (it jumps up from the old end)
    cfg = load_config(None, [*TINY, "train.steps=32", "sched.name=onecycle", "optim.lr=0.05"])
    import torch

    sched = Schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1),
                     cfg.sched, base_lr=0.05, total_steps=32, steps_per_epoch=8, epoch_budget=False)
    logged = {s: lr for s, lr in runs["replan"].items() if s > 16}
    assert logged and all(abs(lr - sched.lr_at(s)) < 1e-12 for s, lr in logged.items())
    assert max(logged.values()) > 10 * old_end


def test_resume_with_a_budget_free_schedule_just_continues(tmp_path):
    run = _train(tmp_path, "train.steps=8", "eval.every=4")  # constant lr: a new budget changes nothing
    assert main(["train", "--resume", str(run), "train.steps=12"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 12


# ---------------------------------------------------------------- 7. img/s under load
def test_summary_records_the_load_and_marks_img_per_s_measured_under_load(onecycle_run, tmp_path, monkeypatch, capsys):
    from classbench.train import hostload

    s = json.loads((onecycle_run / "summary.json").read_text())
    assert s["cpu_cores"] == os.cpu_count()
    for key in ("load_avg_start", "load_avg_end"):
        assert isinstance(s[key], float) and s[key] >= 0
    assert isinstance(s["train_img_per_s_under_load"], bool)
    # summary's CSV carries the measure beside the flag (a 16-step run may be too short to measure: set one)
    copy = tmp_path / "copied" / onecycle_run.relative_to(onecycle_run.parents[2])
    shutil.copytree(onecycle_run, copy)
    (copy / "summary.json").write_text(json.dumps({**s, "others_busy_cores": 0.75}))
    assert main(["summary", str(tmp_path / "copied"), "--format", "csv"]) == 0
    assert next(csv.DictReader(io.StringIO(capsys.readouterr().out)))["others_busy_cores"] == "0.75"

    # the rule: other processes' load (the run's own threads taken off at the end) against the cores
    assert hostload.under_load(0.1, 2.2, own_threads=2, n_cores=4) is False
    assert hostload.under_load(3.0, 2.0, own_threads=2, n_cores=4) is True
    assert hostload.under_load(0.0, 5.0, own_threads=1, n_cores=4) is True

    # where /proc/stat is missing: a busy load average during a run makes summary.json say so, and
    # summary/report mark the img/s
    monkeypatch.setattr(hostload.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    monkeypatch.setattr(hostload.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(hostload, "_machine_busy_seconds", lambda: float("nan"))
    busy = _train(tmp_path, "train.steps=4", "eval.every=4", "name=busy")
    s = json.loads((busy / "summary.json").read_text())
    assert (s["load_avg_start"], s["load_avg_end"], s["cpu_cores"], s["train_img_per_s_under_load"]) == (9.0, 9.0, 2, True)
    assert s["others_busy_cores"] is None
    runs_dir = str(busy.parents[2])
    assert main(["summary", runs_dir]) == 0
    assert "(under load)" in capsys.readouterr().out
    assert main(["summary", runs_dir, "--format", "csv"]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["train_img_per_s_under_load"] == "True"
    assert row["others_busy_cores"] == ""  # not measured on this path


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the CPU-time measure reads Linux's /proc/stat")
def test_other_processes_cpu_time_is_measured_and_the_run_s_own_is_not(monkeypatch):
    from classbench.train import hostload

    # A spinning child is another process: about one core busy, measured before it ends (once reaped,
    # its time would count as this process's own).  Other work on the machine can only add to it.
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # past the interpreter's start
        start = hostload.sample()
        time.sleep(1.5)
        others = hostload.others_busy_cores(start, hostload.sample())
    finally:
        child.kill()
        child.wait()
    assert others is not None and others >= 0.6
    # The arithmetic, on made-up samples: 3 busy core-seconds in 2 s, 1 of them this run's (x2 DDP ranks).
    a, b = hostload.CpuSample(100.0, 10.0, 50.0, None), hostload.CpuSample(103.0, 11.0, 52.0, None)
    assert hostload.others_busy_cores(a, b) == pytest.approx(1.0)
    assert hostload.others_busy_cores(a, b, local_procs=2) == pytest.approx(0.5)
    assert hostload.others_busy_cores(a, hostload.CpuSample(103.0, 11.0, 50.5, None)) is None  # too short
    # The flag follows the measure, not a load average that still holds a previous run's threads.
    monkeypatch.setattr(hostload, "sample", lambda: b)
    monkeypatch.setattr(hostload.os, "cpu_count", lambda: 4)
    s = hostload.summary_fields(hostload.CpuSample(100.0, 10.0, 50.0, 3.9), own_threads=2)
    assert (s["others_busy_cores"], s["train_img_per_s_under_load"]) == (1.0, False)  # load avg 3.9 but 1 of 4 cores
    s = hostload.summary_fields(hostload.CpuSample(99.0, 10.0, 50.0, 0.0), own_threads=2)
    assert (s["others_busy_cores"], s["train_img_per_s_under_load"]) == (1.5, True)


def _stopped_run(tmp_path: Path, steps: int = 6, stop: int = 3) -> Path:
    """A run stopped at step ``stop`` of ``steps``, last.pt saved there."""
    from classbench.config import load_config
    from classbench.errors import TrainingInterrupted
    from classbench.train.trainer import Trainer

    trainer = Trainer(load_config(None, [*TINY, f"train.runs_dir={tmp_path / 'runs'}", f"train.steps={steps}",
                                         "train.epochs=0"]), stop_after=stop)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    return trainer.run_dir


def _edit_last_pt(run: Path, edit) -> None:
    from classbench.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    edit(ck["trainer"])
    save_checkpoint(run / "checkpoints" / "last.pt", ck)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the CPU-time measure reads Linux's /proc/stat")
def test_a_resumed_run_s_load_covers_its_earlier_attempts(tmp_path):
    """others_busy_cores spans the same training as the img/s a resume carries over: last.pt keeps the
    earlier attempts' CPU seconds of other processes and their wall time."""
    from classbench.train.checkpoint import load_checkpoint

    run = _stopped_run(tmp_path)
    carried = load_checkpoint(run / "checkpoints" / "last.pt")["trainer"]["host_load"]
    assert set(carried) == {"others_core_s", "wall_s"} and carried["wall_s"] > 0 and carried["others_core_s"] >= 0
    # Say the first attempt ran for 1,000 s beside 1,000 CPU seconds of other work: one core, on average.
    _edit_last_pt(run, lambda t: t.update(host_load={"others_core_s": 1000.0, "wall_s": 1000.0}))
    assert main(["train", "--resume", str(run)]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert 0.9 < s["others_busy_cores"] <= 1.0 + 2 * os.cpu_count() / 1000  # this attempt adds its few seconds
    assert s["train_img_per_s_under_load"] is (s["others_busy_cores"] > 0.25 * os.cpu_count())

    # Earlier attempts that were not measured make the whole unknown (the load average decides the flag).
    run = _stopped_run(tmp_path / "unmeasured")
    _edit_last_pt(run, lambda t: t.update(host_load=None))
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["others_busy_cores"] is None
    # A checkpoint from before the measure was carried counts only this attempt, as it used to.
    from classbench.train import hostload
    from classbench.train.trainer import Trainer, load_run_config

    run = _stopped_run(tmp_path / "older")
    _edit_last_pt(run, lambda t: t.pop("host_load"))
    resumed = Trainer(load_run_config(run), resume_dir=run)
    resumed.recorder.release()
    assert resumed.host_earlier == hostload.NOTHING_EARLIER


def test_a_run_resumed_on_another_set_up_says_so(tmp_path, monkeypatch):
    """env.json keeps the first attempt's environment and appends each resume's: a speed made on two
    machines is named as such by compare's notes and by report's environment table."""
    from classbench import runfolder
    from classbench.compare.comparison import build_comparison
    from classbench.compare.runs import load_runs
    from classbench.host import timing_setups

    run = _stopped_run(tmp_path)
    first = json.loads((run / "env.json").read_text())
    real = runfolder.environment
    other_cpu = {"model": "Other CPU", "family": "25", "model_number": "17", "flags": ["avx2", "avx512_bf16"]}
    monkeypatch.setattr(runfolder, "environment", lambda device: {**real(device), "cpu": other_cpu,
                                                                    "git_commit": "f" * 40, "host": "elsewhere"})
    assert main(["train", "--resume", str(run)]) == 0
    env = json.loads((run / "env.json").read_text())
    assert {k: v for k, v in env.items() if k != "resumes"} == first  # the first attempt's, untouched
    (resume,) = env["resumes"]
    assert resume["step"] == 3 and resume["cpu"] == other_cpu and resume["host"] == "elsewhere"
    setups = timing_setups(env)
    assert len(setups) == 2 and setups[1].startswith("Other CPU (family 25 model 17, avx512_bf16")

    runs_dir = run.parents[2]
    (note,) = build_comparison(load_runs(runs_dir, warn=False)).notes  # one run, two set-ups
    assert "timed on 2 different set-ups" in note and "Other CPU" in note
    out = tmp_path / "report.html"
    assert main(["report", str(runs_dir), "-o", str(out)]) == 0
    table = out.read_text().split("id='runs-env'")[1].split("</table>")[0]
    assert "resumed at step 3" in table and ", then elsewhere" in table and ", then ffffffffff" in table

    # A folder whose env.json is missing: the resume's environment is not taken for the first attempt's.
    run = _stopped_run(tmp_path / "bare")
    (run / "env.json").unlink()
    assert main(["train", "--resume", str(run)]) == 0
    env = json.loads((run / "env.json").read_text())
    assert env["first_attempt_unknown"] is True and len(env["resumes"]) == 1
    assert timing_setups(env)[0] == "an unknown set-up"
    # A damaged one is kept as it is: nothing a person might still read is overwritten.
    run = _stopped_run(tmp_path / "damaged")
    (run / "env.json").write_text('{"git_commit": "abc", trunc')
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "env.json").read_text() == '{"git_commit": "abc", trunc'


# ---------------------------------------------------------------- 8. TensorBoard from metrics.jsonl
def test_tensorboard_command_writes_events_from_metrics_jsonl(onecycle_run, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from classbench.io import read_jsonl

    runs = tmp_path / "runs"
    shutil.copytree(onecycle_run.parents[2], runs)
    (run,) = [p for p in runs.glob("*/*/*") if p.is_dir()]
    assert not (run / "tensorboard").exists()  # trained without log.tensorboard=true
    assert main(["tensorboard", str(runs)]) == 0
    assert "1 run(s) converted" in capsys.readouterr().out
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    records = list(read_jsonl(run / "metrics.jsonl"))
    val = [(r["step"], r["top1"]) for r in records if r["split"] == "val"]
    got = [(e.step, e.value) for e in acc.Scalars("val/top1")]
    assert [s for s, _ in got] == [s for s, _ in val]
    assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(got, val))
    train_loss = [r["loss"] for r in records if r["split"] == "train"]
    assert len(acc.Scalars("train/loss")) == len(train_loss)
    # a second call leaves converted runs alone; --out writes elsewhere, mirroring the run paths
    assert main(["tensorboard", str(runs)]) == 0
    assert "already holds event files" in capsys.readouterr().out
    assert main(["tensorboard", str(run), "--out", str(tmp_path / "tb")]) == 0
    assert list((tmp_path / "tb" / run.name).glob("events.out.tfevents*"))


def test_tensorboard_command_errors_are_one_line(tmp_path, capsys):
    assert main(["tensorboard", str(tmp_path / "nosuch")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["tensorboard", str(tmp_path / "empty")]) == 2
    assert "No run folders" in capsys.readouterr().err


# ---------------------------------------------------------------- 9. Ctrl-C and predict
def test_ctrl_c_is_a_clean_stop_not_an_error(tmp_path, monkeypatch, capsys):
    from classbench.train import trainer as trainer_mod

    real = trainer_mod.Trainer.__init__

    def stop_after_3(self, *a, **kw):
        real(self, *a, **kw)
        self.stop_after = 3  # as Ctrl-C during step 3

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", stop_after_3)
    rc = main(["train", _tiny_yaml(tmp_path), f"train.runs_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "error" not in err.lower() and err.startswith("stopped: SIGTERM received")
    assert "classbench train --resume" in err


def _tiny_yaml(tmp_path: Path) -> str:
    from classbench.config import load_config, to_yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(to_yaml(load_config(None, TINY)))
    return str(path)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, onecycle_run):
    """PNGs of the run's synthetic training images in a nested folder, plus a README that is not an image."""
    from PIL import Image

    from classbench.config import load_run_config
    from classbench.data import build_data

    root = tmp_path_factory.mktemp("images")
    data = build_data(load_run_config(onecycle_run).data)
    split = data.splits["train"]
    for i in range(5):
        sub = root / ("a" if i < 3 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(split.images[i].permute(1, 2, 0).numpy()).save(sub / f"img{i}.png")
    (root / "README.txt").write_text("not an image")
    return root


def test_predict_takes_a_folder_and_writes_csv(onecycle_run, image_folder, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(onecycle_run), str(image_folder), "--topk", "2", "--format", "csv", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {out} (5 image(s))" in captured.err  # the file, not stdout, holds the rows
    rows = list(csv.DictReader(out.open()))
    assert [r["rank"] for r in rows[:2]] == ["1", "2"] and list(rows[0]) == ["path", "rank", "class", "probability"]
    paths = sorted({r["path"] for r in rows})
    assert paths == sorted(str(p) for p in image_folder.rglob("*.png")) and len(paths) == 5  # README skipped
    first = [r for r in rows if r["path"] == paths[0]]
    assert float(first[0]["probability"]) >= float(first[1]["probability"])
    # the CSV agrees with --json on the same files
    assert main(["predict", str(onecycle_run), str(image_folder), "--topk", "2", "--json"]) == 0
    js = {d["path"]: d["predictions"] for d in json.loads(capsys.readouterr().out)}
    assert js[paths[0]][0]["class"] == first[0]["class"]


def test_predict_refuses_a_folder_without_images(onecycle_run, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    assert main(["predict", str(onecycle_run), str(tmp_path / "docs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "folder without image files" in err


# ---------------------------------------------------------------- 11. packaged configs
def test_train_resolves_a_packaged_config_by_name_and_configs_lists_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the checkout: a bare name cannot be a relative path here
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    names = [ln.split()[0] for ln in out.split("\n\n")[0].splitlines()]
    assert "cifar10/resnet20" in names and "cifar100/resnet18" in names
    assert not [n for n in names if "groups" in n or "references" in n]  # files about configs are not configs
    assert main(["config", "cifar10/resnet20"]) == 0
    assert "name: resnet20" in capsys.readouterr().out
    # a path still means a file, even when a packaged config has the same name
    mine = tmp_path / "cifar10" / "resnet20.yaml"
    mine.parent.mkdir()
    mine.write_text("model:\n  name: toy_dilated\ntrain:\n  steps: 3\n")
    assert main(["config", "cifar10/resnet20.yaml"]) == 0
    assert "name: toy_dilated" in capsys.readouterr().out
    assert main(["config", "cifar10/resnet2"]) == 2
    assert "cifar10/resnet20" in capsys.readouterr().err  # the closest names


@pytest.mark.slow
def test_an_installed_wheel_carries_the_configs(tmp_path):
    """`pip wheel .` holds every config and groups.yaml; a fresh venv resolves them from the installed package."""
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout (build/, *.egg-info)
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "data", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "tests"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # offline: nothing fetched
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, env=env, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("classbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("classbench/configs/") for n in names if n.startswith("classbench/configs/")}
    in_repo = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert in_repo and shipped == in_repo and "groups.yaml" in shipped

    # A fresh venv (as the Makefile makes one) that borrows torch & co from this one's site-packages through a
    # .pth line: no download, no multi-GB copy. A plain path line runs no .pth file of that folder, so the
    # checkout's editable install stays out; classbench comes only from the wheel.
    import site
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    borrowed = [p for p in {*site.getsitepackages(), sysconfig.get_path("purelib")} if Path(p).is_dir()]
    (Path(purelib) / "borrowed-deps.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
                   check=True, env=env, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import classbench, classbench.config as c; from classbench.compare.runs import load_groups; "
            "print(classbench.__file__); print(c.resolve_config('cifar10/resnet20')); print(len(load_groups()) > 0)")
    r = subprocess.run([str(py), "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in env.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr
    pkg, cfg, groups = r.stdout.splitlines()
    site = venv / "lib"
    assert Path(pkg).is_relative_to(site) and Path(cfg).is_relative_to(site), r.stdout  # not the checkout
    assert cfg.endswith("classbench/configs/cifar10/resnet20.yaml") and groups == "True"
    r = subprocess.run([str(venv / "bin" / "classbench"), "configs", "resnet20"], cwd=elsewhere,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "cifar10/resnet20" in r.stdout, r.stderr


# ---------------------------------------------------------------- 10. the demo is a comparison
@pytest.mark.slow
def test_make_demo_compares_models_and_ends_in_a_verdict(tmp_path):
    """`make demo`'s own commands (sweep -> summary -> compare) on a tiny synthetic stand-in for CIFAR-10."""
    if not shutil.which("make"):
        pytest.skip("needs make")
    tiny = ("data.name=synthetic data.num_classes=4 data.synthetic_size=256 data.image_size=16 data.val_size=64 "
            "data.train_size=0 data.test_size=0 train.steps=6 eval.every=3 train.threads=1 train.precision=fp32 "
            "eval.batch_size=64 train.batch_size=32")
    r = subprocess.run(["make", "-o", ".venv/.installed", "demo", f"RUNS={tmp_path / 'demo'}",
                        "DEMO_MODELS=resnet20,toy_dilated", f"DEMO_SET={tiny}"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "demo-model=resnet20" in out and "demo-model=toy_dilated" in out, out  # the sweep's runs and summary
    # the comparison comes last: both arms, then a verdict naming its test
    tail = out[out.rfind("classbench compare"):] if "classbench compare" in out else out
    assert "McNemar" in tail and "resnet20" in tail and "toy_dilated" in tail, tail


# ---------------------------------------------------------------- 9. the README
def test_readme_says_what_things_are_and_how_to_compare_seeds():
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    # project-history labels clash with train.seed: "seed 002", "s003-alexnet"
    assert not re.search(r"\bseed 00\d|\bs00\d-", text)
    # make test's line gives the whole suite's time (clean-clone CI, 2026-12-02: 13 min quiet, 18 min under load),
    # the next line the quick loop's
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("make test"))
    assert "about 15 minutes" in lines[at] and "about 10 minutes" not in text
    assert 'pytest -m "not slow"' in lines[at + 1] and "under a minute" in lines[at + 1]
    assert "--seeds" in text and "classbench compare" in text and "classbench summary" in text
    for command in ("classbench configs", "classbench tensorboard", "--format csv", "train.resume_schedule"):
        assert command in text, command
