"""Smoke tests of the benchmark tools: they run and report sane fields (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json

import torch

from classbench.train.precision import resolve_precision

import pytest
import torch

from classbench.cli import main
from conftest import REPO


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_bench_command_reports_each_mode(capsys):
    rc = main(["bench", "toy_dilated", "--batch-size", "4", "--steps", "1", "--warmup", "0", "--threads", "1",
               "--format", "json", "--matmul-peak", "--matmul-size", "64"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [r["mode"] for r in rows] == ["train", "infer"]
    for r in rows:
        assert r["model"] == "toy_dilated" and r["channels_last"] is True  # the registry's default
        assert r["img_per_s"] > 0 and r["step_ms"] > 0 and r["gflops"] > 0 and r["pct_matmul"] > 0
        assert r["gflop_per_img"] > 0 and r["precision"] == resolve_precision("auto", torch.device("cpu"))
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0
    train, infer = rows
    # training counts 3x the forward FLOPs per image
    assert train["gflops"] == pytest.approx(3 * train["gflop_per_img"] * train["img_per_s"])
    assert infer["gflops"] == pytest.approx(infer["gflop_per_img"] * infer["img_per_s"])
    assert any("matmul" in k for k in out["context"])


def test_bench_table_and_csv_and_errors(capsys):
    assert main(["bench", "toy_dilated", "--mode", "infer", "--no-channels-last", "--batch-size", "2",
                 "--steps", "1", "--warmup", "0", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "toy_dilated" in text and "img/s" in text and "GFLOP/s" in text
    assert main(["bench", "toy_dilated", "--mode", "train", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                 "--threads", "1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("model,") and len(lines) == 2
    assert main(["bench", "no_such_model", "--steps", "1"]) == 2
    assert "Unknown model" in capsys.readouterr().err
    # --filter: a regex searched in the names, checked before anything is built
    assert main(["bench", "toy_dilated", "resnet20", "--filter", "(", "--steps", "1"]) == 2
    assert "--filter '(' is not a valid regular expression" in capsys.readouterr().err
    assert main(["bench", "toy_dilated", "--filter", "^resnet", "--steps", "1"]) == 2
    assert "No model matches --filter" in capsys.readouterr().err


def _reference_loop_module():
    spec = importlib.util.spec_from_file_location("reference_loop", REPO / "benchmarks" / "reference_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # spawns a process per loop; test_reference_loop_children_get_every_shared_option is the quick check
def test_reference_loop_runs_two_steps_on_synthetic_data(tmp_path):
    mod = _reference_loop_module()
    threads = torch.get_num_threads()
    try:
        out = mod.main(["--model", "toy_dilated", "--batch-size", "8", "--steps", "2", "--warmup", "0",
                        "--data", "synthetic", "--workers", "0", "--threads", "1", "--json", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    (pair,) = out["models"]["toy_dilated"]["pairs"]
    assert pair["reference_img_per_s"] > 0 and pair["classbench_img_per_s"] > 0
    assert out["models"]["toy_dilated"]["ratio"] == pytest.approx(pair["classbench_img_per_s"] / pair["reference_img_per_s"])
    assert json.loads((tmp_path / "r.json").read_text())["models"]["toy_dilated"]["pairs"] == [pair]


def test_reference_loop_children_get_every_shared_option():
    import argparse

    mod = _reference_loop_module()
    args = argparse.Namespace(batch_size=64, steps=3, warmup=1, data="real", workers=0, threads=1)
    argv = mod.child_argv(args)
    assert "--model" not in argv and "--json" not in argv  # each child gets its own model, writes no file
    assert dict(zip(argv[::2], argv[1::2])) == {"--batch-size": "64", "--steps": "3", "--warmup": "1",
                                                "--data": "real", "--workers": "0", "--threads": "1"}


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_bench_model_arg_builds_the_configured_model(capsys):
    """`--model-arg stem=imagenet` benches seed 002's ImageNet-stem ResNet-18: the FLOPs are its own (about
    1/16 of the CIFAR stem's), and the options are typed as config overrides are."""
    from classbench.drivers.bench import parse_model_args
    from classbench.errors import ConfigError
    from classbench.models import create_model
    from classbench.models.profile import count_flops

    argv = ["bench", "resnet18", "--mode", "infer", "--batch-size", "2", "--steps", "1", "--warmup", "0",
            "--threads", "1", "--format", "json"]
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
        (cifar,) = json.loads(capsys.readouterr().out)["rows"]
        assert main([*argv, "--model-arg", "stem=imagenet"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert main([*argv, "--model-arg", "no_such_option=1"]) == 2
        assert "has no option 'no_such_option'" in capsys.readouterr().err
        assert main([*argv, "--model-arg", "stem"]) == 2
        assert "not of the form key=value" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    (imagenet,) = out["rows"]
    with torch.device("meta"):
        expected = count_flops(create_model("resnet18", stem="imagenet"), (3, 32, 32))
    assert imagenet["gflop_per_img"] == pytest.approx(expected / 1e9)
    assert cifar["gflop_per_img"] > 10 * imagenet["gflop_per_img"] and imagenet["img_per_s"] > 0
    assert out["context"]["model args"] == "stem=imagenet"
    assert parse_model_args(["width=16", "dropout=0.1", "bias=true", "stem=imagenet"]) == {
        "width": 16, "dropout": 0.1, "bias": True, "stem": "imagenet"}
    with pytest.raises(ConfigError, match="not a model option name"):
        parse_model_args(["head.dim=3"])
