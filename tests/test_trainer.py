import json

import pytest

from classbench.config import load_config
from classbench.errors import TrainingInterrupted
from classbench.io import read_jsonl
from classbench.inference.evaluate import evaluate_checkpoint
from classbench.train.trainer import Trainer, resume, train

from support.configs import REPO, require_cifar
from support.runs import metrics_without_timing

RUN_FILES = ["config.yaml", "env.json", "metrics.jsonl", "status.json", "summary.json",
             "checkpoints/last.pt", "checkpoints/best.pt"]


def test_trainer_learns_and_writes_every_record(tiny_cfg):
    run_dir = train(tiny_cfg("train.epochs=4"))
    for f in RUN_FILES:
        assert (run_dir / f).is_file(), f
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["best_val_top1"] > 0.6  # 4 classes: chance is 0.25
    assert s["test_top1"] > 0.6
    assert s["params"] > 0 and s["flops"] > 0 and s["train_img_per_s"] > 0
    lines = read_jsonl(run_dir / "metrics.jsonl")
    splits = {r["split"] for r in lines}
    assert splits == {"train", "val", "test", "train_subset"}
    for r in lines:
        assert {"step", "epoch", "split", "loss", "top1", "time"} <= r.keys()
        if r["split"] == "train":
            assert "lr" in r and "img_per_s" in r
        else:
            assert "top5" in r
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    env = json.loads((run_dir / "env.json").read_text())
    assert {"git_commit", "git_dirty", "versions", "device", "host", "argv"} <= env.keys()


def test_best_val_recorded_matches_metrics(tiny_cfg):
    run_dir = train(tiny_cfg())
    s = json.loads((run_dir / "summary.json").read_text())
    val = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "val"]
    best = max(val, key=lambda r: r["top1"])
    assert s["best_val_top1"] == best["top1"] and s["best_val_step"] == best["step"]


def test_eval_command_repeats_summary(tiny_cfg, capsys):
    run_dir = train(tiny_cfg())
    s = json.loads((run_dir / "summary.json").read_text())
    m = evaluate_checkpoint(run_dir, split="test")
    assert m["top1"] == s["test_top1"] and m["top5"] == s["test_top5"]
    from classbench.cli import main

    assert main(["eval", str(run_dir), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == s["test_top1"]


@pytest.mark.parametrize("extra", [
    [],  # BN model, Adam, onecycle-free constant lr
    # ResNet-20 takes seconds; test_reliability.py's mixstyle case resumes a ResNet-20 with SGD in the quick loop
    pytest.param(["model.name=resnet20", "model.args={}", "optim.name=sgd", "sched.name=cosine",
                  "sched.warmup_steps=3", "train.batch_size=16", "data.synthetic_size=128", "data.val_size=32",
                  "train.epochs=2"], marks=pytest.mark.slow),
])
def test_resume_from_mid_epoch_is_exact(tiny_cfg, extra):
    overrides = ["train.checkpoint_every=5", *extra]
    reference = train(tiny_cfg(*overrides))

    trainer = Trainer(tiny_cfg(*overrides))
    steps_per_epoch = trainer.steps_per_epoch
    trainer.stop_after = stop_at = steps_per_epoch + steps_per_epoch // 2 + 1  # mid second epoch, off every boundary
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit()
    run_dir = trainer.run_dir
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "summary.json").exists()

    resume(run_dir)
    assert metrics_without_timing(run_dir) == metrics_without_timing(reference)
    a = json.loads((reference / "summary.json").read_text())
    b = json.loads((run_dir / "summary.json").read_text())
    for key in ("best_val_top1", "best_val_step", "test_top1", "test_top5", "steps"):
        assert a[key] == b[key], key


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_cli_train_writes_run_and_prints_summary(tmp_path, capsys):
    from classbench.cli import main

    code = main(["train", str(REPO / "configs/cifar10/resnet20.yaml"), "data.name=synthetic", "data.val_size=64",
                 "data.synthetic_size=256", "data.image_size=16", "data.train_subset_size=16", "train.steps=4",
                 "train.batch_size=32", "eval.every=2", f"train.runs_dir={tmp_path}", "log.progress=never",
                 "train.threads=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "test      top-1" in out
    run_dirs = list((tmp_path / "synthetic" / "resnet20").iterdir())
    assert len(run_dirs) == 1


def test_same_second_runs_get_separate_folders(tiny_cfg):
    from classbench.runfolder import create_run_dir

    cfg = tiny_cfg()
    a = create_run_dir(cfg.train.runs_dir, "synthetic", "x")
    b = create_run_dir(cfg.train.runs_dir, "synthetic", "x")
    assert a != b and a.is_dir() and b.is_dir()


@pytest.mark.slow  # reads real CIFAR-10
def test_real_cifar10_small_resnet_beats_chance(tmp_path):
    root = require_cifar()
    cfg = load_config(REPO / "configs/cifar10/resnet20.yaml", [
        f"data.root={root}", "data.val_size=1000", "data.train_size=4000", "train.epochs=2", "train.batch_size=64",
        "optim.lr=0.05", "eval.splits=[val]", f"train.runs_dir={tmp_path}", "log.progress=never",
    ])
    run_dir = train(cfg)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["best_val_top1"] > 0.25, s  # chance is 0.10


def test_auto_precision_follows_the_hardware(monkeypatch):
    import torch

    from classbench.train import precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
