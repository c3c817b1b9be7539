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
*fork server* (tests/support/forkserver.py, the ``forkserver`` fixture): one Python
process that imports torch and classbench once and then forks a child per command.  Each child runs ``classbench.cli.main(argv)``
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import classbench.io as cio
from classbench.cli import main
from classbench.config import load_config
from classbench.errors import ClassbenchError, ConfigError, NonFiniteLossError, TrainingInterrupted
from classbench.io import read_jsonl
from classbench.train.checkpoint import FORMAT_VERSION, load_checkpoint
from classbench.train.trainer import Trainer, resume, train

from support.cli import assert_one_clean_error, assert_one_clean_stop
from support.configs import REPO, SMALL, TINY, write_cfg
from support.counts import Counts
from support.disks import fill as fill_disk
from support.forkserver import STALL_IN_CHECKPOINT_WRITE
from support.runs import metrics_without_timing, run_dirs, snapshot, temp_files, wait_for
from support.stops import at_step

# ---------------------------------------------------------------------------- counts for the record
COUNTS = Counts()
_write_counts = COUNTS.fixture(start=True)  # this module runs first and starts the file
count = COUNTS.add


# ---------------------------------------------------------------------------- helpers

# ============================================================================ 1. crash safety
N_KILLS = 24  # every 4th one lands mid checkpoint write on purpose; the rest at seeded random moments


@pytest.mark.slow  # spawns processes
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to time kills inside a checkpoint write")
def test_sigkill_at_random_moments_loses_nothing(forkserver, tmp_path):
    cfg = write_cfg(tmp_path / "killme.yaml", SMALL)
    eval_every = SMALL["eval"]["every"]

    t = time.perf_counter()
    # The uninterrupted reference; writing last.pt every step changes nothing it computes, so it skips that.
    forkserver.run(tmp_path / "reference.log", ["train", cfg, f"train.runs_dir={tmp_path / 'ref'}",
                                                "train.checkpoint_every=0"])
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
        # every 4th kill: inside a checkpoint write (while a step is left to write one for)
        targeted = run_dir is not None and stats["kills"] % 4 == 3 and prev_step < SMALL["train"]["steps"] - 2
        old_temp = set(temp_files(run_dir)) if run_dir is not None else set()
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
            wait_for(lambda: marker.exists() or (run_dir / "summary.json").exists(), what="a checkpoint write")
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
        new_temp = set(temp_files(run_dir)) - old_temp  # this kill's half-done write, if it hit one
        stats["mid_write"] += bool(new_temp)
        if targeted:
            assert new_temp, "the targeted kill did not land inside a checkpoint write"
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



# ============================================================================ 2. exact resume
LAST_KEYS = {"format_version", "kind", "model_name", "model_args", "num_classes", "classes", "input", "model",
             "step", "metrics", "config", "optimizer", "scheduler", "scaler", "rng", "loader", "trainer"}


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_last_checkpoint_holds_every_state(tiny_cfg):
    import random as pyrandom

    import numpy as np

    from classbench.train.checkpoint import rng_state, set_rng_state

    run_dir = train(tiny_cfg("train.steps=5", "train.checkpoint_every=5", "eval.every=5"))
    ck = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert LAST_KEYS <= ck.keys()
    assert ck["kind"] == "last" and ck["format_version"] == FORMAT_VERSION and ck["step"] == 5
    assert ck["optimizer"]["state"] and ck["optimizer"]["param_groups"]  # Adam moments, lr, betas
    assert ck["scheduler"] is not None and isinstance(ck["scaler"], dict)
    assert {"python", "numpy", "torch"} <= ck["rng"].keys()
    # the loader: its epoch, the position inside it (6 steps an epoch here) and its own generator
    assert ck["loader"]["epoch"] == 0 and ck["loader"]["position"] == 5
    assert isinstance(ck["loader"]["generator"], torch.Tensor)
    assert {"step", "best", "train_time", "train_images", "skipped", "window", "wall"} <= ck["trainer"].keys()

    # Every global RNG survives the weights_only round trip: the same numbers come next.
    saved = rng_state()
    draws = lambda: (pyrandom.random(), float(np.random.rand()), float(torch.rand(())))  # noqa: E731
    expected = draws()
    path = run_dir / "rng.pt"
    torch.save(saved, path)
    set_rng_state(torch.load(path, weights_only=True))
    assert draws() == expected


VIT_DROPOUT = "model.args={image_size: 16, patch: 4, dim: 16, depth: 1, heads: 2, mlp_dim: 32, dropout: 0.3}"


@pytest.mark.parametrize("case,extra", [
    ("epoch_boundary", []),
    ("mixstyle_mid_epoch", ["model.name=resnet20", "model.args={}", "model.args.mixstyle_stages=[1]", "optim.name=sgd",
                            "train.batch_size=16", "data.synthetic_size=128", "data.val_size=32"]),
    ("dropout_mid_epoch", ["model.name=vit", "model.args={}", VIT_DROPOUT, "train.batch_size=16", "data.synthetic_size=128",
                           "data.val_size=32", "data.normalize=true"]),
])
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_resume_is_exact_at_boundaries_and_with_global_rng(tiny_cfg, case, extra):
    from classbench.errors import TrainingInterrupted

    overrides = ["train.checkpoint_every=4", *extra]
    reference = train(tiny_cfg(*overrides))
    trainer = Trainer(tiny_cfg(*overrides))
    spe = trainer.steps_per_epoch
    stop_at = spe if case == "epoch_boundary" else spe + spe // 2 + 1
    trainer.stop_after = stop_at  # as Trainer(cfg, stop_after=stop_at): the step count is known only now
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    ck = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    assert ck["step"] == stop_at
    resume(trainer.run_dir)
    assert metrics_without_timing(trainer.run_dir) == metrics_without_timing(reference)
    a = json.loads((reference / "summary.json").read_text())
    b = json.loads((trainer.run_dir / "summary.json").read_text())
    for key in ("best_val_top1", "best_val_step", "test_top1", "test_top5", "test_loss", "steps"):
        assert a[key] == b[key], key
    count("exact_resume_cases")


# ============================================================================ 3. clean stops
@pytest.mark.slow  # spawns processes
def test_sigint_and_sigterm_save_a_resumable_checkpoint_and_say_how_to_resume(tmp_path):
    cfg = write_cfg(tmp_path / "stopme.yaml", SMALL, train={"steps": 300, "checkpoint_every": 0},
                    eval={"every": 100}, log={"every": 1})
    procs = {}
    for signame in ("SIGINT", "SIGTERM"):  # two real `python -m classbench` processes, side by side
        runs = tmp_path / signame
        procs[signame] = (runs, subprocess.Popen(
            [sys.executable, "-m", "classbench", "train", cfg, f"train.runs_dir={runs}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        def started(runs, proc):
            assert proc.poll() is None, proc.communicate()
            # Training has begun (the handlers are in place) once a train line is written.
            return any((d / "metrics.jsonl").exists() and (d / "metrics.jsonl").stat().st_size for d in run_dirs(runs))

        waiting = dict(procs)
        deadline = time.monotonic() + 120
        while waiting and time.monotonic() < deadline:  # signal each as soon as it trains
            for signame, (runs, proc) in list(waiting.items()):
                if started(runs, proc):
                    proc.send_signal(getattr(signal, signame))
                    del waiting[signame]
            time.sleep(0.002)
        assert not waiting, "the runs did not start"
        results = {signame: proc.communicate(timeout=120) for signame, (_, proc) in procs.items()}
    finally:
        for _, proc in procs.values():
            proc.kill()
    for signame, (runs, proc) in procs.items():
        (run_dir,) = run_dirs(runs)
        msg = assert_one_clean_stop(proc.returncode, results[signame][1], f"{signame} received",
                                    "resumable checkpoint", f"classbench train --resume {run_dir}")
        status = json.loads((run_dir / "status.json").read_text())
        assert status["status"] == "interrupted" and signame in status["message"]
        step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
        assert f"at step {step} of 300" in msg and 0 < step < 300
        assert not (run_dir / "summary.json").exists()

        assert main(["train", "--resume", str(run_dir)]) == 0
        assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
        assert json.loads((run_dir / "summary.json").read_text())["steps"] == 300
        count("signal_stops")


def test_a_signal_inherited_as_ignored_stays_ignored_while_training():
    """A shell starts background jobs with SIGINT ignored; a run must not catch what its sweep ignores."""
    from classbench.train.distributed import catch_stop_signals

    seen = []
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # whatever the test runner installed: a known start
    try:
        with catch_stop_signals(seen.append):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)  # not ignored before: caught
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with catch_stop_signals(seen.append):  # the usual case: both are caught
            signal.raise_signal(signal.SIGINT)
        assert seen == [signal.SIGTERM, signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


class _Uncaught(Exception):
    """Raised by the test's own SIGTERM handler: a signal that the trainer did not catch."""


@pytest.mark.parametrize("when", ["start", "finish"])
def test_a_sigterm_while_the_run_starts_or_finishes_is_caught(tiny_cfg, monkeypatch, when):
    """The sweep's --time-limit once killed a run between its first records and its loop (status left
    "running", reported FAILED): the trainer catches stop signals for the whole attempt.  One at the start
    stops the run at step 0, resumable; one after the last step lets the summary be written."""
    from classbench.train.recorder import Recorder

    def uncaught(signum, frame):
        raise _Uncaught(signal.Signals(signum).name)

    target = {"start": (Recorder, "start"), "finish": (Trainer, "_test_of_best")}[when]
    original = getattr(*target)

    def then_sigterm(self, *args, **kwargs):
        out = original(self, *args, **kwargs) if when == "start" else None
        signal.raise_signal(signal.SIGTERM)
        return out if when == "start" else original(self, *args, **kwargs)

    monkeypatch.setattr(*target, then_sigterm)
    before = signal.signal(signal.SIGTERM, uncaught)
    try:
        trainer = Trainer(tiny_cfg("train.steps=4", "eval.every=2"))
        if when == "start":
            with pytest.raises(TrainingInterrupted, match="SIGTERM received: saved a resumable checkpoint at step 0"):
                trainer.fit()
        else:
            trainer.fit()
    finally:
        signal.signal(signal.SIGTERM, before)
    status = json.loads((trainer.run_dir / "status.json").read_text())["status"]
    if when == "finish":
        assert status == "finished" and json.loads((trainer.run_dir / "summary.json").read_text())["steps"] == 4
        return
    assert status == "interrupted" and load_checkpoint(trainer.recorder.folder.last_pt)["step"] == 0
    monkeypatch.undo()
    assert resume(trainer.run_dir) == trainer.run_dir
    assert json.loads((trainer.run_dir / "summary.json").read_text())["steps"] == 4


# ============================================================================ 4. non-finite loss
def _nan_from(trainer: Trainer, start: int, stop: int | None = None, files: dict | None = None) -> None:
    """Make the training forward return NaN logits for steps start..stop-1 (0-based step counter)."""
    forward = trainer.model.forward

    def nan_forward(x):
        out = forward(x)
        if trainer.model.training and trainer.step >= start and (stop is None or trainer.step < stop):
            if files is not None and not files:  # the files as they were before the first NaN
                files.update(snapshot(trainer.recorder.folder.last_pt, trainer.recorder.folder.best_pt))
            return out * float("nan")
        return out

    trainer.model.forward = nan_forward


def test_nonfinite_stop_keeps_good_checkpoints_byte_identical(tiny_cfg, monkeypatch):
    import classbench.train.trainer as trainer_mod

    trainer = Trainer(tiny_cfg("train.steps=12", "train.checkpoint_every=2", "eval.every=2", "log.every=5"))
    before: dict = {}
    _nan_from(trainer, start=6, files=before)
    # Even if the damaged model happened to score best, best.pt must keep the good weights.
    evaluate = trainer_mod.evaluate
    monkeypatch.setattr(trainer_mod, "evaluate", lambda model, loader, **kw: {
        **evaluate(model, loader, **kw), **({"top1": 1.0} if trainer.step > 6 else {})})
    with pytest.raises(NonFiniteLossError, match="non-finite") as e:
        trainer.fit()
    assert "nonfinite.json" in str(e.value) and "on_nonfinite=skip" in str(e.value)
    assert len(before) == 2 and snapshot(*before) == before  # byte-identical
    diag = json.loads((trainer.run_dir / "nonfinite.json").read_text())
    assert diag["step"] == 8 and diag["lr"] == pytest.approx(0.01)
    train_lines = [r for r in read_jsonl(trainer.run_dir / "metrics.jsonl") if r["split"] == "train"]
    assert diag["last_finite_loss"] == train_lines[-1]["loss"] and train_lines[-1]["step"] == 5
    assert json.loads((trainer.run_dir / "status.json").read_text())["status"] == "nonfinite"
    count("nonfinite_cases")


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_nonfinite_skip_skips_then_stops_after_the_limit(tiny_cfg):
    # A few bad steps: skipped, and training finishes.
    trainer = Trainer(tiny_cfg("train.on_nonfinite=skip", "train.max_nonfinite_skips=5", "train.steps=12"))
    _nan_from(trainer, start=3, stop=6)
    run_dir = trainer.fit()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["nonfinite_skipped"] == 3 and s["steps"] == 12
    assert all(r["loss"] == r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl"))  # no NaN logged
    load_checkpoint(run_dir / "checkpoints" / "last.pt")

    # Bad for good: stops after max_nonfinite_skips, the checkpoints untouched.
    trainer = Trainer(tiny_cfg("train.on_nonfinite=skip", "train.max_nonfinite_skips=3", "train.steps=12",
                               "train.checkpoint_every=2", "eval.every=2"))
    before: dict = {}
    _nan_from(trainer, start=4, files=before)
    with pytest.raises(NonFiniteLossError, match="max_nonfinite_skips=3"):
        trainer.fit()
    # Skipped steps change no weight: best.pt is byte-identical; last.pt, saved while skipping, holds the
    # same parameters (a skipped step's forward still moves BatchNorm statistics, finite ones).
    best, last = trainer.recorder.folder.best_pt, trainer.recorder.folder.last_pt
    assert len(before) == 2 and best.read_bytes() == before[best]
    old_weights = torch.load(__import__("io").BytesIO(before[last]), weights_only=True)["model"]
    new_weights = load_checkpoint(last)["model"]
    params = [name for name, _ in trainer.model.named_parameters()]
    assert params and all(torch.equal(old_weights[k], new_weights[k]) for k in params)
    diag = json.loads((trainer.run_dir / "nonfinite.json").read_text())
    assert diag["skipped"] == 4 and diag["step"] == 7

    # A NaN that already reached the BatchNorm statistics cannot be skipped: stop at once.
    trainer = Trainer(tiny_cfg("train.on_nonfinite=skip", "train.steps=12", "train.checkpoint_every=2",
                               "eval.every=2"))
    before = {}
    _nan_from(trainer, start=4, files=before)
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))

    def poison(module, inputs, output):
        if trainer.step >= 4:
            module.running_var.fill_(float("nan"))

    bn.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match="buffers"):
        trainer.fit()
    assert len(before) == 2 and snapshot(*before) == before
    assert json.loads((trainer.run_dir / "nonfinite.json").read_text())["step"] == 4
    count("nonfinite_cases", 3)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nonfinite_through_the_cli_exits_nonzero_without_traceback(tmp_path, monkeypatch, capsys, policy):
    from classbench.models.toy import ToyDilated

    forward = ToyDilated.forward
    monkeypatch.setattr(ToyDilated, "forward", lambda self, x: forward(self, x) * (float("nan") if self.training else 1.0))
    cfg = write_cfg(tmp_path / "nan.yaml", SMALL, train={"steps": 20, "checkpoint_every": 0, "on_nonfinite": policy})
    code = main(["train", cfg, f"train.runs_dir={tmp_path / 'runs'}"])
    assert_one_clean_error(code, capsys.readouterr().err, "Training stopped", "non-finite")
    count("nonfinite_cases")


# ============================================================================ 5. bad configs
BASE_CFG = {**SMALL, "train": {**SMALL["train"], "steps": 4, "checkpoint_every": 0}}


@pytest.fixture(scope="module")
def cfgdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("configs")
    write_cfg(d / "base.yaml", BASE_CFG, train={"runs_dir": str(d / "runs")})
    files = {
        "unknown_nested.yaml": b"train:\n  steps: 3\n  batchsize: 3\n",
        "unknown_top.yaml": b"trainer:\n  steps: 3\n",
        "empty.yaml": b"",
        "comments_only.yaml": b"# nothing here\n",
        "list.yaml": b"- train\n- steps\n",
        "scalar.yaml": b"resnet20\n",
        "junk.yaml": bytes(range(256)) * 4,
        "syntax.yaml": b"train: {steps: 3\n",
        "tabs.yaml": b"train:\n\tsteps: 3\n",
        "latin1.yaml": "name: caf\u00e9\n".encode("latin-1"),
        "duplicate.yaml": b"train: {steps: 3}\ntrain: {steps: 4}\n",
        "python_tag.yaml": b"train: !!python/object/apply:os.system ['touch PWNED']\n",
        "section_scalar.yaml": b"model: resnet20\n",
        "args_list.yaml": b"model: {name: toy_dilated, args: [1, 2]}\ntrain: {steps: 3}\n",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "folder.yaml").mkdir()
    return d


# (id, argv after `train`, words the one-line message must hold); "{d}" is the configs folder.
B = "{d}/base.yaml"
BAD_CONFIGS = [
    ("unknown_top_override", [B, "nosuch=1"], ["'nosuch'", "Top-level keys"]),
    ("unknown_nested_override", [B, "train.nosuch=1"], ["'train.nosuch'", "Valid keys in 'train'"]),
    ("typo_override", [B, "optim.lrr=0.1"], ["'optim.lrr'", "'optim.lr'"]),
    ("unknown_nested_in_yaml", ["{d}/unknown_nested.yaml"], ["train.batchsize", "train.batch_size"]),
    ("unknown_top_in_yaml", ["{d}/unknown_top.yaml"], ["'trainer'"]),
    ("wrong_type_float", [B, "optim.lr=fast"], ["optim.lr", "float"]),
    ("wrong_type_int", [B, "train.steps=1.5"], ["train.steps", "int"]),
    ("wrong_type_bool", [B, "data.flip=maybe"], ["data.flip", "bool"]),
    ("wrong_type_list", [B, "eval.splits=val"], ["eval.splits", "list"]),
    ("section_not_mapping", [B, "train=5"], ["'train' must be a mapping"]),
    ("model_args_not_mapping", [B, "model.args=5"], ["model.args", "mapping"]),
    ("batch_size_zero", [B, "train.batch_size=0"], ["train.batch_size must be greater than 0"]),
    ("eval_batch_negative", [B, "eval.batch_size=-8"], ["eval.batch_size"]),
    ("val_size_negative", [B, "data.val_size=-1"], ["data.val_size must not be negative"]),
    ("epochs_negative", [B, "train.steps=0", "train.epochs=-1"], ["train.epochs must not be negative"]),
    ("no_budget", [B, "train.steps=0"], ["No training budget"]),
    ("lr_zero", [B, "optim.lr=0"], ["optim.lr must be greater than 0"]),
    ("lr_nan", [B, "optim.lr=.nan"], ["optim.lr must be a finite number"]),
    ("lr_inf", [B, "optim.lr=.inf"], ["optim.lr must be a finite number"]),
    ("betas_out_of_range", [B, "optim.name=adam", "optim.betas=[1.5,0.9]"], ["optim.betas"]),
    ("betas_one_number", [B, "optim.betas=[0.9]"], ["optim.betas must hold two numbers"]),
    ("eps_negative", [B, "optim.eps=-1"], ["optim.eps must not be negative"]),
    ("label_smoothing_one", [B, "train.label_smoothing=1"], ["train.label_smoothing"]),
    ("onecycle_div_zero", [B, "sched.name=onecycle", "sched.div_factor=0"], ["sched.div_factor"]),
    ("pct_start_above_one", [B, "sched.name=onecycle", "sched.pct_start=2"], ["sched.pct_start"]),
    ("image_size_zero", [B, "data.image_size=0"], ["data.image_size"]),
    ("unknown_model", [B, "model.name=resnet21"], ["Unknown model 'resnet21'", "resnet20"]),
    ("unknown_dataset", [B, "data.name=cifar11"], ["data.name='cifar11'", "cifar10"]),
    ("unknown_schedule", [B, "sched.name=cosin"], ["sched.name='cosin'", "cosine"]),
    ("bad_precision", [B, "train.precision=fp64"], ["train.precision='fp64'", "bf16"]),
    ("bad_device", [B, "train.device=tpu"], ["train.device='tpu'"]),
    ("bad_nonfinite_policy", [B, "train.on_nonfinite=ignore"], ["train.on_nonfinite"]),
    ("milestones_past_budget", [B, "sched.name=step", "sched.milestones=[2,10]"], ["milestone 10", "budget of 4 steps"]),
    ("step_without_milestones", [B, "sched.name=step"], ["sched.milestones"]),
    ("warmup_past_steps", [B, "sched.warmup_steps=10"], ["sched.warmup_steps=10", "train.steps=4"]),
    ("warmup_past_epochs", [B, "train.steps=0", "train.epochs=1", "sched.warmup_steps=1000"], ["sched.warmup_steps=1000"]),
    ("unknown_eval_split", [B, "eval.splits=[val,train]"], ["'train'", "train_subset"]),
    ("empty_eval_splits", [B, "eval.splits=[]"], ["eval.splits is empty"]),
    ("val_without_val_size", [B, "data.val_size=0"], ["data.val_size=0"]),
    ("plateau_without_val", [B, "sched.name=plateau", "eval.splits=[test]", "data.val_size=0"], ["plateau"]),
    ("unknown_model_option", [B, "model.args.nosuch=1"], ["no option 'nosuch'", "width"]),
    ("bad_model_option_value", [B, "model.args.width=-3"], ["model.args", "width"]),
    ("val_size_too_big", [B, "data.val_size=100000"], ["data.val_size=100000"]),
    ("batch_bigger_than_data", [B, "train.batch_size=100000"], ["train.batch_size"]),
    ("name_with_slash", [B, "name=../../escape"], ["name='../../escape'"]),
    ("runs_dir_is_a_file", [B, "train.runs_dir={d}/base.yaml"], ["train.runs_dir", "Not a directory"]),
    ("override_without_equals", [B, "optim.lr"], ["not of the form key=value"]),
    ("override_bad_key", [B, ".lr=1"], ["not a dotted config key"]),
    ("missing_file", ["{d}/nope.yaml"], ["does not exist"]),
    ("empty_yaml", ["{d}/empty.yaml"], ["is empty"]),
    ("comments_only_yaml", ["{d}/comments_only.yaml"], ["is empty"]),
    ("yaml_is_a_list", ["{d}/list.yaml"], ["must hold a mapping", "list"]),
    ("yaml_is_a_scalar", ["{d}/scalar.yaml"], ["must hold a mapping", "str"]),
    ("binary_junk", ["{d}/junk.yaml"], ["junk.yaml"]),
    ("invalid_yaml_syntax", ["{d}/syntax.yaml"], ["not valid YAML", "line"]),
    ("tabs_in_yaml", ["{d}/tabs.yaml"], ["not valid YAML", "line 2"]),
    ("not_utf8", ["{d}/latin1.yaml"], ["not UTF-8"]),
    ("duplicate_key", ["{d}/duplicate.yaml"], ["duplicate key 'train'", "line 2"]),
    ("python_tag_in_yaml", ["{d}/python_tag.yaml"], ["not valid YAML"]),
    ("section_scalar_in_yaml", ["{d}/section_scalar.yaml"], ["'model' must be a mapping"]),
    ("args_list_in_yaml", ["{d}/args_list.yaml"], ["model.args", "mapping"]),
    ("directory_not_file", ["{d}/folder.yaml"], ["is a folder"]),
    ("no_config_at_all", [], ["Give a config file"]),
    ("resume_not_a_run", ["--resume", "{d}"], ["not a run folder"]),
    ("config_and_resume", [B, "--resume", "{d}"], ["not both"]),
]


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_gives_one_clear_error(cfgdir, capsys, case, monkeypatch):
    name, argv, needles = case
    monkeypatch.chdir(cfgdir)  # the python_tag payload would `touch PWNED` here
    argv = [a.replace("{d}", str(cfgdir)) for a in argv]
    code = main(["train", *argv])
    assert_one_clean_error(code, capsys.readouterr().err, *(n.replace("{d}", str(cfgdir)) for n in needles))
    assert not (cfgdir / "PWNED").exists()
    assert not list((cfgdir / "runs").glob("*/*/*/checkpoints/last.pt")), "a bad config started training"
    count("bad_config_in_process")


@settings(max_examples=60, deadline=None)
@given(key=st.from_regex(r"(data|model|optim|sched|train|eval|log|model\.args|[a-z]{1,6})(\.[a-z_]{1,12}){0,2}",
                         fullmatch=True),
       value=st.text(max_size=20))
def test_any_override_either_loads_or_is_a_config_error(key, value):
    """Override keys the existing property tests do not reach: sections, free mappings, unknown leaves."""
    try:
        load_config(None, ["train.steps=1", f"{key}={value}"])
    except ConfigError:
        pass
    count("property_examples")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(alphabet="{}[]:,-#&*!|>'\" \n\tabtrainepochs0123456789.", max_size=80).map(str.encode)))
def test_any_config_file_either_loads_or_is_a_config_error(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError:
        pass
    count("property_examples")


@pytest.mark.slow  # spawns processes
def test_bad_configs_through_real_processes(cfgdir):
    picked = ["binary_junk", "unknown_model_option"]
    cases = {c[0]: c for c in BAD_CONFIGS if c[0] in picked}
    procs = {name: subprocess.Popen([sys.executable, "-m", "classbench", "train",
                                     *[a.replace("{d}", str(cfgdir)) for a in argv]],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, argv, _ in cases.values()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert_one_clean_error(proc.returncode, err, *cases[name][2])
        count("bad_config_subprocess")


# ============================================================================ 7. bad checkpoints
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_every_torch_load_in_the_package_is_weights_only():
    """Static proof: each torch.load call in classbench/ passes weights_only=True; no raw pickle or jit loads."""
    torch_loads, unsafe = [], []
    for path in sorted((REPO / "classbench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name == "torch.load" or name == "load":
                    torch_loads.append((path.relative_to(REPO), node.lineno, node))
                elif name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "torch.jit.load", "torch.package",
                              "numpy.load", "np.load", "marshal.loads", "dill.load", "joblib.load"):
                    # export re-loads the TorchScript bytes it has just made, to verify them: never a user's file
                    verifying_export = (name == "torch.jit.load" and ast.unparse(node.args[0]) == "io.BytesIO(data)"
                                        and path.name == "export.py")
                    # numpy without pickles reads only arrays (older runs' test_predictions.npz)
                    no_pickle = name in ("numpy.load", "np.load") and any(
                        k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False
                        for k in node.keywords)
                    if not (verifying_export or no_pickle):
                        unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert torch_loads, "expected at least the checkpoint loader"
    for path, line, node in torch_loads:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, f"{path}:{line}"
    assert not unsafe, unsafe  # CIFAR pickles go through data/safe_pickle.py's restricted SafeUnpickler
    count("torch_load_calls_checked", len(torch_loads))


class Payload:
    """Pickles to a call of os.system: loading it with plain pickle runs the command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    run_dir = train(load_config(None, [*TINY, "train.steps=4", "eval.every=2", f"train.runs_dir={d / 'runs'}"]))
    from PIL import Image

    Image.new("RGB", (16, 16), (120, 30, 200)).save(d / "img.png")
    return run_dir, d / "img.png"


def _ckpt(run_dir: Path, kind: str = "best") -> dict:
    return torch.load(run_dir / "checkpoints" / f"{kind}.pt", weights_only=True)


def _other_weights(num_classes: int = 4, name: str = "toy_dilated", **args) -> dict:
    from classbench.models import create_model

    return create_model(name, num_classes=num_classes, **args).state_dict()


def bad_other_class_count(path, run_dir, kind, marker):
    ck = _ckpt(run_dir, kind)
    ck["model"] = _other_weights(3, width=8)  # the weights of a 3-class model
    torch.save(ck, path)
    return ["does not fit this model", "fc.weight", "(3, 8)", "(4, 8)", "class count"]


def bad_other_model(path, run_dir, kind, marker):
    ck = _ckpt(run_dir, kind)
    ck["model"] = _other_weights(4, "resnet20")
    torch.save(ck, path)
    return ["does not fit this model", "missing", "does not have"]


def bad_newer_format(path, run_dir, kind, marker):
    ck = _ckpt(run_dir, kind)
    ck["format_version"] = FORMAT_VERSION + 1
    torch.save(ck, path)
    return [f"format version {FORMAT_VERSION + 1}", "Upgrade classbench"]


def bad_code_payload(path, run_dir, kind, marker):
    ck = _ckpt(run_dir, kind)
    ck["model"]["fc.bias"] = Payload(marker)
    torch.save(ck, path)
    return ["Refused to load", "weights_only=True"]


def bad_truncated(path, run_dir, kind, marker):
    data = (run_dir / "checkpoints" / f"{kind}.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ["Cannot read checkpoint", "truncated"]


def bad_zero_bytes(path, run_dir, kind, marker):
    path.write_bytes(b"")
    return ["Cannot read checkpoint"]


def bad_not_zip(path, run_dir, kind, marker):
    path.write_text("this is not a checkpoint\n" * 20)
    return ["Cannot read checkpoint", "not a PyTorch checkpoint"]


def bad_a_tensor(path, run_dir, kind, marker):
    torch.save(torch.zeros(3), path)
    return ["not a classbench checkpoint"]


def bad_incomplete(path, run_dir, kind, marker):
    torch.save({"format_version": FORMAT_VERSION, "model": _ckpt(run_dir, kind)["model"]}, path)
    return ["not a complete classbench checkpoint", "model_name"]


def bad_a_directory(path, run_dir, kind, marker):
    path.mkdir()  # eval/predict take a folder for a run folder
    return ["Cannot read checkpoint"] if kind == "last" else ["is a folder but holds no checkpoints/best.pt"]


def bad_best_as_last(path, run_dir, kind, marker):  # resume only: a best.pt copied over last.pt
    shutil.copy(run_dir / "checkpoints" / "best.pt", path)
    return ["not a full training checkpoint", "best.pt"]


def bad_model_args(path, run_dir, kind, marker):  # eval/predict only: they rebuild the model from the checkpoint
    ck = _ckpt(run_dir, kind)
    ck["model_args"] = {"width": -3}
    torch.save(ck, path)
    return ["Cannot rebuild the model", "negative"]


BAD_CKPTS = {f.__name__[4:]: f for f in (bad_other_class_count, bad_other_model, bad_newer_format, bad_code_payload,
                                         bad_truncated, bad_zero_bytes, bad_not_zip, bad_a_tensor, bad_incomplete,
                                         bad_a_directory, bad_best_as_last, bad_model_args)}
CKPT_CASES = [(name, via) for name in BAD_CKPTS for via in ("eval", "predict", "resume")
              if not (name == "best_as_last" and via != "resume") and not (name == "model_args" and via == "resume")]


@pytest.mark.parametrize("name,via", CKPT_CASES, ids=[f"{n}-{v}" for n, v in CKPT_CASES])
def test_bad_checkpoint_gives_a_clear_error(good_run, tmp_path, capsys, name, via):
    run_dir, image = good_run
    marker = tmp_path / "PAYLOAD_RAN"
    if via == "resume":
        run_dir = Path(shutil.copytree(run_dir, tmp_path / "run"))
        path = run_dir / "checkpoints" / "last.pt"
        path.unlink()
        needles = BAD_CKPTS[name](path, good_run[0], "last", marker)
        before = snapshot(run_dir / "metrics.jsonl", run_dir / "status.json", run_dir / "checkpoints" / "best.pt")
        code = main(["train", "--resume", str(run_dir)])
        assert snapshot(*before) == before  # a refused resume writes nothing
    else:
        path = tmp_path / "bad.pt"
        needles = BAD_CKPTS[name](path, run_dir, "best", marker)
        code = main(["eval", str(path)] if via == "eval" else ["predict", str(path), str(image)])
    assert_one_clean_error(code, capsys.readouterr().err, *needles)
    assert not marker.exists(), "the checkpoint's payload ran"
    count("bad_checkpoint_cases")


def test_checkpoint_payload_is_real_and_never_runs(good_run, tmp_path):
    """The headline case spelled out: plain torch.load would run it; classbench refuses it."""
    run_dir, image = good_run
    probe, marker = tmp_path / "PROBE", tmp_path / "MARKER"
    torch.save({"x": Payload(probe)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # what an unsafe loader does
    assert probe.exists()
    bad_code_payload(tmp_path / "evil.pt", run_dir, "best", marker)
    with pytest.raises(ClassbenchError, match="Refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    count("malicious_checkpoint_refused")


# ============================================================================ 8. disk full or read-only
class _Proxy:
    """A stand-in for a module inside classbench.io: overrides some functions, delegates the rest."""

    def __init__(self, module, **overrides):
        self._module, self._overrides = module, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._module, name)


class _FailingFile:
    """Writes the first half of what it is given, then fails like a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(bytes(data)[: max(len(data) // 2, 1)] if isinstance(data, (bytes, bytearray, memoryview))
                      else data[: max(len(data) // 2, 1)])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _install_write_failure(monkeypatch, where: str, armed: dict) -> str:
    """Make classbench's writes fail at `where` while armed["on"]; returns the expected strerror."""
    import tempfile

    def gate(fn, failing):
        return lambda *a, **k: failing(*a, **k) if armed["on"] else fn(*a, **k)

    if where == "create_temp_file":
        monkeypatch.setattr(cio, "tempfile", _Proxy(tempfile, mkstemp=gate(tempfile.mkstemp, _enospc)))
    elif where == "write_data":
        monkeypatch.setattr(cio, "os", _Proxy(os, fdopen=gate(os.fdopen, lambda *a, **k: _FailingFile(os.fdopen(*a, **k)))))
    elif where == "fsync":
        monkeypatch.setattr(cio, "os", _Proxy(os, fsync=gate(os.fsync, _enospc)))
    elif where == "rename_read_only":
        def erofs(*a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        monkeypatch.setattr(cio, "os", _Proxy(os, replace=gate(os.replace, erofs)))
        return os.strerror(errno.EROFS)
    elif where == "append_metrics":
        monkeypatch.setattr(cio, "open", gate(open, lambda *a, **k: _FailingFile(open(*a, **k))), raising=False)
    return os.strerror(errno.ENOSPC)


def _check_nothing_lost(run_dir: Path, before: dict[Path, bytes]) -> None:
    for path, data in before.items():
        now = path.read_bytes()
        if path.name == "metrics.jsonl":  # append-only: the old lines stay, a new partial one may follow
            assert now.startswith(data)
        elif path.name == "status.json":  # the one file that should change: it records the failure
            assert json.loads(now)["status"] in ("failed", "running"), now
        else:
            assert now == data, f"{path.name} changed"
    assert not temp_files(run_dir), temp_files(run_dir)
    for name in ("last.pt", "best.pt"):
        load_checkpoint(run_dir / "checkpoints" / name)


def _arm_before_step(step: int, armed: dict, before: dict, fill=None):
    """An after_step hook: once step ``step`` is trained (its log, eval and checkpoint writes come next),
    snapshot the run folder, then arm the failure."""

    def arm(trainer: Trainer) -> None:
        d = trainer.run_dir
        before.update(snapshot(d / "checkpoints" / "last.pt", d / "checkpoints" / "best.pt", d / "metrics.jsonl",
                               d / "status.json", d / "config.yaml", d / "env.json"))
        if fill is not None:
            fill()
        armed["on"] = True

    return at_step(step, arm)


WRITE_FAILURES = ["create_temp_file", "write_data", "fsync", "rename_read_only", "append_metrics"]


@pytest.mark.parametrize("where", WRITE_FAILURES)
def test_failed_write_is_a_clear_error_and_the_previous_files_stay(tiny_cfg, monkeypatch, where):
    armed = {"on": False}
    strerror = _install_write_failure(monkeypatch, where, armed)
    before: dict = {}
    trainer = Trainer(tiny_cfg("train.steps=10", "train.checkpoint_every=2", "eval.every=2", "log.every=2"),
                      after_step=_arm_before_step(6, armed, before))
    with pytest.raises(ClassbenchError, match=strerror) as e:
        trainer.fit()
    assert "untouched" in str(e.value) and str(trainer.run_dir) in str(e.value)  # what, where, and that nothing was lost
    assert len(before) == 6
    _check_nothing_lost(trainer.run_dir, before)
    armed["on"] = False  # space freed: the run goes on from its last checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume(trainer.run_dir)
    # the half-written metrics line is skipped, with a warning, and dropped
    assert [str(w.message) for w in caught if "partial write" in str(w.message)] or where != "append_metrics"
    assert all(r.get("step") is not None for r in read_jsonl(trainer.run_dir / "metrics.jsonl", warn=False))
    assert json.loads((trainer.run_dir / "summary.json").read_text())["steps"] == 10
    count("write_failures_injected")


@pytest.mark.slow  # spawns processes
def test_a_really_full_disk(tiny_cfg, tiny_tmpfs):
    """The same on a real, tiny tmpfs filled to the last byte."""
    filler = tiny_tmpfs / "filler"

    def fill():
        fill_disk(filler)

    before: dict = {}
    trainer = Trainer(tiny_cfg(f"train.runs_dir={tiny_tmpfs / 'runs'}", "train.steps=10", "train.checkpoint_every=2",
                               "eval.every=2", "log.every=2"), after_step=_arm_before_step(6, {}, before, fill=fill))
    with pytest.raises(ClassbenchError, match=os.strerror(errno.ENOSPC)):
        trainer.fit()
    _check_nothing_lost(trainer.run_dir, before)
    filler.unlink()
    resume(trainer.run_dir)
    assert json.loads((trainer.run_dir / "summary.json").read_text())["steps"] == 10
    count("write_failures_real_disk_full")


# ============================================================================ 9. concurrency
def test_run_folders_never_clash_across_threads(tmp_path):
    from classbench.runfolder import create_run_dir

    n_threads, each = 8, 25
    barrier = threading.Barrier(n_threads)
    made: list[Path] = []

    def worker():
        barrier.wait()
        made.extend(create_run_dir(tmp_path, "synthetic", "same") for _ in range(each))

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(made) == len(set(made)) == n_threads * each == len(run_dirs(tmp_path))
    assert all((d / "checkpoints").is_dir() for d in made)
    count("concurrent_run_dirs", len(made))


@pytest.mark.slow  # spawns processes
def test_run_folders_never_clash_across_processes(forkserver, tmp_path):
    start = time.time() + 0.5
    code = '''
import json, time
from classbench.runfolder import create_run_dir
while time.time() < {start}:
    time.sleep(0.001)
made = [str(create_run_dir({runs!r}, "synthetic", "same")) for _ in range(25)]
open({out!r}, "w").write(json.dumps(made))
'''
    pids = [forkserver.spawn(tmp_path / f"p{i}.log", code=code.format(start=start, runs=str(tmp_path / "runs"),
                                                                     out=str(tmp_path / f"p{i}.json")))
            for i in range(4)]
    for pid in pids:
        assert forkserver.wait(pid) == {"signal": 0, "code": 0}
    made = [p for i in range(4) for p in json.loads((tmp_path / f"p{i}.json").read_text())]
    assert len(made) == len(set(made)) == 100 == len(run_dirs(tmp_path / "runs"))
    count("concurrent_run_dirs", len(made))


@pytest.mark.slow  # spawns processes
def test_two_runs_of_one_config_at_the_same_moment(forkserver, tmp_path):
    cfg = write_cfg(tmp_path / "twins.yaml", SMALL, train={"steps": 30})
    argv = ["train", cfg, f"train.runs_dir={tmp_path / 'runs'}"]
    pids = [forkserver.spawn(tmp_path / f"twin{i}.log", argv) for i in range(2)]
    for i, pid in enumerate(pids):
        assert forkserver.wait(pid) == {"signal": 0, "code": 0}, (tmp_path / f"twin{i}.log").read_text()
    a, b = run_dirs(tmp_path / "runs")
    for d in (a, b):
        assert json.loads((d / "status.json").read_text())["status"] == "finished"
        load_checkpoint(d / "checkpoints" / "last.pt")
    assert metrics_without_timing(a) == metrics_without_timing(b)  # same seed: nothing mixed or clobbered
    count("concurrent_training_runs", 2)


def _read_all(runs: Path, out: Path, capsys, commands=("summary", "plot", "report")) -> None:
    """summary, plot and report over `runs`; each must succeed."""
    argvs = {"summary": ["summary", str(runs)],
             "plot": ["plot", str(runs), "--out", str(out / "figures"), "--metric", "top1", "--no-size"],
             "report": ["report", str(runs), "-o", str(out / "report.html"), "--eval-limit", "16", "--device", "cpu"]}
    for name in commands:
        code = main(argvs[name])
        err = capsys.readouterr().err
        assert code == 0 and "Traceback" not in err, (name, err)
        count("reader_calls")


@pytest.mark.slow  # spawns processes
def test_readers_survive_runs_being_written(forkserver, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    cfg = write_cfg(tmp_path / "live.yaml", SMALL, train={"steps": 100000})
    runs = tmp_path / "runs"
    pid = forkserver.spawn(tmp_path / "live.log", ["train", cfg, f"train.runs_dir={runs}"])
    alive = True
    try:
        (run_dir,) = wait_for(lambda: [d for d in run_dirs(runs) if (d / "checkpoints" / "best.pt").exists()],
                              what="a run in progress")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # While the child appends metrics and replaces checkpoints every few milliseconds:
            for _ in range(10):
                _read_all(runs, tmp_path, capsys, ["summary"])
            _read_all(runs, tmp_path, capsys, ["plot", "report"])
            assert not (run_dir / "summary.json").exists() and forkserver.proc.poll() is None
            os.kill(pid, signal.SIGKILL)  # now a crashed run: "running" in status.json, its process gone,
            forkserver.wait(pid)
            alive = False
            with open(run_dir / "metrics.jsonl", "a") as f:  # a partial last line, no summary.json
                f.write('{"step": 99999, "split": "val", "lo')
            _read_all(runs, tmp_path, capsys)
    finally:
        if alive:
            os.kill(pid, signal.SIGKILL)
            forkserver.wait(pid)
