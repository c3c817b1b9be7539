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


def _reference_loop_module():
    spec = importlib.util.spec_from_file_location("reference_loop", REPO / "benchmarks" / "reference_loop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
