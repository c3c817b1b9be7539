"""`classbench record`: finished runs copied without their weights, atomically, never over a different record."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from classbench import runfolder
from classbench.cli import main
from classbench.errors import ClassbenchError
from classbench.runfolder import RunFolder

FINISHED = ("toy-a", "toy-b", "toy-c")  # support/runs.py: toy-half crashed half way, toy-live is being written


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(run: Path, base: Path) -> Path:
    """A private copy of a shared run, at the same <dataset>/<name>/<stamp> place under ``base``."""
    dst = base / run.parent.parent.name / run.parent.name / run.name
    shutil.copytree(run, dst)
    return dst


def test_records_every_finished_run_without_checkpoints_and_skips_the_rest(runs_dir, tmp_path, capsys):
    dest = tmp_path / "results"
    assert main(["record", str(runs_dir), "--to", str(dest)]) == 0
    out, err = capsys.readouterr()
    records = runfolder.discover(dest)
    assert [r.relative_to(dest).parts[:2] for r in records] == [("synthetic", n) for n in FINISHED]
    assert "toy-half" in err and "toy-live" in err and "not finished" in err
    for record in records:
        source = runs_dir / record.relative_to(dest)
        assert str(source) in out
        kept = _files(record)
        assert not any(name.endswith(".pt") for name in kept) and not RunFolder(record).checkpoints.exists()
        assert RunFolder(source).best_pt.is_file()  # the source had weights: they were left out, not missing
        expected = {k: v for k, v in _files(source).items()
                    if not k.startswith(runfolder.CHECKPOINTS + "/") and not k.startswith(".")}
        assert kept == expected  # everything else, byte for byte
        for f in (runfolder.CONFIG, runfolder.ENV, runfolder.STATUS, runfolder.METRICS, runfolder.SUMMARY,
                  runfolder.TEST_OUTCOMES):
            assert f in kept
    assert any(k.startswith(runfolder.TENSORBOARD + "/") for k in _files(records[0]))  # toy-a logged TensorBoard

    # The records are read by the tool as the runs were: the same table.
    assert main(["summary", str(runs_dir), "--by", "run", "--filter", "toy-[abc]", "--format", "csv"]) == 0
    from_runs = capsys.readouterr().out
    assert main(["summary", str(dest), "--by", "run", "--format", "csv"]) == 0
    assert capsys.readouterr().out == from_runs and len(from_runs.splitlines()) == 1 + len(FINISHED)


def test_filter_records_only_the_matching_runs_of_a_shared_runs_folder(runs_dir, tmp_path, capsys):
    """A runs folder often holds runs that belong in another record: --filter keeps the others out."""
    dest = tmp_path / "results"
    assert main(["record", str(runs_dir), "--filter", "toy-[ac]/", "--to", str(dest)]) == 0
    assert [r.relative_to(dest).parts[1] for r in runfolder.discover(dest)] == ["toy-a", "toy-c"]
    assert "toy-b" not in capsys.readouterr().out

    # a filter that matches nothing records nothing and says what it looked for, in one line
    assert main(["record", str(runs_dir), "--filter", "toy-z", "--to", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "matching --filter 'toy-z'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()
    assert main(["record", str(runs_dir), "--filter", "toy-(", "--to", str(tmp_path / "other")]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err


def test_recording_again_keeps_an_identical_record_and_refuses_a_different_one(runs_dir, tmp_path, capsys):
    dest = tmp_path / "results"
    a, b = runfolder.discover(runs_dir)[:2]
    assert main(["record", str(a), str(b), "--to", str(dest)]) == 0
    before = _files(dest)
    assert main(["record", str(a), str(b), "--to", str(dest)]) == 0
    assert capsys.readouterr().out.count("already recorded") == 2 and _files(dest) == before

    record_b = runfolder.record_path(b, dest)
    RunFolder(record_b).metrics_jsonl.write_text('{"step": 1, "split": "val", "top1": 0.99}\n')  # not this run's
    changed = _files(dest)
    assert main(["record", str(a), str(b), "--to", str(dest)]) == 2
    out, err = capsys.readouterr()
    assert "already holds a different record" in err and str(record_b) in err
    assert "already recorded" in out  # the other run was still handled
    assert _files(dest) == changed  # nothing overwritten


def test_weight_files_links_and_hidden_files_stay_out(runs_dir, tmp_path):
    run = _copy(runfolder.discover(runs_dir)[0], tmp_path / "runs")
    (run / "export.onnx").write_bytes(b"onnx")
    (run / "extra").mkdir()
    (run / "extra" / "swa.pth").write_bytes(b"w")
    (run / "extra" / "notes.txt").write_text("kept")
    (run / ".hidden").write_text("x")
    os.symlink("/etc/hostname", run / "link.txt")
    record, what = runfolder.copy_record(run, tmp_path / "results")
    assert what == runfolder.RECORD_COPIED
    kept = _files(record)
    assert "extra/notes.txt" in kept
    assert not {"export.onnx", "extra/swa.pth", ".hidden", "link.txt", runfolder.LOCK} & set(kept)


def test_a_failed_copy_leaves_no_record_and_no_temporary_folder(runs_dir, tmp_path, monkeypatch):
    run = runfolder.discover(runs_dir)[0]
    dest = tmp_path / "results"
    real_copy = shutil.copy2
    calls = []

    def failing_copy(src, dst, **kw):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, **kw)

    monkeypatch.setattr(shutil, "copy2", failing_copy)
    with pytest.raises(ClassbenchError, match="No space left on device.*Nothing was written"):
        runfolder.copy_record(run, dest)
    parent = runfolder.record_path(run, dest).parent
    assert list(parent.iterdir()) == []  # neither the record nor its hidden temporary folder

    def interrupted_copy(src, dst, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copy2", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        runfolder.copy_record(run, dest)
    assert list(parent.iterdir()) == []
    monkeypatch.setattr(shutil, "copy2", real_copy)
    record, what = runfolder.copy_record(run, dest)
    assert what == runfolder.RECORD_COPIED and [p.name for p in parent.iterdir()] == [record.name]


def test_the_copy_happens_in_a_hidden_folder_that_readers_skip(runs_dir, tmp_path, monkeypatch):
    """Mid-copy, the record's place is empty and the partial copy is invisible to discover()."""
    run = runfolder.discover(runs_dir)[0]
    dest = tmp_path / "results"
    record = runfolder.record_path(run, dest)
    real_copy, seen = shutil.copy2, []

    def watching_copy(src, dst, **kw):
        seen.append((Path(dst).relative_to(record.parent).parts[0], record.exists(), runfolder.discover(dest)))
        return real_copy(src, dst, **kw)

    monkeypatch.setattr(shutil, "copy2", watching_copy)
    runfolder.copy_record(run, dest)
    assert seen and all(tmp.startswith(".") and not exists and found == [] for tmp, exists, found in seen)
    assert runfolder.discover(dest) == [record]


def test_unfinished_runs_alone_record_nothing(runs_dir, tmp_path, capsys):
    half = runs_dir / "synthetic" / "toy-half"
    assert main(["record", str(half), "--to", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "not finished (running)" in err and "nothing was recorded" in err
    assert not (tmp_path / "results").exists()
    with pytest.raises(ClassbenchError, match="has not finished"):
        runfolder.copy_record(next(half.iterdir()), tmp_path / "results")
    assert main(["record", str(tmp_path / "nowhere"), "--to", str(tmp_path / "results")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b"])
def test_a_crafted_name_cannot_place_a_record_elsewhere(runs_dir, tmp_path, name, capsys):
    run = _copy(runfolder.discover(runs_dir)[0], tmp_path / "runs")
    cfg = yaml.safe_load(RunFolder(run).config_yaml.read_text())
    cfg["name"] = name
    RunFolder(run).config_yaml.write_text(yaml.safe_dump(cfg))
    assert main(["record", str(run), "--to", str(tmp_path / "results")]) == 2
    assert "cannot be a folder name" in capsys.readouterr().err
    assert not any(p.is_file() for p in tmp_path.rglob("*") if "runs" not in p.parts)


def test_a_destination_that_cannot_hold_records_is_one_line_per_run(runs_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["record", str(runfolder.discover(runs_dir)[0]), "--to", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot create the record") and "Not a directory" in err and "Traceback" not in err


def _legacy_predictions(run: Path, *, with_labels: bool):
    """Replace ``run``'s test outcomes by an older test_predictions.npz that named a class per image: ``pred``
    and ``target`` (before 2026-12-03), or ``pred`` and the labels' digest (2026-12-03), with a confidence per
    image.  Returns (pred, labels, confidence)."""
    import numpy as np

    from classbench.data import run_test_labels

    stored = runfolder.read_test_outcomes(run)
    labels = run_test_labels(run)
    n = len(stored["confusion"])
    pred = np.where(stored["correct"], labels, (labels + 1) % n)  # predictions that fit `correct`
    confidence = np.random.default_rng(0).uniform(1 / n, 1, labels.size).astype(np.float32)
    arrays = {"pred": pred, "confidence": confidence}
    if with_labels:
        arrays["target"] = labels
    else:
        arrays.update(correct=stored["correct"], labels_sha256=np.array(stored["labels_sha256"]))
    np.savez_compressed(RunFolder(run).legacy_test_predictions, **arrays)
    RunFolder(run).test_outcomes.unlink()
    return pred, labels, confidence


def _recorded_outcomes(record: Path) -> dict:
    """The record's test outcomes file as JSON; the record holds no .npz."""
    assert not RunFolder(record).legacy_test_predictions.exists()
    return json.loads(RunFolder(record).test_outcomes.read_text())


@pytest.mark.parametrize("with_labels", [True, False], ids=["labels-stored", "digest-only"])
def test_an_older_run_s_predicted_classes_are_not_recorded(runs_dir, tmp_path, capsys, with_labels):
    """Older files named a class per image, which gives away the label of every image the model got right.
    Their record is a test_outcomes.json: whether each was right, the calibration bins of the confidences, the
    digest and the confusion matrix (from the stored labels, or the dataset's when they match the digest);
    recording again finds it identical."""
    run = _copy(runfolder.discover(runs_dir)[0], tmp_path / "runs")
    pred, labels, confidence = _legacy_predictions(run, with_labels=with_labels)
    dest = tmp_path / "results"
    assert main(["record", str(tmp_path / "runs"), "--to", str(dest)]) == 0
    (record,) = runfolder.discover(dest)
    doc = _recorded_outcomes(record)
    assert sorted(doc) == ["calibration", "confusion", "correct_bits", "format", "images", "labels_sha256"]
    got = runfolder.read_test_outcomes(record)
    assert got["correct"].tolist() == (pred == labels).tolist()
    assert got["confusion"].tolist() == runfolder.confusion_matrix(pred, labels, len(got["confusion"]))[0].tolist()
    assert got["labels_sha256"] == runfolder.labels_digest(labels)
    want = runfolder.calibration_bins(confidence, pred == labels)
    assert {k: v.tolist() for k, v in got["calibration"].items()} == {k: v.tolist() for k, v in want.items()}
    capsys.readouterr()
    assert main(["record", str(tmp_path / "runs"), "--to", str(dest)]) == 0
    assert f"already recorded: {record} (identical)" in capsys.readouterr().out
    assert runfolder.discover(dest) == [record]


def test_an_older_run_recorded_without_its_dataset_keeps_no_class_per_image(runs_dir, tmp_path, capsys):
    """Without the dataset's labels the confusion matrix cannot be made: the record keeps the rest, says so,
    and the report's per-class section says why it has no counts."""
    run = _copy(runfolder.discover(runs_dir)[0], tmp_path / "runs")
    _legacy_predictions(run, with_labels=False)
    record, what = runfolder.copy_record(run, tmp_path / "results", labels=lambda _run: None)
    assert what == runfolder.RECORD_COPIED
    assert sorted(_recorded_outcomes(record)) == ["calibration", "correct_bits", "format", "images", "labels_sha256"]
    from classbench.compare.report import stored_class_eval
    from classbench.compare.runs import load_runs

    (loaded,) = load_runs(record)
    with pytest.raises(ClassbenchError, match="holds no confusion matrix"):
        stored_class_eval(loaded, runfolder.read_test_outcomes(record))
    assert "pred" in runfolder.read_test_outcomes(run)  # the run folder itself is left as it was


def test_an_older_run_with_a_damaged_file_is_not_recorded(runs_dir, tmp_path, capsys):
    run = _copy(runfolder.discover(runs_dir)[0], tmp_path / "runs")
    _legacy_predictions(run, with_labels=True)
    RunFolder(run).legacy_test_predictions.write_bytes(b"PK\x03\x04 cut short")
    assert main(["record", str(run), "--to", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not runfolder.discover(tmp_path / "results")  # nothing half-made was left


def test_predictions_outside_the_dataset_s_classes_are_counted_apart(tmp_path):
    """A head with more outputs than the dataset has classes (seed 002's ResNets keep 1000) can predict a class
    the dataset lacks: it is wrong, counted per true class beside the matrix, and the file still adds up."""
    import numpy as np

    from classbench.compare.report import class_eval

    target = np.array([0, 1, 2, 2, 1, 0])
    pred = np.array([0, 999, 2, 1, 1, 7])
    path = runfolder.write_test_outcomes(tmp_path, pred, target, np.full(6, 0.5), 3)
    stored = runfolder.read_test_outcomes(tmp_path)
    assert stored["confusion"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert stored["confusion_other"].tolist() == [1, 1, 0] and stored["correct"].sum() == 3
    ev = class_eval(None, stored["confusion"], stored["confusion_other"], 3, classes=None, source=path)
    assert ev.count == 6 and ev.top1 == 0.5 and ev.per_class.tolist() == [0.5, 0.5, 0.5]
    assert "2 prediction(s) name a class outside the dataset's 3" in ev.notes[0]
    doc = json.loads(path.read_text())
    del doc["confusion_other"]  # the other count dropped: the file no longer adds up
    path.write_text(json.dumps(doc))
    with pytest.raises(ClassbenchError, match="does not count its 6 outcomes"):
        runfolder.read_test_outcomes(tmp_path)


def test_test_outcomes_round_trip_and_name_no_class_per_image(tmp_path):
    """13 images: the packed bits end mid-byte.  What is read back is what was written, and the file holds no
    value per image but the packed right/wrong bits."""
    import numpy as np

    rng = np.random.default_rng(1)
    target, pred = rng.integers(0, 4, 13), rng.integers(0, 4, 13)
    confidence = rng.uniform(0, 1, 13)
    path = runfolder.write_test_outcomes(tmp_path, pred, target, confidence, 4)
    got = runfolder.read_test_outcomes(tmp_path)
    assert got["correct"].tolist() == (pred == target).tolist() and got["labels_sha256"] == runfolder.labels_digest(target)
    assert got["confusion"].tolist() == runfolder.confusion_matrix(pred, target, 4)[0].tolist()
    assert got["calibration"]["confidence_sum"].tolist() == runfolder.calibration_bins(confidence, pred == target)[
        "confidence_sum"].tolist()  # exact: JSON keeps every bit of a float
    assert not [k for k, v in json.loads(path.read_text()).items() if isinstance(v, list) and len(v) == 13]
    assert runfolder.write_test_outcomes(tmp_path, pred, target, None, 4) and "calibration" not in runfolder.read_test_outcomes(tmp_path)


@pytest.mark.parametrize("damage, says", [
    (lambda d: d.update(format="something else"), "its format is not"),
    (lambda d: d.update(correct_bits="AAAA"), "holds 3 bytes for 13 images"),
    (lambda d: d.update(correct_bits="not base64!"), "is not base64"),
    (lambda d: d.update(images="13"), "lacks 'images'"),
    (lambda d: d.update(confusion=[[1, 2], [3]]), "is not a square matrix"),
    (lambda d: d["confusion"][0].__setitem__(0, d["confusion"][0][0] + 1), "does not count its 13 outcomes"),
    (lambda d: d["calibration"]["count"].__setitem__(0, d["calibration"]["count"][0] + 1), "calibration bins do not count"),
    (lambda d: d["calibration"].update(correct=[100] * 15), "'calibration' is not"),
    (lambda d: d.pop("labels_sha256"), "lacks 'images'"),
], ids=["format", "bits-length", "bits-base64", "images-type", "ragged", "confusion-sum", "calibration-sum",
        "calibration-correct", "digest"])
def test_a_damaged_test_outcomes_file_is_one_line(tmp_path, damage, says):
    import numpy as np

    rng = np.random.default_rng(2)
    target, pred = rng.integers(0, 4, 13), rng.integers(0, 4, 13)
    path = runfolder.write_test_outcomes(tmp_path, pred, target, rng.uniform(0, 1, 13), 4)
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ClassbenchError, match=says) as e:
        runfolder.read_test_outcomes(tmp_path)
    assert "\n" not in str(e.value) and "delete it" in str(e.value)
    path.write_text("{not json")
    with pytest.raises(ClassbenchError, match="not JSON"):
        runfolder.read_test_outcomes(tmp_path)
