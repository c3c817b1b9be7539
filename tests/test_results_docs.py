"""The published numbers: results/ holds loadable records, and every generated block in docs/ is what its
command prints now from them (`make docs-results`); plus the block machinery itself."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from classbench import runfolder
from classbench.drivers import docs_results
from classbench.drivers.docs_results import find_blocks, rebuild
from classbench.errors import ClassbenchError
from conftest import REPO

RESULTS = REPO / "results"
MAX_RESULTS_BYTES = 20_000_000


# ---------------------------------------------------------------- the committed records and docs
def _runs_read(block) -> str | None:
    """The runs folder a block's command reads, as the command line parses it (None: it reads no runs)."""
    from classbench.cli import build_parser

    return getattr(build_parser().parse_args(shlex.split(block.command)[1:]), "runs_dir", None)


def test_the_records_in_results_load_as_finished_runs_without_weights():
    from classbench.compare.runs import load_runs

    records = runfolder.discover(RESULTS)
    assert records, "results/ holds no run record"
    runs = load_runs(RESULTS)
    assert [r.path for r in runs] == records
    for run in runs:
        assert run.status == runfolder.FINISHED and not run.warnings, (run.rel, run.warnings)
        assert run.summary and run.metrics and run.config, run.rel
        assert runfolder.test_outcomes_path(run.path) == run.folder.test_outcomes, f"{run.rel}: no {runfolder.TEST_OUTCOMES}"
        outcomes = runfolder.read_test_outcomes(run.path)
        assert outcomes is not None and outcomes["correct"].size > 0, run.rel
        doc = json.loads(run.folder.test_outcomes.read_text())  # no part of the dataset is published
        per_image = [k for k, v in doc.items() if isinstance(v, list) and len(v) == outcomes["correct"].size]
        assert not per_image and not set(doc) & set(runfolder.TEST_PREDICTIONS_LEGACY), \
            f"{run.rel}: its {runfolder.TEST_OUTCOMES} holds a value per image ({per_image}), which could give labels away"
        assert float(outcomes["correct"].mean()) == run.summary["test_top1"], run.rel
        confusion = outcomes["confusion"]  # the report's per-class counts, without the dataset
        assert confusion.shape == (run.summary["num_classes"],) * 2, run.rel
        assert outcomes["calibration"]["count"].size == runfolder.CALIBRATION_BINS, run.rel  # the report's ECE
        assert runfolder.record_files(run.path) == sorted(p.relative_to(run.path) for p in run.path.rglob("*")
                                                          if p.is_file()), f"{run.rel} holds more than a record"
    size = sum(p.stat().st_size for p in RESULTS.rglob("*") if p.is_file())
    assert size < MAX_RESULTS_BYTES, f"results/ is {size / 1e6:.1f} MB"
    assert not [p for p in RESULTS.rglob("*") if p.name.lower().endswith(runfolder.WEIGHT_SUFFIXES)]


#: What a published record may hold: text (config, env, status, metrics, summary, test outcomes) and the README.
#: Arrays (.npz, .npy), pickles and images are what datasets are made of: never in the repo.
RECORD_SUFFIXES = (".json", ".jsonl", ".yaml", ".md")


def test_results_hold_only_text_records_and_no_dataset_like_files():
    files = [p for p in RESULTS.rglob("*") if p.is_file()]
    assert files
    odd = [str(p.relative_to(REPO)) for p in files if p.suffix.lower() not in RECORD_SUFFIXES]
    assert not odd, f"results/ holds files that are not text records: {odd[:5]}"


def test_every_generated_block_in_the_docs_equals_what_its_command_prints_now():
    files = docs_results.default_files(REPO)
    blocks = [b for f in files for b in find_blocks(f)]
    assert any(not b.writes_files for b in blocks), "no generated table in docs/"
    for block in blocks:  # published tables come from the committed records
        runs = _runs_read(block)
        assert runs is None or (Path(runs).parts[0] == "results" and (REPO / runs).is_dir()), f"{block.where}: {runs}"
    log: list[str] = []
    stale = rebuild(files, REPO, check=True, log=log.append)
    assert not stale, "\n".join(log) + "\nrun `make docs-results`"


def test_every_record_in_results_is_read_by_some_generated_block():
    blocks = [b for f in docs_results.default_files(REPO) for b in find_blocks(f)]
    read = [REPO / runs for runs in map(_runs_read, blocks) if runs is not None]
    unread = [r for r in runfolder.discover(RESULTS) if not any(r.is_relative_to(p) for p in read)]
    assert not unread, f"records that no document publishes: {unread}"


# ---------------------------------------------------------------- the machinery
@pytest.fixture
def records(runs_dir, tmp_path) -> Path:
    from classbench.cli import main

    assert main(["record", str(runs_dir), "--to", str(tmp_path / "results" / "toys")]) == 0
    return tmp_path / "results" / "toys"


def _doc(tmp_path: Path, *blocks: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text("# Title\n\nProse before.\n\n" + "\n\nProse between.\n\n".join(blocks) + "\n\nProse after.\n")
    return path


def _printed(argv: list[str], capsys) -> str:
    from classbench.cli import main

    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_rebuild_fills_stale_blocks_check_names_them_and_prose_is_kept(records, tmp_path, capsys):
    compare = "classbench compare results/toys --format markdown"
    summary = "classbench summary results/toys --by run --format markdown"
    doc = _doc(tmp_path, f"<!-- generated: {compare} -->\nold table\n<!-- end generated -->",
               f"<!-- generated: {summary} -->\n<!-- end generated -->")
    log: list[str] = []
    stale = rebuild([doc], tmp_path, check=True, log=log.append)
    assert [(b.line, b.command) for b in stale] == [(5, compare), (11, summary)]
    assert f"{doc}:5: out of date: {compare}" in log[0] and "-old table" in log[0]
    assert "old table" in doc.read_text()  # --check changes nothing

    assert len(rebuild([doc], tmp_path, log=log.append)) == 2
    text = doc.read_text()
    want_compare = _printed(["compare", str(records), "--format", "markdown"], capsys)
    want_summary = _printed(["summary", str(records), "--by", "run", "--format", "markdown"], capsys)
    assert f"<!-- generated: {compare} -->\n\n{want_compare.strip()}\n\n<!-- end generated -->" in text
    assert f"<!-- generated: {summary} -->\n\n{want_summary.strip()}\n\n<!-- end generated -->" in text
    assert text.startswith("# Title\n\nProse before.\n\n") and "\n\nProse between.\n\n" in text
    assert text.endswith("\n\nProse after.\n") and "old table" not in text
    assert rebuild([doc], tmp_path, check=True, log=log.append) == []
    assert rebuild([doc], tmp_path, log=log.append) == [] and doc.read_text() == text  # idempotent


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_a_changed_record_makes_its_block_stale(records, tmp_path):
    command = "classbench summary results/toys --by run --format markdown"
    doc = _doc(tmp_path, f"<!-- generated: {command} -->\n<!-- end generated -->")
    rebuild([doc], tmp_path, log=lambda _: None)
    assert rebuild([doc], tmp_path, check=True, log=lambda _: None) == []
    summary = runfolder.RunFolder(runfolder.discover(records)[0]).summary_json
    record = json.loads(summary.read_text())
    record["test_top1"] = 0.1234
    summary.write_text(json.dumps(record))
    log: list[str] = []
    assert [b.line for b in rebuild([doc], tmp_path, check=True, log=log.append)] == [5]
    assert "+" in log[0] and "12.34%" in log[0]


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_a_files_block_runs_on_rebuild_and_is_not_compared_by_check(records, tmp_path):
    command = "classbench plot results/toys --out figs"
    doc = _doc(tmp_path, f"<!-- generated-files: {command} -->")
    log: list[str] = []
    assert rebuild([doc], tmp_path, check=True, log=log.append) == [] and not (tmp_path / "figs").exists()
    assert "not compared (writes files)" in log[0]
    rebuild([doc], tmp_path, log=log.append)
    assert (tmp_path / "figs" / "top1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # renders a report three times
def test_a_report_that_only_changes_its_date_is_kept_so_a_rebuild_leaves_the_tree_clean(records, tmp_path):
    command = "classbench report results/toys -o report.html"
    doc = _doc(tmp_path, f"<!-- generated-files: {command} -->")
    report = tmp_path / "report.html"
    rebuild([doc], tmp_path, log=lambda _: None)
    first = report.read_bytes()
    stamps = re.findall(rb"(?:generated|on) (\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC)", first)
    assert len(stamps) == 2  # the header's and the footer's
    older = first.replace(stamps[0], b"1999-01-01 00:00 UTC")  # as if rendered long ago
    report.write_bytes(older)
    log: list[str] = []
    rebuild([doc], tmp_path, log=log.append)
    assert report.read_bytes() == older and "report.html kept: only its date changed" in log[0]

    summary = runfolder.RunFolder(runfolder.discover(records)[0]).summary_json
    record = json.loads(summary.read_text())
    record["test_top1"] = 0.1234  # the records changed: the report is rewritten, with today's date
    summary.write_text(json.dumps(record))
    rebuild([doc], tmp_path, log=log.append)
    assert b"1999-01-01" not in report.read_bytes() and b"12.34" in report.read_bytes() and "kept" not in log[1]


def test_an_example_in_a_code_fence_is_not_a_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```\n<!-- generated: classbench summary a -->\n<!-- end generated -->\n```\n\n"
                   "~~~~\n<!-- end generated -->\n```\n~~~~\n"
                   "<!-- generated: classbench summary b -->\n```\n<!-- end generated -->\n")
    assert [(b.line, b.command, b.body) for b in find_blocks(doc)] == [(10, "classbench summary b", "```")]


@pytest.mark.parametrize("text, message", [
    ("<!-- generated: classbench summary results -->\nbody\n", "never closed"),
    ("body\n<!-- end generated -->\n", "without a"),
    ("<!-- generated: classbench summary a -->\n<!-- generated: classbench summary b -->\n<!-- end generated -->\n",
     "opens inside the block of line 1"),
])
def test_malformed_blocks_are_named(tmp_path, text, message):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(ClassbenchError, match=message):
        find_blocks(doc)


@pytest.mark.parametrize("command, message", [
    ("rm -rf results", "is not allowed here"),
    ("classbench train configs/cifar10/resnet20.yaml", "is not allowed here"),
    ("classbench summary 'unclosed", "cannot parse"),
    ("classbench summary results/none --format markdown",
     r"failed \(exit 2\): error: Runs folder results/none does not exist"),
    ("classbench summary results/toys --format nonsense", r"failed \(exit 2\)"),
])
def test_a_bad_command_fails_naming_its_block(records, tmp_path, command, message):
    doc = _doc(tmp_path, f"<!-- generated: {command} -->\n<!-- end generated -->")
    before = doc.read_text()
    with pytest.raises(ClassbenchError, match=f"{doc}:5: .*{message}"):
        rebuild([doc], tmp_path, log=lambda _: None)
    assert doc.read_text() == before


def test_the_command_line_exits_1_on_a_stale_block_and_0_once_rebuilt(records, tmp_path, capsys):
    command = "classbench compare results/toys --format markdown"
    doc = _doc(tmp_path, f"<!-- generated: {command} -->\n<!-- end generated -->")
    assert docs_results.main(["--root", str(tmp_path), "--check", str(doc)]) == 1
    assert f"{doc}:5: out of date" in capsys.readouterr().out
    assert docs_results.main(["--root", str(tmp_path), str(doc)]) == 0
    assert docs_results.main(["--root", str(tmp_path), "--check", str(doc)]) == 0
    (tmp_path / "docs").mkdir()
    doc.rename(tmp_path / "docs" / "results.md")  # the default: every markdown file under <root>/docs
    assert docs_results.main(["--root", str(tmp_path), "--check"]) == 0
