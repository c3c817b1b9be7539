"""The report's per-arm analysis from the test predictions a run stores, so that committed records
(`classbench record`: no checkpoints) get their per-class accuracy, confusion matrix and calibration.

Two tiny runs on synthetic data, one arm each: `plain`, and `flip` scored with eval.tta=true.  Every expected
number is computed here by plain loops (not through classbench's counting) from best.pt's predictions, the
true labels and the confidences of best.pt evaluated again, then compared with what the report shows for the records and for
the original run folders.  The stored file names no class per image (a record is published): it holds the
confusion matrix and calibration bins, so a record's per-class counts and ECE need no dataset.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from classbench.cli import main
from classbench.runfolder import (
    TEST_PREDICTIONS_LEGACY,
    RunFolder,
    calibration_bins,
    discover,
    labels_digest,
    read_test_outcomes,
    write_test_outcomes,
)
from support.configs import tiny_config

# Every test here renders a report (PNG figures, 1-6 s each on 2 quiet cores, 2026-12-02), so the module is
# slow; the quick loop keeps the report's cheaper checks (tests/test_analysis.py, tests/test_evaluation.py).
pytestmark = pytest.mark.slow

ARMS = {"plain": [], "flip": ["eval.tta=true", "data.normalize=true"]}
BINS = 15


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    from classbench.train.trainer import train

    runs = tmp_path_factory.mktemp("records") / "runs"
    for name, extra in ARMS.items():
        train(tiny_config(runs, f"name={name}", "train.steps=6", "train.epochs=0", "eval.every=3", *extra))
    return runs


@pytest.fixture(scope="module")
def records(runs, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("records") / "results"
    assert main(["record", str(runs), "--to", str(dest)]) == 0
    assert not list(dest.rglob("*.pt")) and all(not RunFolder(r).checkpoints.exists() for r in discover(dest))
    return dest


def _report(runs_dir: Path, out: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["report", str(runs_dir), "-o", str(out), "--device", "cpu"]) == 0
    return out.read_text()


@pytest.fixture(scope="module")
def reports(runs, records, tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reports")
    return {"runs": _report(runs, out / "runs.html"), "records": _report(records, out / "records.html")}


def _run(root: Path, name: str) -> Path:
    (path,) = [p for p in discover(root) if p.parent.name == name]
    return path


# ---------------------------------------------------------------- independent computations
def _labels(run_dir: Path) -> np.ndarray:
    """The run's test labels, from the data the run's config builds (the stored file holds only their digest)."""
    from classbench.config import load_run_config
    from classbench.data import build_data

    return build_data(load_run_config(run_dir, check=False).data).splits["test"].labels.numpy()


def _best_pt(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """best.pt's predicted classes and their probabilities, evaluated now as the trainer did (the stored file
    names no class and keeps no confidence per image)."""
    from classbench.inference.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(run_dir, device="cpu", with_predictions=True)
    return m["pred"].numpy(), m["confidence"].numpy()


def _best_pt_pred(run_dir: Path) -> np.ndarray:
    return _best_pt(run_dir)[0]


def _expected(pred: np.ndarray, confidence: np.ndarray | None, target: np.ndarray) -> dict:
    """Confusion matrix, per-class accuracy and ECE from predictions, their confidences and the true labels, by
    the definitions."""
    n_cls = 4  # data.num_classes of the tiny config
    cm = [[0] * n_cls for _ in range(n_cls)]
    for t, p in zip(target.tolist(), pred.tolist()):
        cm[t][p] += 1
    per_class = [f"{100 * cm[i][i] / sum(cm[i]):.1f}%" if sum(cm[i]) else "–" for i in range(n_cls)]
    ece = None
    if confidence is not None:
        conf, ok = confidence.astype(float).tolist(), (pred == target).tolist()
        ece = 0.0
        for b in range(BINS):  # bins (b/15, (b+1)/15], the first also holding 0
            members = [i for i, c in enumerate(conf) if b / BINS < c <= (b + 1) / BINS or (b == 0 and c == 0)]
            if members:
                gap = sum(ok[i] for i in members) / len(members) - sum(conf[i] for i in members) / len(members)
                ece += len(members) / len(conf) * abs(gap)
    return {"confusion": cm, "per_class": per_class, "ece": ece}


def _shown(html: str, arm: str) -> dict:
    """What the report shows for one arm: class names, per-class accuracy, confusion matrix, ECE, notes."""
    start = html.index(f"<div class='arm-analysis' data-arm='{arm}'>")
    ends = [i for i in (html.find("<div class='arm-analysis'", start + 1), html.find("</section>", start)) if i > 0]
    block = html[start:min(ends)]
    rows = re.findall(r"<tr><td>([^<]*)</td><td class='num'>([^<]*)</td>", block)
    cm_table = re.search(r"<table class='cm'.*?<tbody>(.*?)</tbody>", block).group(1)
    cm = [[int(v) for v in re.findall(r">(\d+)</td>", row)] for row in re.findall(r"<tr><th>[^<]*</th>(.*?)</tr>", cm_table)]
    ece = re.search(r"<strong class='ece'>([\d.]+) %</strong>", block)
    return {"classes": [r[0] for r in rows], "per_class": [r[1] for r in rows], "confusion": cm,
            "ece": None if ece is None else ece.group(1), "block": block}


# ---------------------------------------------------------------- the stored predictions are the trainer's evaluation
@pytest.mark.parametrize("arm", list(ARMS))
def test_stored_predictions_are_what_summary_and_best_pt_say(runs, arm):
    """summary.json's test_top1 counts exactly the stored predictions, and evaluating best.pt again (as the
    fallback does) gives the same predictions and calibration bins; with eval.tta=true too."""
    from classbench.inference.evaluate import evaluate_checkpoint

    run_dir = _run(runs, arm)
    summary = json.loads(RunFolder(run_dir).summary_json.read_text())
    stored = read_test_outcomes(run_dir)
    assert float(stored["correct"].mean()) == summary["test_top1"]
    m = evaluate_checkpoint(run_dir, device="cpu", with_predictions=True)
    assert m["top1"] == summary["test_top1"]
    assert stored["confusion"].tolist() == _expected(m["pred"].numpy(), None, m["target"].numpy())["confusion"]
    assert (m["pred"] == m["target"]).numpy().tolist() == stored["correct"].tolist()
    assert stored["labels_sha256"] == labels_digest(m["target"]) == labels_digest(_labels(run_dir))
    bins, ok = stored["calibration"], stored["correct"]
    again = calibration_bins(m["confidence"].numpy(), ok)
    assert bins["count"].tolist() == again["count"].tolist() and bins["correct"].tolist() == again["correct"].tolist()
    np.testing.assert_allclose(bins["confidence_sum"], again["confidence_sum"], rtol=1e-6)
    if arm == "flip":  # TTA changes the predictions of this model, so the check above is about TTA's
        plain = evaluate_checkpoint(run_dir, device="cpu", with_predictions=True, tta=False)
        assert not np.allclose(calibration_bins(plain["confidence"].numpy(), ok)["confidence_sum"], bins["confidence_sum"])


# ---------------------------------------------------------------- records: the analysis without checkpoints
@pytest.mark.parametrize("arm", list(ARMS))
def test_a_record_s_report_shows_its_stored_predictions_and_agrees_with_the_run_s(runs, records, reports, arm):
    want = _expected(*_best_pt(_run(runs, arm)), _labels(_run(records, arm)))
    rec, orig = _shown(reports["records"], arm), _shown(reports["runs"], arm)
    assert rec["confusion"] == want["confusion"] and rec["per_class"] == want["per_class"]
    assert rec["ece"] == f"{100 * want['ece']:.2f}"
    assert (orig["confusion"], orig["per_class"], orig["ece"]) == (rec["confusion"], rec["per_class"], rec["ece"])
    # Where they come from, said on the page; the class names travel in summary.json, so a record has them.
    for shown in (rec, orig):
        assert "as the trainer scored it when the run finished" in shown["block"]
    assert rec["classes"] == orig["classes"] == [f"class_{i}" for i in range(4)]
    assert "Classes are numbered" not in rec["block"]
    assert "No finished run has" not in reports["records"]


def test_the_analysis_objects_hold_the_stored_numbers_exactly(runs, records):
    from classbench.compare.comparison import build_comparison
    from classbench.compare.report import evaluate_arm
    from classbench.compare.runs import load_runs

    comp = build_comparison(load_runs(records, warn=False))
    assert sorted(a.label for a in comp.arms) == sorted(ARMS)
    for arm in comp.arms:
        ae = evaluate_arm(arm)
        path = arm.representative.path
        want = _expected(*_best_pt(_run(runs, arm.label)), _labels(path))
        assert ae.classes.stored and ae.classes.confusion.tolist() == want["confusion"]
        assert ae.classes.top1 == arm.representative.summary["test_top1"]
        assert ae.calibration.ece == pytest.approx(want["ece"], abs=1e-6)  # confidences evaluated again: float noise


def test_a_tta_arm_shows_the_plain_figure_only_with_its_checkpoint(runs, reports):
    from classbench.inference.evaluate import evaluate_checkpoint

    run_dir = _run(runs, "flip")
    tta = json.loads(RunFolder(run_dir).summary_json.read_text())["test_top1"]
    plain = evaluate_checkpoint(run_dir, device="cpu", tta=False)["top1"]
    orig, rec = _shown(reports["runs"], "flip")["block"], _shown(reports["records"], "flip")["block"]
    assert f"<strong>{100 * tta:.2f}%</strong> with TTA" in orig and f"<strong>{100 * tta:.2f}%</strong> with TTA" in rec
    assert f"<strong>{100 * plain:.2f}%</strong> plain (no TTA)" in orig
    assert "plain (no TTA)" not in rec
    assert "The plain (no-TTA) test top-1 needs checkpoints/best.pt, which this record does not hold" in rec
    assert "plain (no TTA)" not in _shown(reports["runs"], "plain")["block"]  # only a TTA run has two figures


# ---------------------------------------------------------------- older runs and incomplete records
def test_an_old_run_without_stored_predictions_falls_back_to_its_best_pt(runs, tmp_path):
    src = _run(runs, "plain")
    want = _expected(*_best_pt(src), _labels(src))
    old = tmp_path / "old" / src.relative_to(runs)
    shutil.copytree(src, old)
    RunFolder(old).test_outcomes.unlink()
    shown = _shown(_report(tmp_path / "old", tmp_path / "r.html"), "plain")
    assert "evaluated now" in shown["block"] and "as the trainer scored it" not in shown["block"]
    assert shown["confusion"] == want["confusion"] and shown["per_class"] == want["per_class"]
    assert shown["ece"] == f"{100 * want['ece']:.2f}"
    assert shown["classes"] == [f"class_{i}" for i in range(4)]


def test_a_record_with_neither_predictions_nor_checkpoint_says_so(records, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(records, bare)
    RunFolder(_run(bare, "flip")).test_outcomes.unlink()
    html = _report(bare, tmp_path / "one.html")
    assert ("No per-class analysis of arm flip: its median seed <code>synthetic/flip/"
            in html and "has neither readable stored test outcomes (test_outcomes.json) nor a checkpoints/best.pt" in html)
    assert "data-arm='plain'>" in html and "<div class='arm-analysis' data-arm='flip'>" not in html

    RunFolder(_run(bare, "plain")).test_outcomes.unlink()
    html = _report(bare, tmp_path / "none.html")
    assert ("No finished run has stored test outcomes (test_outcomes.json) or a checkpoints/best.pt, "
            "so there is no per-class analysis") in html
    assert "class='arm-analysis'" not in html and "Could not" not in html


def test_stored_predictions_without_confidences_give_no_calibration_and_say_why(runs, records, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(records, rec)
    run_dir = _run(rec, "plain")
    pred, target = _best_pt_pred(_run(runs, "plain")), _labels(run_dir)
    write_test_outcomes(run_dir, pred, target, None, 4)  # as a writer without confidences would
    shown = _shown(_report(rec, tmp_path / "r.html"), "plain")
    assert shown["confusion"] == _expected(pred, None, target)["confusion"] and shown["ece"] is None
    assert "Calibration cannot be computed from this record: its test_outcomes.json holds no calibration bins" in shown["block"]


def test_stored_predictions_of_another_dataset_are_refused_plainly(runs, records, tmp_path):
    rec = tmp_path / "rec"
    shutil.copytree(records, rec)
    run_dir = _run(rec, "plain")
    pred, confidence = _best_pt(_run(runs, "plain"))
    pred[0] = 9  # a class this 4-class run does not have: a 10-class matrix
    write_test_outcomes(run_dir, pred, _labels(run_dir), confidence, 10)
    html = _report(rec, tmp_path / "r.html")
    assert "Could not read the stored test outcomes of <code>synthetic/plain/" in html
    assert "counts 10 classes, but the run has 4; it does not belong to this run" in html
    assert "<div class='arm-analysis' data-arm='flip'>" in html  # the other arm is still analysed


def test_stored_predictions_name_no_class_per_image(records):
    """A record is published, and the true labels are the dataset's: a predicted class per image would give the
    label of every image the model got right, so the file keeps the labels' digest, the confusion matrix, the
    calibration bins and whether each image was right, packed."""
    for arm in ARMS:
        folder = RunFolder(_run(records, arm))
        doc = json.loads(folder.test_outcomes.read_text())
        assert sorted(doc) == ["calibration", "confusion", "correct_bits", "format", "images", "labels_sha256"]
        assert not folder.legacy_test_predictions.exists()
        assert isinstance(doc["correct_bits"], str) and np.asarray(doc["confusion"]).shape == (4, 4)
        assert [len(v) for v in doc["calibration"].values()] == [BINS] * 3


def _without_dataset(monkeypatch):
    import classbench.data
    from classbench.errors import DataError

    def gone(cfg):
        raise DataError("the dataset is gone")

    monkeypatch.setattr(classbench.data, "load_raw", gone)


def test_a_record_s_per_class_counts_need_no_dataset(runs, records, tmp_path, monkeypatch):
    want = {arm: _shown(_report(records, tmp_path / "here.html"), arm) for arm in ARMS}
    _without_dataset(monkeypatch)
    html = _report(records, tmp_path / "gone.html")
    assert "Could not" not in html
    for arm in ARMS:
        shown = _shown(html, arm)
        assert (shown["confusion"], shown["per_class"], shown["ece"]) == (want[arm]["confusion"], want[arm]["per_class"],
                                                                          want[arm]["ece"])


def _older_file(runs: Path, records: Path, tmp_path: Path, *, with_labels: bool) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of the records whose plain run keeps its predictions in an older format that named a class per
    image, in test_predictions.npz: ``pred`` and ``target`` (before 2026-12-03), or ``pred`` and the labels'
    digest (2026-12-03), each with a confidence per image."""
    rec = tmp_path / "rec"
    shutil.copytree(records, rec)
    run_dir = _run(rec, "plain")
    stored, (pred, confidence), target = read_test_outcomes(run_dir), _best_pt(_run(runs, "plain")), _labels(run_dir)
    arrays = {"pred": pred, "confidence": confidence}
    arrays.update({"target": target} if with_labels else
                  {"correct": stored["correct"], "labels_sha256": np.array(stored["labels_sha256"])})
    np.savez_compressed(RunFolder(run_dir).legacy_test_predictions, **arrays)
    RunFolder(run_dir).test_outcomes.unlink()
    old = read_test_outcomes(run_dir)
    assert old["correct"].tolist() == stored["correct"].tolist() and old["labels_sha256"] == stored["labels_sha256"]
    assert "confusion" not in old and set(TEST_PREDICTIONS_LEGACY) & set(old)
    return rec, pred, target


def test_an_old_file_with_labels_is_read_without_the_dataset(runs, records, tmp_path, monkeypatch):
    """Files written before 2026-12-03 held the labels ("target"): the analysis counts those, and needs no data."""
    rec, pred, target = _older_file(runs, records, tmp_path, with_labels=True)
    _without_dataset(monkeypatch)
    shown = _shown(_report(rec, tmp_path / "r.html"), "plain")
    assert shown["confusion"] == _expected(pred, None, target)["confusion"]


def test_an_old_file_with_predicted_classes_is_counted_from_the_dataset(runs, records, tmp_path, monkeypatch):
    """Files of 2026-12-03 held ``pred`` and the labels' digest: the labels come from the dataset, checked."""
    rec, pred, target = _older_file(runs, records, tmp_path, with_labels=False)
    shown = _shown(_report(rec, tmp_path / "r.html"), "plain")
    assert shown["confusion"] == _expected(pred, None, target)["confusion"]
    _without_dataset(monkeypatch)
    html = _report(rec, tmp_path / "gone.html")
    assert "Could not read the stored test outcomes of <code>synthetic/plain" in html
    assert html.count("DataError: the dataset is gone") == 1  # the flip arm's file holds its confusion matrix


def test_an_old_file_is_refused_against_other_labels_and_best_pt_needs_the_dataset(runs, records, tmp_path,
                                                                                  monkeypatch):
    # Other labels than the run was scored on (here: a smaller test subset named in its config) are refused.
    rec, _, _ = _older_file(runs, records, tmp_path, with_labels=False)
    cfg_path = RunFolder(_run(rec, "plain")).config_yaml
    cfg = yaml.safe_load(cfg_path.read_text())
    stored_n = read_test_outcomes(cfg_path.parent)["correct"].size
    cfg["data"]["test_size"] = stored_n // 2
    cfg_path.write_text(yaml.safe_dump(cfg))
    html = _report(rec, tmp_path / "other.html")
    assert "Could not read the stored test outcomes of <code>synthetic/plain/" in html
    assert "the test labels of synthetic here are not those synthetic/plain/" in html
    assert f"({stored_n // 2} images here, {stored_n} stored; the digests differ)" in html
    assert "<div class='arm-analysis' data-arm='flip'>" in html  # the other arm is still analysed

    _without_dataset(monkeypatch)
    src = _run(runs, "plain")
    old = tmp_path / "old" / src.relative_to(runs)
    shutil.copytree(src, old)
    RunFolder(old).test_outcomes.unlink()  # a run from before predictions were stored: best.pt must be evaluated
    html = _report(tmp_path / "old", tmp_path / "old.html")
    assert "Could not evaluate <code>synthetic/plain/" in html and "DataError: the dataset is gone" in html


def test_an_older_record_without_class_names_numbers_its_classes(records, tmp_path):
    """Records made before summary.json carried the class names (results/demo): classes are numbered, and the
    page says where the names would have been."""
    old = tmp_path / "old"
    shutil.copytree(records, old)
    for run_dir in discover(old):
        path = RunFolder(run_dir).summary_json
        summary = json.loads(path.read_text())
        del summary["classes"]
        path.write_text(json.dumps(summary))
    shown = _shown(_report(old, tmp_path / "old.html"), "plain")
    assert shown["classes"] == ["0", "1", "2", "3"] and "Classes are numbered" in shown["block"]
