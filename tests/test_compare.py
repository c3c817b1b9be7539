"""`classbench compare` and the one comparison object behind summary, compare, plot and report.

Most tests here write run folders by hand (config.yaml, summary.json, status.json,
metrics.jsonl, stored test predictions) with known numbers, so every expected
value is computed in the test from those numbers.  The end-to-end test at the
bottom trains two tiny recipes x 3 seeds on synthetic data.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from classbench.cli import main
from classbench.compare import stats
from classbench.compare.comparison import build_comparison
from classbench.compare.published import load_published
from classbench.compare.runs import load_runs
from classbench.config import load_config
from classbench.io import append_jsonl, atomic_write_json, atomic_write_text
from classbench.runfolder import write_test_outcomes

from support.cli import assert_one_clean_error
from support.configs import REPO

BASE = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=256", "data.image_size=16",
        "data.val_size=64", "model.name=toy_dilated", "train.steps=10"]


@functools.lru_cache(maxsize=None)
def _config_text(name: str, overrides: tuple[str, ...]) -> str:
    # A validated config, built once per recipe: OmegaConf takes half a second per config.
    return json.dumps(dataclasses.asdict(load_config(None, [*BASE, f"name={name}", *overrides])))


def _config(name: str, overrides: tuple[str, ...]) -> dict:
    return json.loads(_config_text(name, tuple(overrides)))


def fake_run(runs: Path, name: str, seed: int, test_top1: float, *overrides: str, status: str = "finished",
             val_top1: float | None = None, correct: np.ndarray | None = None, val_curve=(), stamp: str | None = None,
             selection: str = "val") -> Path:
    """A run folder as the trainer leaves it, with the given scores (no training)."""
    cfg = _config(name, overrides)
    cfg["train"]["seed"] = seed
    path = runs / cfg["data"]["name"] / name / (stamp or f"20261202-1200{seed:02d}")
    path.mkdir(parents=True)
    (path / "checkpoints").mkdir()
    atomic_write_text(path / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_json(path / "status.json", {"status": status, "pid": 1, "host": "elsewhere", "updated": "", "message": ""})
    for i, (t, v) in enumerate(val_curve):
        append_jsonl(path / "metrics.jsonl", {"step": 10 * (i + 1), "split": "val", "top1": v, "time": t})
    if not val_curve:
        append_jsonl(path / "metrics.jsonl", {"step": 10, "split": "val", "top1": val_top1 or test_top1, "time": 1.0})
    if status == "finished":
        atomic_write_json(path / "summary.json", {
            "name": name, "model": cfg["model"]["name"], "dataset": cfg["data"]["name"], "status": "finished",
            "selection_split": selection, "best_val_top1": val_top1 if val_top1 is not None else test_top1 + 0.01,
            "test_top1": test_top1, "params": 1000, "flops": 5000, "train_img_per_s": 100.0 + seed,
            "wall_time_s": 10.0 + seed,
        })
    if correct is not None:
        store_outcomes(path, correct)
    return path


def store_outcomes(path: Path, correct: np.ndarray) -> None:
    """best.pt's test predictions, as the trainer stores them: right where ``correct`` is true, on 4 classes."""
    target = np.arange(len(correct)) % 4
    write_test_outcomes(path, np.where(correct, target, (target + 1) % 4), target, np.full(len(correct), 0.8), 4)


def load(runs: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(runs)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


A = [0.812, 0.820, 0.816]
B = [0.780, 0.790, 0.784]
C = [0.815, 0.809, 0.818]


@pytest.fixture
def three_arms(tmp_path) -> Path:
    runs = tmp_path / "runs"
    for name, vals, extra in (("wide", A, ["model.args={width: 16}"]), ("narrow", B, []), ("mid", C, ["model.args={width: 12}"])):
        for seed, v in enumerate(vals):
            fake_run(runs, name, seed, v, *extra)
    return runs


def test_arms_group_seeds_and_aggregate(three_arms):
    comp = build_comparison(load(three_arms))
    assert [a.label for a in comp.arms] == ["wide", "mid", "narrow"]  # best mean test top-1 first
    wide = comp.arm("wide")
    mean = sum(A) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in A) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t_{0.975, 2}
    assert wide.n == 3 and wide.test.mean == pytest.approx(mean) and wide.test.std == pytest.approx(sd)
    assert wide.test.ci95 == pytest.approx((mean - half, mean + half))
    assert wide.val.mean == pytest.approx(mean + 0.01)
    assert wide.train_img_per_s == pytest.approx(101.0) and wide.wall_time_s == pytest.approx(11.0)
    assert len({a.key for a in comp.arms}) == 3


def test_verdicts_welch_and_holm(three_arms):
    comp = build_comparison(load(three_arms))
    assert comp.reference.label == "wide" and len(comp.verdicts) == 2
    by_b = {v.b.label: v for v in comp.verdicts}
    raw = {k: stats.welch(A, vals) for k, vals in (("narrow", B), ("mid", C))}
    adjusted = stats.holm([raw["narrow"].p_value, raw["mid"].p_value])
    for (k, r), p_adj in zip(raw.items(), adjusted):
        v = by_b[k]
        assert v.a.label == "wide" and v.result.test == "welch"
        assert v.diff == pytest.approx(r.diff) and v.result.p_value == pytest.approx(r.p_value)
        assert v.p_adjusted == pytest.approx(p_adj)
    narrow = by_b["narrow"]
    assert narrow.significant and narrow.sentence.startswith("wide beats narrow by 3.1 points (95 % CI")
    assert "3 seeds each" in narrow.sentence and "Holm p" in narrow.sentence
    mid = by_b["mid"]
    assert not mid.significant and mid.sentence.startswith("no significant difference between wide and mid")
    sd = stats.pooled_std([A, C])
    assert f"about {stats.seeds_for_power(sd, 0.005)} seeds per arm would detect a 0.5-point difference with 80 % power" in mid.sentence
    # ... and says what spread that rests on: 3 seeds each pool 4 degrees of freedom
    assert f"if the seeds spread as these do (pooled std {100 * sd:.2f} points, 4 degrees of freedom)" in mid.sentence
    assert comp.verdicts[0] is narrow  # the decisive verdict heads the list


def test_compare_json_interface(three_arms, capsys):
    rc, out, _ = cli(capsys, "compare", str(three_arms), "--format", "json")
    assert rc == 0
    rows = json.loads(out)
    assert {"a", "b", "n_a", "n_b", "diff", "ci95", "p_value", "p_adjusted", "test", "verdict"} <= set(rows[0])
    narrow = next(r for r in rows if r["b"] == "narrow")
    assert narrow["a"] == "wide" and narrow["n_a"] == narrow["n_b"] == 3 and narrow["test"] == "welch"
    assert narrow["diff"] == pytest.approx(sum(A) / 3 - sum(B) / 3)  # fractions, not points
    assert narrow["ci95"][0] < narrow["diff"] < narrow["ci95"][1]


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_compare_text_and_markdown(three_arms, capsys):
    rc, out, _ = cli(capsys, "compare", str(three_arms))
    assert rc == 0 and "wide beats narrow" in out and "81.60 ± 0.40" in out  # mean of A as a percentage
    rc, md, _ = cli(capsys, "compare", str(three_arms), "--format", "markdown")
    assert rc == 0 and md.startswith("**Verdict**") and "| wide | 3 |" in md


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
@pytest.mark.parametrize("command,fmt,what", [("compare", "markdown", "2 comparisons"), ("compare", "json", "2 comparisons"),
                                             ("summary", "csv", "3 arms"), ("summary", "markdown", "3 arms")])
def test_output_file_holds_what_stdout_shows(three_arms, tmp_path, capsys, command, fmt, what):
    """`-o FILE` of compare and summary: the same text as stdout, written atomically, a note on stderr;
    a folder that does not exist is a one-line error, and nothing is written."""
    rc, shown, _ = cli(capsys, command, str(three_arms), "--format", fmt)
    assert rc == 0 and shown
    out = tmp_path / f"table.{fmt}"
    rc, stdout, err = cli(capsys, command, str(three_arms), "--format", fmt, "-o", str(out))
    assert rc == 0 and stdout == "" and out.read_text() == shown
    assert f"wrote {out} ({what})" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    rc, stdout, err = cli(capsys, command, str(three_arms), "--format", fmt, "-o", str(tmp_path / "no" / "t.txt"))
    assert rc == 2 and stdout == "" and "Cannot write" in err and not (tmp_path / "no").exists()


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_baseline_orients_the_difference(three_arms, capsys):
    comp = build_comparison(load(three_arms), baseline="narrow")
    assert comp.reference.label == "narrow" and all(v.b.label == "narrow" for v in comp.verdicts)
    wide = next(v for v in comp.verdicts if v.a.label == "wide")
    assert wide.diff == pytest.approx(sum(A) / 3 - sum(B) / 3)
    rc, _, err = cli(capsys, "compare", str(three_arms), "--baseline", "nosuch")
    assert rc == 2 and "--baseline 'nosuch' is not an arm" in err and "wide" in err


def test_arms_of_one_name_are_labelled_by_the_keys_that_differ(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, "toy", seed, 0.8 + seed / 100, "optim.lr=0.05", stamp=f"a{seed}")
        fake_run(runs, "toy", seed, 0.7 + seed / 100, "optim.lr=0.1", stamp=f"b{seed}")
    comp = build_comparison(load(runs))
    assert sorted(a.label for a in comp.arms) == ["toy optim.lr=0.05", "toy optim.lr=0.1"]
    assert all(a.n == 2 for a in comp.arms)
    assert not any("makes 2 arms" in n for n in comp.notes)  # two recipes with their seeds: nothing to warn of


def test_a_seed_added_with_other_overrides_is_named_with_the_way_to_add_one(tmp_path, capsys):
    # The first seeds ran with train.precision=fp32 on the command line; the added one without it.
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        fake_run(runs, "toy", seed, 0.80 + seed / 100, "train.precision=fp32")
    fake_run(runs, "toy", 3, 0.83, stamp="added")
    comp = build_comparison(load(runs))
    assert sorted((a.label, a.n) for a in comp.arms) == [("toy train.precision=auto", 1), ("toy train.precision=fp32", 3)]
    (note,) = [n for n in comp.notes if "makes 2 arms" in n]
    assert "differ in train.precision" in note and "`classbench train RUN/config.yaml train.seed=N`" in note
    rc, out, _ = cli(capsys, "compare", str(runs))
    assert rc == 0 and "config toy makes 2 arms, which differ in train.precision" in out


def test_one_run_arms_have_no_ci_and_use_mcnemar(tmp_path, capsys):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    ca = rng.uniform(size=400) < 0.85
    cb = rng.uniform(size=400) < 0.70
    fake_run(runs, "good", 0, float(ca.mean()), correct=ca)
    fake_run(runs, "bad", 0, float(cb.mean()), correct=cb)
    comp = build_comparison(load(runs))
    (v,) = comp.verdicts
    r = stats.mcnemar(ca, cb)
    assert v.result.test == "mcnemar" and v.result.discordant == r.discordant and v.result.p_value == pytest.approx(r.p_value)
    assert v.diff == pytest.approx(ca.mean() - cb.mean())
    assert "tests the two trained models, not the recipes" in v.sentence
    assert comp.arm("good").test.ci95 is None
    rc, out, _ = cli(capsys, "compare", str(runs))
    assert rc == 0 and "n=1: no CI" in out


def test_old_runs_without_predictions_say_so(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "good", 0, 0.85, correct=np.ones(100, bool))
    fake_run(runs, "old", 0, 0.80)
    (v,) = build_comparison(load(runs)).verdicts
    assert v.result is None and v.comparable and v.diff == pytest.approx(0.05)
    assert "no stored test outcomes" in v.sentence and "synthetic/old/" in v.sentence
    assert "McNemar's test is not possible" in v.sentence


def test_one_run_against_seeds_is_tested_on_the_seeds_spread(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs, "one", 0, 0.74)
    for seed in (0, 1, 2):
        fake_run(runs, "three", seed, 0.80 + seed / 100)
    expected = stats.single_run_t(0.74, [0.80, 0.81, 0.82])
    # Default framing: the best arm (three) is a, so the difference is three - one; with --baseline three, one - three.
    for baseline, sign in ((None, -1), ("three", 1)):
        (v,) = build_comparison(load(runs), baseline=baseline).verdicts
        r = v.result
        assert r.test == "single-run t" and r.p_value == pytest.approx(expected.p_value) and r.df == 2
        assert r.diff == pytest.approx(sign * expected.diff)
        assert sorted(r.ci95) == pytest.approx(sorted(sign * c for c in expected.ci95))
        assert r.ci95[0] < r.diff < r.ci95[1]
        assert "1 run against 3 seeds, assuming one varies over seeds as three does" in v.sentence
    assert expected.p_value < 0.05  # 7 points below seeds 1 point apart: significant even on 2 df, and said so
    rc, out, _ = cli(capsys, "compare", str(runs), "--baseline", "three")
    assert rc == 0 and "one trails three by 7.0 points" in out and "single-run t p = " in out


def test_arms_on_different_images_are_not_compared(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, "a", seed, 0.8 + seed / 100)
        fake_run(runs, "b", seed, 0.7 + seed / 100, "data.val_size=32")
        fake_run(runs, "c", seed, 0.6 + seed / 100, "data.split_seed=5")
    comp = build_comparison(load(runs))
    assert all(not v.comparable and v.p_adjusted is None for v in comp.verdicts)
    reasons = " ".join(v.sentence for v in comp.verdicts)
    assert "data.val_size 64 vs 32" in reasons and "data.split_seed 0 vs 5" in reasons
    rc, _, err = cli(capsys, "compare", str(runs))
    assert rc == 2 and "No two arms can be compared" in err and "data.val_size 64 vs 32" in err


def test_different_test_sizes_are_not_compared(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "a", 0, 0.8, correct=np.ones(100, bool))
    fake_run(runs, "b", 0, 0.7, correct=np.ones(80, bool))
    (v,) = build_comparison(load(runs)).verdicts
    assert not v.comparable and "test size 100 vs 80 images" in v.sentence


def _cpu_env(model: str, flags: list[str], threads: int = 2) -> dict:
    return {"device": "cpu", "device_name": "x86_64", "threads": threads,
            "cpu": {"model": model, "family": "6", "model_number": "167", "flags": flags}}


def test_an_arm_timed_on_several_set_ups_says_its_speed_is_a_mean_across_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    envs = {0: _cpu_env("Xeon X", ["avx2", "amx_bf16"]), 1: _cpu_env("EPYC Y", ["avx2", "avx512_bf16"]),
            2: _cpu_env("Xeon X", ["avx2", "amx_bf16"])}
    for seed, env in envs.items():  # arm a: seeds 0 and 2 on one CPU, seed 1 on another
        atomic_write_json(fake_run(runs, "a", seed, 0.80 + seed / 100) / "env.json", env)
    for seed in range(2):  # arm b: one GPU for both seeds
        path = fake_run(runs, "b", seed, 0.70 + seed / 100)
        atomic_write_json(path / "env.json", {"device": "cuda:0", "device_name": "NVIDIA H200"})
    comp = build_comparison(load(runs))
    (note,) = comp.notes
    assert note.startswith("arm a: its runs were timed on 2 different set-ups (")
    assert "EPYC Y (family 6 model 167, avx512_bf16, 2 threads); Xeon X (family 6 model 167, amx, 2 threads)" in note
    rc, out, _ = cli(capsys, "compare", str(runs), "--format", "markdown")
    assert rc == 0 and f"> {note}" in out
    # The same CPU with another thread count is another speed; a run without env.json names no machine.
    atomic_write_json(fake_run(runs, "a", 3, 0.79) / "env.json", _cpu_env("Xeon X", ["avx2", "amx_bf16"], threads=1))
    fake_run(runs, "b", 2, 0.71)
    (note,) = build_comparison(load(runs)).notes
    assert "timed on 3 different set-ups" in note and "Xeon X (family 6 model 167, amx, 1 thread)" in note


def test_unfinished_runs_are_left_out_and_listed(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, "a", seed, 0.8 + seed / 100)
        fake_run(runs, "b", seed, 0.7 + seed / 100)
    fake_run(runs, "a", 2, 0.99, status="failed")
    fake_run(runs, "b", 2, 0.99, status="interrupted")
    comp = build_comparison(load(runs))
    assert [a.n for a in comp.arms] == [2, 2]
    assert sorted((e.run.split("/")[1], e.status) for e in comp.excluded) == [("a", "failed"), ("b", "interrupted")]
    rc, out, _ = cli(capsys, "compare", str(runs))
    assert rc == 0 and out.count("left out synthetic/") == 2


def test_fewer_than_two_arms_exit_2(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        fake_run(runs, "a", seed, 0.8)
    fake_run(runs, "b", 0, 0.5, status="failed")
    rc, _, err = cli(capsys, "compare", str(runs))
    assert rc == 2 and "Fewer than two arms" in err and "1 arm (a, 3 run(s))" in err and "1 unfinished" in err


def test_time_to_target(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "a", 0, 0.8, val_curve=[(5.0, 0.5), (9.0, 0.91), (12.0, 0.95)])
    fake_run(runs, "a", 1, 0.8, val_curve=[(4.0, 0.92)])
    fake_run(runs, "a", 2, 0.8, val_curve=[(4.0, 0.60), (8.0, 0.70)])
    fake_run(runs, "b", 0, 0.7)
    comp = build_comparison(load(runs), target=0.9)
    tt = comp.arm("a").time_to_target
    assert tt.reached == 2 and tt.n == 3 and tt.mean_s == pytest.approx((9.0 + 4.0) / 2)


# ---------------------------------------------------------------- end to end: two recipes x 3 seeds, trained
TINY = ["data.name=synthetic", "data.num_classes=4", "data.synthetic_size=256", "data.image_size=16",
        "data.val_size=64", "data.train_subset_size=32", "data.pad=2", "model.name=toy_dilated",
        "optim.name=adam", "optim.weight_decay=0", "train.batch_size=32", "train.epochs=2", "train.threads=1",
        "train.precision=fp32", "eval.splits=[val,test]", "eval.batch_size=64", "log.every=3", "log.progress=never"]
RECIPES = {"wide": ["model.args={width: 8}", "optim.lr=0.01"], "slow": ["model.args={width: 4}", "optim.lr=0.0005"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from classbench.train.trainer import train

    runs = tmp_path_factory.mktemp("e2e") / "runs"
    for name, recipe in RECIPES.items():
        for seed in range(3):
            train(load_config(None, [*TINY, *recipe, f"name={name}", f"train.seed={seed}", f"train.runs_dir={runs}"]))
    return runs


@pytest.fixture(scope="module")
def e2e_report(trained, tmp_path_factory) -> Path:
    """`classbench report` over the trained runs, written once for the tests that read it."""
    out = tmp_path_factory.mktemp("e2e-report") / "report.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(trained), "-o", str(out)]) == 0
    return out


def test_a_run_trained_from_a_stored_config_joins_its_arm(trained, tmp_path, capsys):
    """README's way to add a seed later: the stored config.yaml holds the recipe's overrides."""
    first = sorted((trained / "synthetic" / "wide").iterdir())[0]
    runs = tmp_path / "runs"
    shutil.copytree(first, runs / "synthetic" / "wide" / first.name)
    rc, _, err = cli(capsys, "train", str(first / "config.yaml"), "train.seed=7", f"train.runs_dir={runs}")
    assert rc == 0, err
    comp = build_comparison(load(runs))
    assert [(a.label, a.n) for a in comp.arms] == [("wide", 2)]
    seed = yaml.safe_load((first / "config.yaml").read_text())["train"]["seed"]
    assert sorted(r.config["train"]["seed"] for r in comp.arms[0].runs) == sorted([seed, 7])


def _summaries(runs: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in sorted(runs.glob("synthetic/*/*/summary.json")):
        out.setdefault(p.parent.parent.name, []).append(json.loads(p.read_text()))
    return out


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_trainer_stores_test_outcomes(trained):
    from classbench.config import load_run_config
    from classbench.data import test_labels
    from classbench.runfolder import CALIBRATION_BINS, labels_digest, read_test_outcomes

    for summary_path in trained.glob("synthetic/*/*/summary.json"):
        s = json.loads(summary_path.read_text())
        p = read_test_outcomes(summary_path.parent)
        assert p is not None and p["correct"].size == 64  # synthetic test split: synthetic_size // 4
        assert float(p["correct"].mean()) == pytest.approx(s["test_top1"])
        labels = test_labels(load_run_config(summary_path.parent).data)
        assert p["labels_sha256"] == labels_digest(labels) and "target" not in p and "pred" not in p
        assert p["confusion"].sum(axis=1).tolist() == np.bincount(labels, minlength=s["num_classes"]).tolist()
        cal = p["calibration"]  # every image in some confidence bin; none at confidence 0 (bin 0 holds (0, 1/15])
        assert cal["count"].size == CALIBRATION_BINS and cal["count"].sum() == 64 and cal["correct"].sum() == p["correct"].sum()
        assert 0 < cal["confidence_sum"].sum() <= 64


@pytest.mark.slow  # plots and a report of real runs; the fake-run tests above check each command quickly
def test_summary_compare_plot_report_agree(trained, e2e_report, tmp_path, capsys):
    sums = _summaries(trained)
    means = {k: sum(s["test_top1"] for s in v) / len(v) for k, v in sums.items()}
    assert set(means) == {"wide", "slow"} and all(len(v) == 3 for v in sums.values())

    # summary: arms by default (each arm has 3 runs), the JSON names, means from summary.json
    rc, out, _ = cli(capsys, "summary", str(trained), "--format", "json")
    assert rc == 0
    arms = {a["arm"]: a for a in json.loads(out)}
    assert set(arms) == set(means)
    for label, a in arms.items():
        assert {"arm", "config", "n", "runs", "mean", "std", "ci95", "min", "max"} <= set(a)
        assert a["n"] == 3 and a["mean"] == pytest.approx(means[label]) and len(a["runs"]) == 3
        vals = [s["test_top1"] for s in sums[label]]
        assert a["min"] == min(vals) and a["max"] == max(vals) and a["ci95"][0] <= a["mean"] <= a["ci95"][1]
    order = [a["arm"] for a in json.loads(out)]
    assert order == sorted(means, key=lambda k: -means[k])  # the honest column decides the order
    rc, by_run, _ = cli(capsys, "summary", str(trained), "--by", "run", "--format", "json")
    assert rc == 0 and len(json.loads(by_run)) == 6

    # compare: the difference of those means, Welch on those values
    rc, out, _ = cli(capsys, "compare", str(trained), "--format", "json")
    assert rc == 0
    (v,) = json.loads(out)
    best, other = order
    assert (v["a"], v["b"], v["test"]) == (best, other, "welch")
    assert v["diff"] == pytest.approx(means[best] - means[other])
    expected = stats.welch([s["test_top1"] for s in sums[best]], [s["test_top1"] for s in sums[other]])
    assert v["p_value"] == pytest.approx(expected.p_value) and v["ci95"] == pytest.approx(list(expected.ci95))

    # summary markdown: headed by the same verdict
    rc, md, _ = cli(capsys, "summary", str(trained))
    assert rc == 0 and md.index(v["verdict"]) < md.index("| arm |")

    # plot --by arm: the curves are the means of the runs' own records
    from classbench.compare.plots import arm_curve

    comp = build_comparison(load(trained))
    for arm in comp.arms:
        xs, mean, lo, hi = arm_curve(arm, "val", "top1")
        last = [r.records("val", "top1")[-1]["top1"] for r in arm.runs]
        assert mean[-1] == pytest.approx(sum(last) / 3) and lo[-1] == min(last) and hi[-1] == max(last)
        _, _, clo, chi = arm_curve(arm, "val", "top1", band="ci")
        assert (clo[-1], chi[-1]) == pytest.approx(stats.describe(last).ci95)
    rc, out, _ = cli(capsys, "plot", str(trained), "--out", str(tmp_path / "fig"), "--band", "ci")
    assert rc == 0
    for name in ("loss.png", "top1.png", "top5.png", "size.png"):
        assert (tmp_path / "fig" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # report: verdict first, then the arm table with the same numbers, per-arm analysis of its best.pt
    text = e2e_report.read_text()
    assert text.index("id='verdict'") < text.index("id='arms'") < text.index("id='curves'")
    import html as html_mod

    assert html_mod.escape(v["verdict"], quote=True) in text
    for label, mean in means.items():
        assert f"{100 * mean:.2f}" in text
    assert text.count("class='arm-analysis'") == 2 and text.count("class='ece'") == 2
    assert text.count("alt=\"reliability diagram of") == 2


def test_summary_by_run_sorts_by_the_honest_column(tmp_path, capsys):
    """#13.3: the default order is test top-1 of the val-chosen checkpoint, not the optimistic best-at-any-step."""
    runs = tmp_path / "runs"
    lucky = fake_run(runs, "lucky", 0, 0.70)  # a test spike at a step val did not choose: optimistic 0.95
    append_jsonl(lucky / "metrics.jsonl", {"step": 20, "split": "test", "top1": 0.95, "time": 2.0})
    steady = fake_run(runs, "steady", 0, 0.80)
    append_jsonl(steady / "metrics.jsonl", {"step": 20, "split": "test", "top1": 0.81, "time": 2.0})
    rc, out, _ = cli(capsys, "summary", str(runs), "--format", "json")
    rows = json.loads(out)
    assert rc == 0 and "run" in rows[0]  # one run per arm: the per-run table by default
    assert [r["config"] for r in rows] == ["steady", "lucky"]
    rc, out, _ = cli(capsys, "summary", str(runs), "--format", "json", "--sort", "best_any_step")
    assert [r["config"] for r in json.loads(out)] == ["lucky", "steady"]


@pytest.mark.slow  # starts chromium
def test_report_renders_in_chromium_with_the_verdict_first(trained, e2e_report, tmp_path):
    """As tests/test_report_browser.py does: the page renders offline, and the DOM a browser builds holds the
    verdict as the first section, then the arm table with one row per arm."""
    import re

    from PIL import Image

    from test_report_browser import WINDOW, _chrome, _chromium

    binary = _chromium()
    url = e2e_report.resolve().as_uri()
    shot = tmp_path / "report.png"
    res = _chrome(binary, tmp_path / "profile1", f"--screenshot={shot}", url)
    assert shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == WINDOW and np.asarray(im.convert("RGB"), dtype=np.float32).std() > 20
    res = _chrome(binary, tmp_path / "profile2", "--dump-dom", url)
    dom = res.stdout
    assert res.returncode == 0, res.stderr[-2000:]
    sections = re.findall(r'<section id="([^"]+)"', dom)
    assert sections[:3] == ["verdict", "arms", "summary"]
    table = re.search(r'<table id="arms-table".*?</table>', dom, re.S).group(0)
    comp = build_comparison(load(trained))
    assert re.findall(r'data-arm="([^"]+)"', table) == [a.label for a in comp.arms]
    verdict = re.search(r'<section id="verdict".*?</section>', dom, re.S).group(0)
    import html as html_mod

    assert html_mod.escape(comp.verdicts[0].sentence, quote=False) in verdict


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["summary", "--help"], ["plot", "--help"], ["report", "--help"]])
def test_help_renders(argv, capsys):
    """argparse %-formats help strings: a stray percent sign breaks `classbench --help` itself."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_the_sweep_ends_with_the_summary_command_s_table(trained, capsys):
    """`classbench sweep` closes with what `classbench summary` prints: arms once seeds make arms."""
    from classbench.drivers.sweep import summary_tables

    assert main(["summary", str(trained)]) == 0
    printed = capsys.readouterr().out
    assert "| arm | n |" in printed and "**Verdict**" in printed
    assert summary_tables([str(trained)]) == f"\nclassbench summary {trained}\n\n" + printed
    one_each = [r for r in load_runs(trained) if r.config.get("train", {}).get("seed") == 0]
    from classbench.compare.summary import summary_text

    text, what = summary_text(one_each)
    assert what == f"{len(one_each)} runs" and "| run |" in text


# ---------------------------------------------------------------- --score last: the final weights, as sources that report the end do
def _end_of_training(path: Path, curve: list[tuple[int, float]], steps: int) -> Path:
    """Give a fake run test evaluations at the given steps and a recorded budget of ``steps``."""
    for step, top1 in curve:
        append_jsonl(path / "metrics.jsonl", {"step": step, "split": "test", "top1": top1, "time": float(step)})
    summary = json.loads((path / "summary.json").read_text())
    atomic_write_json(path / "summary.json", {**summary, "steps": steps})
    return path


LAST_A, LAST_B = [0.70, 0.74, 0.72], [0.69, 0.70, 0.68]


@pytest.fixture
def ended(tmp_path) -> Path:
    """Two 3-seed arms whose best.pt and final weights score differently (and rank the other way round)."""
    runs = tmp_path / "runs"
    for seed, (last_a, last_b) in enumerate(zip(LAST_A, LAST_B)):
        _end_of_training(fake_run(runs, "alpha", seed, 0.60 + seed / 100, "data.val_size=0", "eval.splits=[test]",
                                  selection="test"), [(10, 0.50), (20, last_a)], 20)
        _end_of_training(fake_run(runs, "beta", seed, 0.80 + seed / 100, "data.val_size=0", "eval.splits=[test]",
                                  selection="test"), [(10, 0.55), (20, last_b)], 20)
    return runs


def test_score_last_compares_the_final_weights(ended, capsys):
    best = build_comparison(load(ended))
    last = build_comparison(load(ended), score="last")
    assert best.arm("beta").test.mean == pytest.approx(0.81) and best.reference.label == "beta"
    assert last.arm("alpha").test_values == pytest.approx(LAST_A) and last.arm("beta").test_values == pytest.approx(LAST_B)
    assert last.reference.label == "alpha"  # the best arm at the final weights
    (v,) = last.verdicts
    r = stats.welch(LAST_A, LAST_B)
    assert v.result.test == "welch" and v.diff == pytest.approx(r.diff) and v.result.p_value == pytest.approx(r.p_value)
    rc, out, err = cli(capsys, "compare", str(ended), "--score", "last", "--format", "json")
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["a"] == "alpha" and row["diff"] == pytest.approx(r.diff)
    rc, out, err = cli(capsys, "summary", str(ended), "--score", "last")
    assert rc == 0, err
    assert "test top-1 of the final weights" in out and "| alpha | 3 | 72.00 ± 2.00 |" in out
    assert "checkpoint chosen on val" not in out


def test_report_scores_its_verdict_as_told(ended, tmp_path, capsys):
    """report --score last: the verdict and the arm table rank the final weights; the per-arm analysis says it is
    still of best.pt, the checkpoint whose predictions are recorded."""
    for run in sorted(ended.glob("*/*/*")):
        store_outcomes(run, np.arange(400) % 3 > 0)
    pages = {}
    for score in ("best", "last"):
        out = tmp_path / f"{score}.html"
        rc, _, err = cli(capsys, "report", str(ended), "--score", score, "-o", str(out), "--device", "cpu")
        assert rc == 0, err
        pages[score] = out.read_text()
    verdict = {k: page.split("id='verdict'")[1].split("</section>")[0] for k, page in pages.items()}
    assert "the best arm, <strong>beta</strong>" in verdict["best"] and "final weights" not in verdict["best"]
    assert "the best arm, <strong>alpha</strong>" in verdict["last"] and "final weights" in verdict["last"]
    arms = pages["last"].split("id='arms-table'")[1].split("</table>")[0]
    assert arms.index("data-arm='alpha'") < arms.index("data-arm='beta'") and "72.00" in arms
    assert "score the final weights (--score last)" in pages["last"]
    assert "score the final weights" not in pages["best"]


def test_score_last_leaves_out_a_run_without_a_test_at_its_last_step(ended):
    stale = next((ended / "synthetic" / "alpha").iterdir())
    summary = json.loads((stale / "summary.json").read_text())
    atomic_write_json(stale / "summary.json", {**summary, "steps": 30})  # it ran on to step 30, untested there
    comp = build_comparison(load(ended), score="last")
    assert comp.arm("alpha").n == 2
    (gone,) = comp.excluded
    assert gone.run.endswith(stale.name) and "no test evaluation at its last step" in gone.reason
    assert build_comparison(load(ended)).arm("alpha").n == 3  # best.pt's figure is still there


def test_two_one_run_arms_are_not_tested_on_their_final_weights(tmp_path):
    """McNemar needs per-image results, which the records keep for best.pt only: at --score last it says so."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    ca, cb = rng.uniform(size=400) < 0.85, rng.uniform(size=400) < 0.70
    _end_of_training(fake_run(runs, "good", 0, float(ca.mean()), correct=ca), [(20, 0.84)], 20)
    _end_of_training(fake_run(runs, "bad", 0, float(cb.mean()), correct=cb), [(20, 0.71)], 20)
    assert build_comparison(load(runs)).verdicts[0].result.test == "mcnemar"
    (v,) = build_comparison(load(runs), score="last").verdicts
    assert v.result is None and v.comparable and v.diff == pytest.approx(0.13)
    assert "store for best.pt only" in v.sentence


def test_score_is_one_clean_error_where_it_does_not_apply(ended, tmp_path, capsys):
    code, _, err = cli(capsys, "summary", str(ended), "--score", "last", "--by", "run")
    assert_one_clean_error(code, err, "--score applies to arms")
    published = _published_file(tmp_path, {"alpha.yaml": 60.0})
    code, _, err = cli(capsys, "summary", str(ended), "--score", "last", "--published", str(published))
    assert_one_clean_error(code, err, "--score applies to arms")
    code, _, err = cli(capsys, "plot", str(ended), "--score", "last", "--by", "run", "--out", str(tmp_path / "fig"))
    assert_one_clean_error(code, err, "--score applies to arms")
    assert not (tmp_path / "fig").exists()


def test_the_score_choices_are_the_comparisons():
    import argparse

    from classbench.commands.summary import add_score
    from classbench.compare.comparison import SCORES

    parser = argparse.ArgumentParser()
    add_score(parser)
    assert tuple(next(a for a in parser._actions if a.dest == "score").choices) == SCORES


# ---------------------------------------------------------------- published figures beside the arms
def _published_file(tmp_path: Path, figures: dict[str, float], **source) -> Path:
    """A published-figures file whose configs are synthetic recipes named after their files."""
    folder = tmp_path / "published"
    folder.mkdir(exist_ok=True)
    for name in figures:
        (folder / name).write_text(yaml.safe_dump({"data": {"name": "synthetic"}, "train": {"steps": 10}}))
    entry = {"source": "paper A", "cite": "A et al., Table 1", "budget": "90 epochs", "selection": "last epoch",
             "figures": figures, **source}
    path = folder / "published.yaml"
    path.write_text(yaml.safe_dump([entry], sort_keys=False))
    return path


def test_published_figures_sit_beside_the_arms_that_ran_their_config(tmp_path, capsys):
    runs = tmp_path / "runs"
    scores = [0.50, 0.52, 0.57]
    for seed, top1 in enumerate(scores):
        fake_run(runs, "alpha", seed, top1)
    fake_run(runs, "alpha", 0, 0.40, "train.steps=20", stamp="short")  # another budget: an arm of its own
    fake_run(runs, "gamma", 0, 0.90)  # a run that no figure names
    published = _published_file(tmp_path, {"alpha.yaml": 60.0, "beta.yaml": 45.5})
    code, out, err = cli(capsys, "summary", str(runs), "--published", str(published), "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["config"], r["arm"]) for r in rows] == [("alpha", "alpha train.steps=10"), ("alpha", "alpha train.steps=20"),
                                                     ("beta", None)]  # best arm first
    three, one, missing = rows
    d = stats.describe(scores)
    assert three["n"] == 3 and three["mean"] == pytest.approx(d.mean) and three["ci95"] == pytest.approx(list(d.ci95))
    assert three["difference"] == pytest.approx(d.mean - 0.60) and three["published"] == pytest.approx(0.60)
    assert one["n"] == 1 and one["ci95"] is None and one["difference"] == pytest.approx(0.40 - 0.60)
    assert missing["published"] == pytest.approx(0.455)

    code, out, err = cli(capsys, "summary", str(runs), "--published", str(published), "--format", "markdown")
    assert code == 0, err
    table = {ln.split(" | ")[0].lstrip("| "): ln for ln in out.splitlines() if ln.startswith("| ") and "---" not in ln}
    beta = table["beta"].split(" | ")
    assert beta[2:6] == ["45.50", "no data here", "–", "0"]
    alpha = [ln.split(" | ") for ln in out.splitlines() if ln.startswith("| alpha |")]
    assert alpha[0][3] == f"{100 * d.mean:.2f} ± {100 * d.std:.2f}" and alpha[0][-1].rstrip(" |") == f"{100 * (d.mean - 0.6):+.2f}"
    assert "test of the best-val checkpoint" in alpha[0][6]
    assert "- paper A: A et al., Table 1. 90 epochs; last epoch." in out  # the source's budget and selection, once
    assert "gamma" not in out


def test_a_source_that_scores_the_end_of_training_gets_arms_scored_so(ended, tmp_path, capsys):
    published = _published_file(tmp_path, {"alpha.yaml": 71.0}, score="last")
    code, out, err = cli(capsys, "summary", str(ended), "--published", str(published), "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["mean"] == pytest.approx(sum(LAST_A) / 3) and row["difference"] == pytest.approx(0.72 - 0.71)
    assert row["budget"].endswith("test of the final weights")
    published = _published_file(tmp_path, {"alpha.yaml": 71.0})  # no score: best.pt, as before
    code, out, err = cli(capsys, "summary", str(ended), "--published", str(published), "--format", "json")
    (row,) = json.loads(out)
    assert row["mean"] == pytest.approx(0.61) and row["budget"].endswith("best test step (no val)")


@pytest.mark.parametrize("change, needle", [
    ({"budget": None}, "needs exactly the keys"),
    ({"score": "median"}, "is not one of"),
    ({"extra": 1}, "needs exactly the keys"),
    ({"figures": {"alpha.yaml": 150}}, "is not a top-1 percentage"),
    ({"figures": {"alpha.yaml": "high"}}, "is not a top-1 percentage"),
    ({"figures": {"missing.yaml": 50}}, "missing.yaml"),
    ({"figures": {}}, "figures must map config files"),
])
def test_a_bad_published_file_is_one_clean_error(tmp_path, capsys, change, needle):
    runs = tmp_path / "runs"
    fake_run(runs, "alpha", 0, 0.5)
    published = _published_file(tmp_path, {"alpha.yaml": 60.0})
    entry = yaml.safe_load(published.read_text())[0]
    for key, value in change.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    published.write_text(yaml.safe_dump([entry]))
    code, _, err = cli(capsys, "summary", str(runs), "--published", str(published))
    assert_one_clean_error(code, err, needle)
    code, _, err = cli(capsys, "summary", str(runs), "--published", str(_published_file(tmp_path, {"alpha.yaml": 60.0})),
                       "--format", "csv")
    assert_one_clean_error(code, err, "markdown or json")


def test_the_committed_published_figures_name_configs_that_load():
    figures = load_published(REPO / "configs" / "published.yaml")
    assert {f.dataset for f in figures} == {"cifar10", "cifar100"}
    assert all(0 < f.top1 < 1 for f in figures)
    assert len({(f.source, f.config) for f in figures}) == len(figures)


# ---------------------------------------------------------------- what the train lines log
def test_logged_reads_each_runs_last_train_line_and_summarises_a_layer_family(tmp_path, capsys):
    """A learned temperature per layer is checkable with the tool: the last line's layers, mean ± sample std."""
    runs = tmp_path / "runs"
    learned = fake_run(runs, "alpha", 0, 0.6)
    early = {"temperature_l0": 1.0, "temperature_l1": 1.0, "temperature_l2": 1.0}
    late = {"temperature_l2": 0.95, "temperature_l0": 0.80, "temperature_l1": 0.90}  # not in layer order
    for step, taus in ((50, early), (100, late)):
        append_jsonl(learned / "metrics.jsonl", {"step": step, "split": "train", "loss": 1.0, "lr": 0.1 / step, **taus})
    append_jsonl(learned / "metrics.jsonl", {"step": 150, "split": "train", "loss": 0.9, "lr": 0.0005})  # no taus
    fixed = fake_run(runs, "beta", 0, 0.5)
    append_jsonl(fixed / "metrics.jsonl", {"step": 100, "split": "train", "loss": 1.0, "lr": 0.001})

    code, out, err = cli(capsys, "summary", str(runs), "--logged", "temperature", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)  # beta logs no temperature: no row
    assert row["run"].startswith("synthetic/alpha/") and row["step"] == 100 and row["layers"] == 3
    assert row["values"] == [0.80, 0.90, 0.95]
    assert row["mean"] == pytest.approx(0.88333333) and row["std"] == pytest.approx(0.0763763, rel=1e-5)
    assert (row["min"], row["max"]) == (0.80, 0.95)

    code, out, err = cli(capsys, "summary", str(runs), "--logged", "lr", "--format", "markdown")
    assert code == 0, err
    cells = {ln.split(" | ")[0].lstrip("| ").split("/")[1]: ln.split(" | ") for ln in out.splitlines() if ln.startswith("| synthetic/")}
    assert cells["alpha"][1:4] == ["150", "1", "0.0005"] and cells["beta"][1:5] == ["100", "1", "0.001", "–"]

    code, _, err = cli(capsys, "summary", str(runs), "--logged", "temp")  # a prefix is not a family
    assert_one_clean_error(code, err, "no run logs 'temp'")
    code, _, err = cli(capsys, "summary", str(runs), "--logged", "temperature", "--score", "last")
    assert_one_clean_error(code, err, "--score applies to arms")
    code, _, err = cli(capsys, "summary", str(runs), "--logged", "temperature", "--split", "test")  # even the default
    assert_one_clean_error(code, err, "--split shapes the runs table; --logged prints a table of its own, which it does not change")
    code, _, err = cli(capsys, "summary", str(runs), "--published", "configs/published.yaml", "--by", "run", "--target", "0.9")
    assert_one_clean_error(code, err, "--by, --target shape the runs table; --published prints a table of its own, which they do not")


def test_arms_chosen_on_test_are_not_called_val_chosen(tmp_path, capsys):
    """A recipe without a val split (seed 002's) chooses best.pt on test: every rendering says so."""
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs, "plain", seed, 0.60 + seed / 100, "data.val_size=0", "eval.splits=[test]", selection="test")
        fake_run(runs, "mixed", seed, 0.65 + seed / 100, "data.val_size=0", "eval.splits=[test]", selection="test")
    comp = build_comparison(load(runs))
    assert comp.selections == {"test"} and "test-chosen" in comp.scored_as and "optimistic" in comp.scored_as
    for argv in (["compare", str(runs)], ["compare", str(runs), "--format", "markdown"], ["summary", str(runs)]):
        code, out, err = cli(capsys, *argv)
        assert code == 0, err
        assert "val-chosen" not in out and "chosen on val" not in out and "test-chosen checkpoint" in out, argv
    code, out, _ = cli(capsys, "summary", str(runs), "--by", "arm", "--format", "json")
    assert {tuple(a["selection"]) for a in json.loads(out)} == {("test",)}
    # one arm chosen on val beside them: the words name both selections
    for seed in (0, 1):
        fake_run(runs, "held-out", seed, 0.55 + seed / 100, stamp=f"v{seed}")
    assert build_comparison(load(runs)).selections == {"test", "val"}
    code, out, _ = cli(capsys, "summary", str(runs))
    assert "chosen on val, or on test (optimistic)" in out
