"""benchmarks/quiet_suite.py: the quiet-machine figures of issues #19 and #16.

The unit tests check what decides the tables (the profiler's categories, which docs/models.md cells and
which configs are measured); the slow test runs the whole suite at --smoke sizes and checks that every
part produced its table with its command, machine and load, so that a quiet machine's few minutes are
not spent finding a bug.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def _suite():
    if "quiet_suite" not in sys.modules:  # registered before it runs: its dataclasses look their module up
        spec = importlib.util.spec_from_file_location("quiet_suite", REPO / "benchmarks" / "quiet_suite.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["quiet_suite"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["quiet_suite"]


@pytest.mark.parametrize("chain, expected", [
    (["aten::conv2d", "aten::convolution", "aten::mkldnn_convolution", "aten::empty"], ("convolutions", "forward and loss")),
    (["autograd::engine::evaluate_function: ConvolutionBackward0", "ConvolutionBackward0",
      "aten::convolution_backward"], ("convolutions", "backward")),
    # batch norm's own running-stat add_ belongs to batch norm, not to the adds: the outermost range decides
    (["aten::batch_norm", "aten::_batch_norm_impl_index", "aten::native_batch_norm", "aten::add_"],
     ("batch norm", "forward and loss")),
    (["autograd::engine::evaluate_function: NativeBatchNormBackward0", "NativeBatchNormBackward0",
      "aten::native_batch_norm_backward"], ("batch norm", "backward")),
    (["aten::add_"], ("ReLU and residual adds", "forward and loss")),
    (["aten::linear", "aten::addmm"], ("head, pooling and loss", "forward and loss")),
    (["Optimizer.step#SGD.step", "aten::_foreach_add_"], ("optimizer (SGD step, zero_grad)", "optimizer")),
    (["Optimizer.zero_grad#SGD.zero_grad"], ("optimizer (SGD step, zero_grad)", "optimizer")),
    (["classbench.data", "aten::index", "aten::addcmul"], ("data / augment", "data / augment")),
    (["aten::argmax"], ("other", "forward and loss")),
    ([], ("Python between ops (the trainer's loop, the profiler)",) * 2),
])
def test_profile_categories(chain, expected):
    assert _suite().categorize(chain) == expected


def test_every_nm_cell_of_docs_models_md_is_measured():
    """The suite measures at least the rows whose speed says n/m (once pasted, none are left: still true)."""
    mod = _suite()
    nm = {m.group(1) for m in re.finditer(r"^\| (\w+) \|[^\n]*\| n/m \|", (REPO / "docs" / "models.md").read_text(), re.M)}
    assert nm <= set(mod.NM_MODELS)
    from classbench.models import list_models

    assert set(mod.NM_MODELS) <= set(list_models())
    assert mod.MODELS_MD_BENCH == ["--mode", "both", "--batch-size", "64", "--steps", "3", "--warmup", "1",
                                   "--matmul-peak"]
    assert " ".join(mod.MODELS_MD_BENCH) in (REPO / "docs" / "models.md").read_text()  # the command the docs name


def test_seed002_configs_are_the_three_comparisons_of_groups_yaml():
    from classbench.compare.runs import group_matcher, load_groups

    mod = _suite()
    stems = {p.rsplit("/", 1)[-1].removesuffix(".yaml") for p in mod.seed002_configs()}
    groups = load_groups(REPO / "configs" / "groups.yaml")
    match = group_matcher(groups["resnets"] + groups["learning"] + groups["models"])
    on_disk = {p.stem for p in (REPO / "configs" / "cifar10").glob("*.yaml")}
    assert stems == {s for s in on_disk if match(s)}
    assert len(stems) == 19


def test_parts_are_picked_by_name_or_letter_and_a_typo_is_refused():
    mod = _suite()
    assert mod.pick_parts(["c", "a-peak"]) == ["a-peak", "c-reference-loop"]
    assert mod.pick_parts(["profile"]) == ["b-profile"]
    assert mod.pick_parts(None) == list(mod.PARTS)
    with pytest.raises(SystemExit, match="unknown part 'z'"):
        mod.pick_parts(["z"])
    assert mod.spread([3.0, 1.0, 2.0]) == "2.0 [1.0-3.0]" and mod.spread([5.0]) == "5.0"


def test_the_real_data_check_says_where_it_looked(tmp_path, monkeypatch):
    from support.data import write_cifar10

    mod = _suite()
    monkeypatch.setenv("CLASSBENCH_DATA", str(tmp_path))
    problem = mod.check_real_data()
    assert problem and str(tmp_path) in problem and "Downloading is off" in problem
    write_cifar10(tmp_path)  # the official layout: found, and nothing is downloaded
    assert mod.check_real_data() is None


@pytest.mark.slow
def test_a_child_past_its_timeout_is_killed_with_its_own_children(tmp_path):
    """A hung reference_loop must not leave its children running into the next part's timings."""
    import time

    mod = _suite()
    (tmp_path / "logs").mkdir()
    pid_file = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    sizes = mod.Sizes.for_mode(smoke=True, repeats=None)
    sizes.timeout_s = 3
    part = mod.Part("x-test", "test", tmp_path, sizes)
    with pytest.raises(RuntimeError, match="did not finish in 3 s"):
        part.run(["-c", code], "hang")
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # SIGKILL is delivered asynchronously; the init process reaps the orphan
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {grandchild} still runs")
    assert "killed after 3 s" in (tmp_path / "logs" / "x-test-hang.log").read_text()


@pytest.mark.slow
def test_smoke_run_writes_every_table(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "CLASSBENCH_DATA"}  # smoke needs no CIFAR
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quiet_suite.py"), "--out", str(out), "--smoke"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    suite = json.loads((out / "suite.json").read_text())
    assert suite["smoke"] is True and suite["failed"] == []
    assert suite["machine"]["cpu"] and suite["machine"]["simd_flags"] and suite["machine"]["precision_auto"]
    assert list(suite["parts"]) == list(_suite().PARTS)
    summary = (out / "summary.md").read_text()
    for key, part in suite["parts"].items():
        assert part["status"] == "ok", (key, part.get("error"))
        assert part["commands"] and len(part["loadavg_before"]) == 3 and len(part["loadavg_after"]) == 3
        md = (out / f"{key}.md").read_text()
        assert md in summary and "SMOKE" in md and "SIMD flags" in md and part["commands"][0] in md
    a = suite["parts"]["a-peak"]
    assert a["rows"][0]["pct_peak"] > 0 and a["rows"][0]["precision"] == suite["machine"]["precision_auto"]
    b = suite["parts"]["b-profile"]
    assert sum(b["ms_per_step"].values()) == pytest.approx(b["total_ms_per_step"])
    assert sum(b["phase_ms_per_step"].values()) == pytest.approx(b["total_ms_per_step"])
    assert b["ms_per_step"]["convolutions"] > 0 and b["ms_per_step"]["data / augment"] > 0
    assert b["ms_per_step"]["optimizer (SGD step, zero_grad)"] > 0 and b["phase_ms_per_step"]["backward"] > 0
    c = suite["parts"]["c-reference-loop"]["models"]["resnet20"]["models"]["resnet20"]
    assert c["ratio"] > 0 and len(c["pairs"]) == 1
    d = suite["parts"]["d-model-speeds"]["cells"]
    assert set(d) == {"cvit_tiny", "vitn_12x256_p8_ra"} and all(v["train"] > 0 and v["infer"] > 0 for v in d.values())
    assert "| cvit_tiny |" in (out / "d-model-speeds.md").read_text()
    e = suite["parts"]["e-fast-recipe"]
    assert e["trainer_summary"]["model"] == "airbench_net" and e["epochs_in_budget"] > 0
    f = suite["parts"]["f-seed002-cost"]
    assert [r["model"] for r in f["rows"]] == ["resnet18", "vit_aux_3x4x256_p8"]
    assert all(r["steps"] == 5000 and r["batch"] == 128 and r["run_min"] > 0 for r in f["rows"])
