"""Comparing runs: discovery, status, summary, plots, report, TensorBoard.

Every test reads *real* run folders made by the trainer (a tiny model on the
synthetic task, a few dozen steps), plus damaged copies of them: a run that
crashed half way (no summary.json, dead pid, partial last line), a run that is
still running (our own pid) and a run with a corrupt line in metrics.jsonl.

The runs come from tests/support/runs.py through the session fixture ``runs_dir``
(tests/conftest.py), built once per process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from classbench.compare.runs import load_run, load_runs, load_groups, group_matcher, flatten
from classbench.compare.summary import summarize
from classbench.cli import main
from classbench.config import load_config
from classbench.errors import ClassbenchError
from classbench.runfolder import RunFolder, discover

from support.configs import REPO
from support.runs import run_path


def _quiet_load(runs_dir, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(runs_dir, **kw)


def _metrics(path: Path) -> list[dict]:
    """metrics.jsonl read independently of classbench, skipping lines that do not parse."""
    out = []
    for line in (path / "metrics.jsonl").read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


# ---------------------------------------------------------------- discovery and status
def test_discovery_and_status(runs_dir):
    runs = {r.name: r for r in _quiet_load(runs_dir)}
    assert set(runs) == {"toy-a", "toy-b", "toy-c", "toy-half", "toy-live"}
    assert runs["toy-a"].status == "finished"
    assert runs["toy-half"].status == "crashed"
    assert runs["toy-live"].status == "running"
    assert runs["toy-a"].model == "toy_dilated" and runs["toy-a"].dataset == "synthetic"
    assert runs["toy-a"].summary is not None and runs["toy-half"].summary is None
    # checkpoints/ inside a run folder are not runs
    assert all("checkpoints" not in r.rel for r in runs.values())


def test_status_from_status_json(runs_dir, tmp_path):
    src = run_path(runs_dir, "toy-half")
    for status in ("failed", "interrupted", "nonfinite"):
        dst = tmp_path / status
        shutil.copytree(src, dst)
        (dst / "status.json").write_text(json.dumps({"status": status, "pid": 1, "message": "boom"}))
        run = load_run(dst, tmp_path)
        assert run.status == status
        assert any("boom" in w for w in run.warnings)
    # no status.json, no summary, files untouched for long: crashed; fresh: still starting
    dst = tmp_path / "nostatus"
    shutil.copytree(src, dst)
    (dst / "status.json").unlink()
    assert load_run(dst, tmp_path).status == "running"
    old = 1_000_000_000
    for f in dst.iterdir():
        os.utime(f, (old, old))
    assert load_run(dst, tmp_path).status == "crashed"


def test_warnings_for_partial_and_corrupt_runs(runs_dir):
    with pytest.warns(UserWarning) as rec:
        load_runs(runs_dir)
    msgs = [str(w.message) for w in rec]
    assert any("toy-half" in m and "not valid JSON" in m for m in msgs)
    assert any("toy-c" in m and "not valid JSON" in m for m in msgs)
    assert any("toy-half" in m and "crashed" in m for m in msgs)
    assert any("toy-live" in m and "still running" in m for m in msgs)


def test_filter_and_groups(runs_dir, tmp_path):
    names = sorted(r.name for r in _quiet_load(runs_dir, filter=r"toy-[ab]/"))
    assert names == ["toy-a", "toy-b"]
    groups = tmp_path / "groups.yaml"
    groups.write_text("pair:\n  - toy-a\n  - toy-(half|live)\n")
    names = sorted(r.name for r in _quiet_load(runs_dir, group="pair", groups_file=groups))
    assert names == ["toy-a", "toy-half", "toy-live"]
    with pytest.raises(ClassbenchError, match="Unknown group"):
        _quiet_load(runs_dir, group="nope", groups_file=groups)
    with pytest.raises(ClassbenchError, match="regular expression"):
        _quiet_load(runs_dir, filter="toy-[")
    with pytest.raises(ClassbenchError, match="No runs found"):
        _quiet_load(runs_dir, filter="no-such-run")
    with pytest.raises(ClassbenchError, match="does not exist"):
        load_runs(tmp_path / "missing")


def test_repo_groups_file():
    groups = load_groups(REPO / "configs" / "groups.yaml")
    assert {"resnets", "learning", "models", "vit-pooling", "zoo"} <= set(groups)
    resnets = group_matcher(groups["resnets"])
    for n in ["resnet18-imagenet-stem", "resnet34", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn", "resnet18-tnc",
              "resnet18-ms1", "resnet18-ms2", "resnet18-ms3", "resnet18-aug"]:
        assert resnets(n), n
    assert not resnets("resnet50")
    assert not resnets("resnet18")  # seed 003's recipe, not part of seed 002's comparison
    learning = group_matcher(groups["learning"])
    assert learning("resnet18-imagenet-stem") and learning("resnet18-clr1e-4") and learning("resnet18-aug")
    models = group_matcher(groups["models"])
    for n in ["resnet18-imagenet-stem", "vit-12x256-8x8", "vitn-12x256-8x8", "vitn-12x256-8x8-ra", "vitn-12x256-8x8-dm",
              "vitn-12x256-8x8-lt", "vitn-12x256-8x8-ltv", "vit-aux-3x4x256-8x8", "toy-dilated"]:
        assert models(n), n
    assert group_matcher(groups["vit-pooling"])("mcvit-tiny")
    zoo = group_matcher(groups["zoo"])
    assert all(zoo(m) for m in ["alexnet", "googlenet", "mobilenetv1", "resnet18", "vgg16", "vit-lite-7-4", "xception"])


# ---------------------------------------------------------------- summary
@pytest.mark.parametrize("split", ["val", "test", "train_subset"])
@pytest.mark.parametrize("metric", ["top1", "top5", "loss"])
def test_summary_values_equal_metrics_extremes(runs_dir, split, metric):
    rows = summarize(_quiet_load(runs_dir), split=split, metric=metric, sort="best_any_step")
    assert len(rows) == 5
    for row in rows:
        recs = [r for r in _metrics(Path(row["path"])) if r.get("split") == split and metric in r]
        pick = min if metric == "loss" else max
        best = pick(recs, key=lambda r: r[metric])
        assert row["best_any_step"] == best[metric]
        assert row["best_any_step_at"] == best["step"]
    values = [r["best_any_step"] for r in rows]
    assert values == sorted(values, reverse=metric != "loss")  # best first


def test_summary_honest_selection(runs_dir):
    rows = {r["config"]: r for r in summarize(_quiet_load(runs_dir), split="test", metric="top1")}
    for name in ("toy-a", "toy-b", "toy-c"):
        s = json.loads((Path(rows[name]["path"]) / "summary.json").read_text())
        assert rows[name]["test_at_best_val"] == s["test_top1"]
        assert rows[name]["test_at_best_val_step"] == s["best_val_step"]
        assert rows[name]["test_at_best_val_source"] == "summary.json"
        assert rows[name]["params"] == s["params"] and rows[name]["flops"] == s["flops"]
        assert rows[name]["train_img_per_s"] == s["train_img_per_s"]
        assert rows[name]["wall_time_s"] == s["wall_time_s"]
    # An unfinished run: the test value at the step where val top-1 was best, from metrics.jsonl.
    live = rows["toy-live"]
    recs = _metrics(Path(live["path"]))
    val = max((r for r in recs if r.get("split") == "val"), key=lambda r: r["top1"])
    test = [r for r in recs if r.get("split") == "test" and r["step"] == val["step"]]
    assert live["test_at_best_val_step"] == val["step"]
    assert live["test_at_best_val"] == test[-1]["top1"]
    assert live["test_at_best_val_source"] == "metrics.jsonl"
    assert live["status"] == "running" and rows["toy-half"]["status"] == "crashed"


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_summary_formats_label_both_selections(runs_dir, capsys):
    assert main(["summary", str(runs_dir), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "best test top-1 @ any step" in md and "test top-1 @ best.pt" in md
    assert "over all evaluated steps" in md and "checkpoint chosen on val" in md
    for name in ("toy-a", "toy-b", "toy-c", "toy-half", "toy-live"):
        assert f"| {name} |" in md
    assert "crashed" in md and "running" in md

    assert main(["summary", str(runs_dir), "--format", "csv", "--split", "val"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 5
    assert {"best_any_step", "best_any_step_at", "best_any_step_selection", "test_at_best_val",
            "test_at_best_val_selection", "params", "flops", "wall_time_s", "train_img_per_s", "status"} <= rows[0].keys()
    assert "over all evaluated steps" in rows[0]["best_any_step_selection"]
    assert "chosen on val" in rows[0]["test_at_best_val_selection"]

    assert main(["summary", str(runs_dir), "--format", "json", "--metric", "loss", "--sort", "best_any_step"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 5
    for row in data:
        assert {"best_any_step", "best_any_step_at", "test_at_best_val", "selection"} <= row.keys()
        assert set(row["selection"]) == {"best_any_step", "test_at_best_val"}
    losses = [r["best_any_step"] for r in data]
    assert losses == sorted(losses)


def test_summary_cli_warns_not_crashes(runs_dir, capsys):
    with pytest.warns(UserWarning) as rec:
        assert main(["summary", str(runs_dir), "--filter", "toy-(half|c)/"]) == 0
    msgs = " ".join(str(w.message) for w in rec)
    assert "not valid JSON" in msgs and "crashed" in msgs
    out = capsys.readouterr().out
    assert "toy-half" in out and "toy-c" in out and "crashed" in out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_summary_cli_user_errors(runs_dir, tmp_path, capsys):
    assert main(["summary", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["summary", str(runs_dir), "--group", "no-such-group", "--groups-file", str(REPO / "configs" / "groups.yaml")]) == 2
    assert "Unknown group" in capsys.readouterr().err


def test_summary_write_file(runs_dir, tmp_path):
    out = tmp_path / "s.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["summary", str(runs_dir), "--format", "json", "-o", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 5


# ---------------------------------------------------------------- plots
@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_plots_are_pngs_of_the_expected_size(runs_dir, tmp_path, monkeypatch):
    from PIL import Image

    from classbench.compare.plots import FIG_PX

    groups = tmp_path / "groups.yaml"
    groups.write_text("toys:\n  - toy-.*\n")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["plot", str(runs_dir), "--group", "toys", "--groups-file", str(groups), "--smooth", "0.5"]) == 0
        assert main(["plot", str(runs_dir), "--metric", "top1", "--x", "time", "--out", str(tmp_path / "t"), "--no-size"]) == 0
    out = tmp_path / "figures" / "toys"
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "size.png", "top1.png", "top5.png"]
    for p in out.iterdir():
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == FIG_PX
            assert np.asarray(im.convert("L")).std() > 5  # something was drawn
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["top1.png"]


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_plot_defaults_and_bad_smoothing(runs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["plot", str(runs_dir), "--filter", "toy-a/", "--x", "epoch"]) == 0
        assert (tmp_path / "figures" / "all" / "top5.png").is_file()
        assert main(["plot", str(runs_dir), "--smooth", "1.5"]) == 2
    assert "--smooth" in capsys.readouterr().err


def test_ema():
    from classbench.compare.plots import ema

    assert ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    sm = ema([1.0, 1.0, 1.0], 0.9)
    assert all(abs(v - 1.0) < 1e-12 for v in sm)  # debiased: a constant stays constant
    sm = ema([0.0, 10.0], 0.5)
    assert 0.0 < sm[1] < 10.0


# ---------------------------------------------------------------- report
@pytest.mark.slow  # a report takes seconds; test_report_notes_missing_data and test_evaluation.py report quickly
def test_report_holds_every_run(runs_dir, tmp_path):
    out = tmp_path / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(runs_dir), "-o", str(out)]) == 0
    html = out.read_text()
    for r in _quiet_load(runs_dir):
        assert r.rel.replace("/", "/<wbr>") in html or r.rel in html
        assert f'data-run="{r.rel}"' in html
    assert html.count('class="run-row') == 5
    assert html.count("data:image/png;base64,") >= 4  # loss, top1, top5, size
    # self-contained: nothing is fetched
    for bad in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert bad not in html, bad
    assert "best test top-1 @ any step" in html and "test top-1 @ best.pt" in html
    # the best run's per-class accuracy and confusion matrix, with class names
    assert "id='confusion-matrix'" in html
    assert "class_0" in html and "class_3" in html
    # config differences: toy-b differs in model.args.width and optim.lr
    assert "model.args.width=12" in html and "optim.lr=0.02" in html
    assert "crashed" in html and "running" in html


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_report_notes_missing_data(runs_dir, tmp_path, monkeypatch):
    import classbench.data
    from classbench.errors import DataError

    def broken(cfg):
        raise DataError("the dataset is gone")

    monkeypatch.setattr(classbench.data, "build_data", broken)
    old = tmp_path / "runs"  # runs from before stored test predictions: the report must evaluate best.pt
    shutil.copytree(runs_dir, old)
    for run_dir in discover(old):
        RunFolder(run_dir).test_outcomes.unlink(missing_ok=True)
    out = tmp_path / "r.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(old), "--filter", "toy-[ab]/", "-o", str(out)]) == 0
    html = out.read_text()
    assert "Could not evaluate" in html and "the dataset is gone" in html
    assert html.count('class="run-row') == 2


def test_per_class_counts_match_summary(runs_dir):
    from classbench.compare.report import evaluate_per_class

    run = load_run(run_path(runs_dir, "toy-b"), runs_dir)
    ev = evaluate_per_class(run)
    assert ev.confusion.shape == (4, 4)
    assert len(ev.classes) == 4 and ev.count == 64  # synthetic test split: synthetic_size // 4 images
    assert ev.top1 == pytest.approx(run.summary["test_top1"], abs=1e-6)


def test_config_differences(runs_dir):
    from classbench.compare.report import config_differences

    runs = _quiet_load(runs_dir, filter="toy-[abc]/")
    common, diffs, keys = config_differences(runs)
    assert "model.args.width" in keys and "optim.lr" in keys and "optim.name" in keys
    assert "name" not in keys and "data.name" in common
    by = {k.split(" ")[0]: v for k, v in diffs.items()}
    assert by["toy-b"]["model.args.width"] == 12 and by["toy-c"]["optim.name"] == "sgd"
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": 1, "a.c": [1, 2]}


# ---------------------------------------------------------------- tensorboard
def _scalars(logdir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logger_roundtrip(tmp_path):
    import torch

    from classbench.train.tensorboard import TensorBoardLogger

    tb = TensorBoardLogger(tmp_path, {"model": {"name": "toy", "args": {"width": 8}}, "optim": {"lr": 0.1, "betas": [0.9, 0.99]}})
    tb.log({"step": 10, "epoch": 0.5, "split": "train", "loss": 2.5, "top1": 0.25, "lr": 0.1, "time": 1.0, "flag": True, "note": "x"})
    tb.log({"step": 20, "epoch": 1.0, "split": "train", "loss": 2.0, "top1": torch.tensor(0.5), "lr": 0.05, "time": 2.0})
    tb.log({"step": 20, "epoch": 1.0, "split": "val", "loss": 1.9, "top1": 0.4, "top5": 0.9, "time": 2.1})
    tb.close({"test_top1": 0.42})
    tb.close()  # idempotent
    s = _scalars(tmp_path / "tensorboard")
    assert s["train/loss"] == [(10, 2.5), (20, 2.0)]
    assert s["train/top1"][1] == (20, pytest.approx(0.5))
    assert s["val/top5"] == [(20, pytest.approx(0.9))]
    assert {"train/lr", "train/epoch", "train/time", "val/top1"} <= s.keys()
    assert "train/flag" not in s and "train/note" not in s
    assert s["hparam/test_top1"][0][1] == pytest.approx(0.42)


def test_trainer_writes_tensorboard_events(runs_dir):
    run = run_path(runs_dir, "toy-a")
    s = _scalars(run / "tensorboard")
    recs = _metrics(run)
    train = [(r["step"], r["loss"]) for r in recs if r["split"] == "train"]
    assert [(st, pytest.approx(v, rel=1e-6)) for st, v in train] == s["train/loss"]
    val = [(r["step"], r["top1"]) for r in recs if r["split"] == "val"]
    assert [(st, pytest.approx(v, rel=1e-6)) for st, v in val] == s["val/top1"]
    assert "test/top5" in s and "train_subset/loss" in s


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    from classbench.train.tensorboard import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ClassbenchError, match=r"pip install classbench\[tensorboard\]"):
        TensorBoardLogger(tmp_path, {})
