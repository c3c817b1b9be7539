"""Run folders are untrusted input (issue #17), plus the disk-full checkpoint and Ctrl-C at start-up.

People share run folders.  Reading one (summary, plot, report, eval, predict, export,
``--resume``) must act on nothing in it beyond reading: a bad record is skipped with a
warning, a bad whole file is refused with one line, data is never fetched where the run
says, and every string from the run is shown as plain text.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from classbench import runfolder
from classbench.cli import main
from classbench.errors import ClassbenchError, TrainingInterrupted
from classbench.runfolder import RunFolder
from classbench.train.trainer import Trainer, resume, train

from support.configs import REPO, SMALL, require_cifar, write_cfg
from support.runs import temp_files
from support.stops import at_step
from support.counts import Counts
from support.disks import fill as fill_disk
from support.marks import params
from support.cli import assert_one_clean_error

COUNTS = Counts()
_write_counts = COUNTS.fixture()
count = COUNTS.add

STEPS = ["train.steps=8", "train.checkpoint_every=2", "eval.every=4", "log.every=2"]


@pytest.fixture
def stopped_run(tiny_cfg) -> Path:
    trainer = Trainer(tiny_cfg(*STEPS), stop_after=4)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    return trainer.run_dir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from support.configs import tiny_config

    return train(tiny_config(tmp_path_factory.mktemp("finished") / "runs", *STEPS))


def _copy_run(run_dir: Path, dest: Path) -> Path:
    import shutil

    target = dest / "runs" / "synthetic" / "copied" / run_dir.name
    shutil.copytree(run_dir, target)
    (RunFolder(target).lock).unlink(missing_ok=True)
    return target


# ============================================================================ hand-edited metrics.jsonl
BAD_RECORDS = {
    "step_a_string": {"step": "7", "split": "train", "loss": 1.0},
    "step_null": {"step": None, "split": "val", "top1": 0.5},
    "step_negative": {"step": -3, "split": "train", "loss": 1.0},
    "step_a_bool": {"step": True, "split": "train", "loss": 1.0},
    "split_a_list": {"step": 2, "split": ["val"], "top1": 0.5},
    "loss_a_string": {"step": 2, "split": "train", "loss": "nan?"},
    "no_step": {"split": "train", "loss": 1.0},
}


def test_every_bad_metrics_record_is_skipped_with_a_warning(finished_run, tmp_path, capsys):
    """The quick check of every case of the test below: the reader of metrics.jsonl, and `summary`."""
    for case, record in BAD_RECORDS.items():
        run_dir = _copy_run(finished_run, tmp_path / case)
        with open(RunFolder(run_dir).metrics_jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        with pytest.warns(UserWarning, match="skipped 1 record"):
            records = runfolder.read_metrics(run_dir)
        assert record not in records and records, case
        code = main(["summary", str(tmp_path / case / "runs")])
        err = capsys.readouterr().err
        assert code == 0 and "Traceback" not in err, (case, err)


@pytest.mark.slow  # plot and report take seconds each; the test above reads every case quickly
@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_metrics_record_is_skipped_with_a_warning_by_every_reader(finished_run, tmp_path, capsys, case):
    run_dir = _copy_run(finished_run, tmp_path)
    with open(RunFolder(run_dir).metrics_jsonl, "a") as f:
        f.write(json.dumps(BAD_RECORDS[case]) + "\n")
    with pytest.warns(UserWarning, match="skipped 1 record"):
        records = runfolder.read_metrics(run_dir)
    assert BAD_RECORDS[case] not in records and records
    runs = tmp_path / "runs"
    for argv in (["summary", str(runs)], ["plot", str(runs), "--out", str(tmp_path / "fig")],
                 ["report", str(runs), "-o", str(tmp_path / "r.html"), "--no-per-class"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0 and "Traceback" not in err, (argv, err)
    count("untrusted_metrics_records")


def test_resume_skips_bad_metrics_records(stopped_run):
    with open(RunFolder(stopped_run).metrics_jsonl, "a") as f:
        for rec in BAD_RECORDS.values():
            f.write(json.dumps(rec) + "\n")
    with pytest.warns(UserWarning, match=f"skipped {len(BAD_RECORDS)} record"):
        resume(stopped_run)
    assert runfolder.read_summary(stopped_run)["steps"] == 8
    assert all(isinstance(r["step"], int) for r in runfolder.read_metrics(stopped_run, warn=False))
    count("untrusted_metrics_records")


# ============================================================================ bad config.yaml on resume
def _cfg_missing(p: Path):
    p.unlink()


def _cfg_empty(p: Path):
    p.write_text("")


def _cfg_folder(p: Path):
    p.unlink()
    p.mkdir()


def _cfg_not_utf8(p: Path):
    p.write_bytes(b"name: \xff\xfe\n")


def _cfg_interpolation(p: Path):
    text = p.read_text()
    assert "  root: null\n" in text
    p.write_text(text.replace("  root: null\n", "  root: ${oc.env:HOME}\n", 1))


BAD_STORED_CONFIGS = {"missing": _cfg_missing, "empty": _cfg_empty, "folder": _cfg_folder,
                      "not_utf8": _cfg_not_utf8, "interpolation": _cfg_interpolation}


@pytest.mark.parametrize("case", sorted(BAD_STORED_CONFIGS))
def test_a_bad_stored_config_refuses_the_resume_and_spares_the_readers(stopped_run, capsys, case):
    before = RunFolder(stopped_run).metrics_jsonl.read_bytes()
    BAD_STORED_CONFIGS[case](RunFolder(stopped_run).config_yaml)
    code = main(["train", "--resume", str(stopped_run)])
    assert_one_clean_error(code, capsys.readouterr().err, runfolder.CONFIG)
    assert RunFolder(stopped_run).metrics_jsonl.read_bytes() == before  # refused before anything was written
    assert main(["summary", str(stopped_run.parents[2])]) == 0
    assert "Traceback" not in capsys.readouterr().err
    count("untrusted_stored_configs")


# ============================================================================ crafted checkpoints
def _craft(ckpt: dict, case: str) -> None:
    if case == "negative_size":
        ckpt["input"]["size"] = [3, -5, 16]
    elif case == "absurd_size":
        ckpt["input"]["size"] = [3, 10**9, 10**9]
    elif case == "empty_mean":
        ckpt["input"]["mean"] = []
    elif case == "nan_std":
        ckpt["input"]["std"] = [float("nan"), 1.0, 1.0]
    elif case == "negative_classes":
        ckpt["num_classes"] = -1
    elif case == "classes_not_names":
        ckpt["classes"] = [{"a": 1}] * ckpt["num_classes"]
    elif case == "deep_config":
        ckpt["config"] = "a:\n" + "".join("  " * i + " b:\n" for i in range(1, 5000))
    elif case == "config_not_text":
        ckpt["config"] = {"name": "x"}


CRAFTED = ["negative_size", "absurd_size", "empty_mean", "nan_std", "negative_classes", "classes_not_names",
           "deep_config", "config_not_text"]
VIAS = ["eval", "predict", "export", "report"]
# predict and export rebuild the model from the weights' description and never parse the stored config
CRAFTED_VIA = [(c, v) for v in VIAS for c in CRAFTED if not (c == "deep_config" and v in ("predict", "export"))]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.new("RGB", (16, 16), (120, 30, 200)).save(path)
    return path


# A report takes seconds: `make test` sends every crafted checkpoint through it, the quick loop through the rest.
@pytest.mark.parametrize("case,via", params(CRAFTED_VIA, [(c, "report") for c in CRAFTED],
                                            ids=[f"{v}-{c}" for c, v in CRAFTED_VIA]))
def test_a_crafted_checkpoint_is_refused_with_one_line(finished_run, tmp_path, capsys, png, case, via):
    run_dir = _copy_run(finished_run, tmp_path)
    if via == "report":  # without its stored predictions the report must evaluate (so load) best.pt
        RunFolder(run_dir).test_outcomes.unlink()
    path = RunFolder(run_dir).best_pt
    ckpt = torch.load(path, weights_only=True)
    _craft(ckpt, case)
    torch.save(ckpt, path)
    argv = {"eval": ["eval", str(run_dir)],
            "predict": ["predict", str(run_dir), str(png)],
            "export": ["export", str(run_dir), "--format", "torchscript", "-o", str(tmp_path / "m.pt")],
            "report": ["report", str(tmp_path / "runs"), "-o", str(tmp_path / "r.html")]}[via]
    code = main(argv)
    err = capsys.readouterr().err
    if via == "report":  # one bad run must not take the report down: its per-class box says why
        assert code == 0 and "Traceback" not in err, err
        assert f"{path} is not a checkpoint classbench wrote" in (tmp_path / "r.html").read_text() or case == "deep_config"
        assert f"The config stored in {path}" in (tmp_path / "r.html").read_text() or case != "deep_config"
    else:
        assert_one_clean_error(code, err, str(path))
    assert not (tmp_path / "m.pt").exists()
    count("untrusted_checkpoints")


@pytest.mark.parametrize("case", ["negative_size", "empty_mean", "negative_classes", "classes_not_names"])
def test_a_crafted_last_checkpoint_refuses_the_resume(stopped_run, capsys, case):
    path = RunFolder(stopped_run).last_pt
    ckpt = torch.load(path, weights_only=True)
    _craft(ckpt, case)
    torch.save(ckpt, path)
    code = main(["train", "--resume", str(stopped_run)])
    assert_one_clean_error(code, capsys.readouterr().err)
    count("untrusted_checkpoints")


# ============================================================================ data.root named by a run
@pytest.mark.slow  # reads real CIFAR
def test_eval_never_creates_or_downloads_where_the_run_says(tmp_path, monkeypatch, recwarn):
    """A run whose config names data.root=/some/other/path: the reader reads its own data root, says so."""
    import classbench.data.cifar as cifar
    from classbench.inference.evaluate import evaluate_checkpoint
    from support.configs import tiny_config

    root = require_cifar()
    monkeypatch.setenv("CLASSBENCH_DATA", str(root))
    run_dir = train(tiny_config(tmp_path / "runs", "data.num_classes=10", "data.image_size=32", "train.steps=2",
                                "eval.every=2", "log.every=2"))
    elsewhere = tmp_path / "some" / "other" / "path"
    path = RunFolder(run_dir).best_pt
    ckpt = torch.load(path, weights_only=True)
    assert "  name: synthetic\n" in ckpt["config"] and "  root: null\n" in ckpt["config"]
    ckpt["config"] = (ckpt["config"].replace("  name: synthetic\n", "  name: cifar10\n", 1)
                      .replace("  root: null\n", f"  root: {elsewhere}\n", 1))
    torch.save(ckpt, path)
    fetched = []
    monkeypatch.setattr(cifar, "_download", lambda *a, **k: fetched.append(a) or (_ for _ in ()).throw(OSError("offline")))
    m = evaluate_checkpoint(run_dir, split="test", limit=64)
    assert m["count"] == 64
    assert not fetched and not (tmp_path / "some").exists()
    assert any(str(elsewhere) in str(w.message) and str(root) in str(w.message) for w in recwarn.list)
    count("untrusted_data_roots")


# ============================================================================ strings from a run are plain text
NASTY = {"mathtext": "bad$\\frac{$name", "ansi": "red\x1b[31mname", "formula": "=HYPERLINK(\"http://x\")"}


def _rename(run_dir: Path, name: str) -> None:
    folder = RunFolder(run_dir)
    text = folder.config_yaml.read_text()
    old = next(ln for ln in text.splitlines() if ln.startswith("name:"))
    folder.config_yaml.write_text(text.replace(old, f"name: {json.dumps(name)}", 1))
    summary = json.loads(folder.summary_json.read_text())
    summary["name"] = name
    folder.summary_json.write_text(json.dumps(summary))
    ckpt = torch.load(folder.best_pt, weights_only=True)
    ckpt["classes"] = [f"{name}{i}" for i in range(ckpt["num_classes"])]
    torch.save(ckpt, folder.best_pt)


def test_names_from_a_run_are_plain_text_in_every_summary_format(finished_run, tmp_path, capsys):
    """The quick check of every name of the test below (plot and report take seconds: one name there)."""
    for kind, name in NASTY.items():
        run_dir = _copy_run(finished_run, tmp_path / kind)
        _rename(run_dir, name)
        for fmt in ("markdown", "csv"):
            assert main(["summary", str(tmp_path / kind / "runs"), "--format", fmt]) == 0
            out = capsys.readouterr().out
            assert "\x1b" not in out and "copied" in out, out
            if fmt == "csv":
                assert not any(cell.startswith("=") for line in out.splitlines() for cell in line.split(",")), out


def test_the_plain_text_helpers_defuse_every_nasty_name():
    """The quick check of what plot and report draw (the test below runs them, which takes seconds)."""
    from matplotlib import mathtext

    assert runfolder.plain_text(NASTY["ansi"]) == "red\\x1b[31mname"
    parser = mathtext.MathTextParser("path")
    for name in NASTY.values():
        shown = runfolder.plot_text(name)
        assert "\x1b" not in shown and shown.count("$") == shown.count("\\$")  # every $ escaped: no mathtext
        parser.parse(shown)  # matplotlib takes it as written (bad mathtext raises ValueError)
    assert str(runfolder.csv_cell(NASTY["formula"])).startswith("'=") and runfolder.csv_cell("-0.5") == "-0.5"


@pytest.mark.slow  # plot and report take seconds; the two tests above check every name quickly
@pytest.mark.parametrize("kind", sorted(NASTY))
def test_names_from_a_run_are_shown_as_plain_text(finished_run, tmp_path, capsys, kind):
    run_dir = _copy_run(finished_run, tmp_path)
    _rename(run_dir, NASTY[kind])
    runs = tmp_path / "runs"
    assert main(["plot", str(runs), "--out", str(tmp_path / "fig")]) == 0, capsys.readouterr().err
    assert main(["report", str(runs), "-o", str(tmp_path / "r.html")]) == 0, capsys.readouterr().err
    capsys.readouterr()
    for fmt in ("markdown", "csv"):
        assert main(["summary", str(runs), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out, out
        if fmt == "csv":
            assert not any(cell.startswith("=") for line in out.splitlines() for cell in line.split(",")), out
    count("untrusted_strings")


# ============================================================================ disk full inside a checkpoint write
@pytest.mark.slow  # mounts a tmpfs
def test_disk_full_inside_a_checkpoint_write_is_a_clean_failure(tiny_cfg, tiny_tmpfs, capsys):
    """torch.save reports ENOSPC as a RuntimeError ("unexpected pos"); it must read like every other write failure."""
    filler = tiny_tmpfs / "filler"
    seen = {}

    def fill(trainer):
        folder = trainer.recorder.folder
        seen.update({p: p.read_bytes() for p in (folder.last_pt, folder.best_pt)})
        fill_disk(filler)

    # no log or eval line between the fill and the checkpoint: the first write to fail is torch.save's
    trainer = Trainer(tiny_cfg(f"train.runs_dir={tiny_tmpfs / 'runs'}", "train.steps=10", "train.checkpoint_every=2",
                               "eval.every=2", "log.every=100"), after_step=at_step(6, fill))
    with pytest.raises(ClassbenchError, match=os.strerror(errno.ENOSPC)) as e:
        trainer.fit()
    assert "\n" not in str(e.value) and f"{runfolder.CHECKPOINTS}/" in str(e.value)  # best.pt's or last.pt's write
    filler.unlink()
    status = runfolder.read_status(trainer.run_dir)
    assert status["status"] == runfolder.FAILED and os.strerror(errno.ENOSPC) in status["message"]
    assert all(path.read_bytes() == data for path, data in seen.items()) and len(seen) == 2
    assert not temp_files(trainer.run_dir)
    resume(trainer.run_dir)
    assert runfolder.read_summary(trainer.run_dir)["steps"] == 10
    count("write_failures_real_disk_full_checkpoint")


# ============================================================================ Ctrl-C during start-up
@pytest.mark.parametrize("wrapped", [False, True], ids=["library-error", "config-error"])
def test_ctrl_c_that_a_library_turns_into_its_own_error_is_an_interruption(tmp_path, monkeypatch, capsys, wrapped):
    """Seen in CI (2026-12-03): Ctrl-C landed while omegaconf built the config; its clean-up of the half-built
    node raised an AttributeError, which omegaconf wrapped, and a traceback was printed.  Whatever a library
    makes of the interrupt, the command says "interrupted" and exits 130."""
    import classbench.config
    from classbench.errors import ConfigError

    def half_built(*args, **kwargs):
        try:
            try:
                raise KeyboardInterrupt
            finally:
                None._invalidate_flags_cache()  # the library's clean-up of a node that was never set
        except AttributeError as e:
            if wrapped:
                raise ConfigError(f"bad config: {e}") from e
            raise RuntimeError(f"{e}\n    full_key: data") from e

    monkeypatch.setattr(classbench.config, "load_config", half_built)
    assert main(["train", str(write_cfg(tmp_path / "c.yaml", SMALL))]) == 130
    err = capsys.readouterr().err
    assert err == "interrupted\n"
    monkeypatch.setattr(classbench.config, "load_config", lambda *a, **k: None._invalidate_flags_cache())
    with pytest.raises(AttributeError):  # a plain bug is not taken for an interruption
        main(["train", str(write_cfg(tmp_path / "c.yaml", SMALL))])


@pytest.mark.slow  # spawns processes
def test_ctrl_c_during_start_up_prints_no_traceback(tmp_path):
    """From the moment classbench starts importing torch (Python's own start-up before that is not ours)."""
    # So many steps that no run can end before its signal, on however fast a machine: a run that ended
    # first would exit 0 and test nothing (CI's faster machine did just that with 200 steps).
    cfg = write_cfg(tmp_path / "c.yaml", SMALL, train={"steps": 1_000_000})
    delays = (0.0, 0.5, 1.5, 3.0)  # inside torch's import (the command parser), data building, model building
    procs = [(d, subprocess.Popen([sys.executable, "-m", "classbench", "train", cfg,
                                   f"train.runs_dir={tmp_path / f'runs{d}'}"],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for d in delays]

    def importing_torch(pid: int) -> bool:
        try:
            return "torch" in Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            return False

    # Each delay counts from that process's own first torch mapping, all four watched at once,
    # so one process's wait does not add to the next one's.
    due: dict[int, float] = {}
    signalled: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while len(signalled) < len(procs) and time.monotonic() < deadline:
            now = time.monotonic()
            for d, proc in procs:
                if proc.pid in signalled:
                    continue
                if proc.pid not in due and (importing_torch(proc.pid) or proc.poll() is not None):
                    due[proc.pid] = now + d
                if proc.pid in due and now >= due[proc.pid]:
                    proc.send_signal(signal.SIGINT)
                    signalled.add(proc.pid)
            time.sleep(0.002)
        assert len(signalled) == len(procs), "a process never started importing torch"
    except BaseException:
        for _, proc in procs:
            proc.kill()
        raise
    for d, proc in procs:
        out, err = proc.communicate(timeout=180)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (d, err)
        assert proc.returncode == 130, (d, proc.returncode, err)
        count("ctrl_c_at_start_up")
