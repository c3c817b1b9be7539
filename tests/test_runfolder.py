"""The run folder has one owner, classbench/runfolder.py: names, status, discovery, reading, the channel."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest

from classbench import runfolder
from classbench.errors import CheckpointError, ClassbenchError
from classbench.runfolder import RunFolder

PACKAGE = Path(runfolder.__file__).resolve().parent

#: A run-folder file name inside a string: the eight files, and the checkpoints folder as a path part.
FILE_NAME = re.compile(r"(config\.yaml|env\.json|status\.json|metrics\.jsonl|summary\.json|nonfinite\.json"
                       r"|last\.pt|best\.pt|^checkpoints$|checkpoints/)")


def _docstrings(tree: ast.AST) -> set[int]:
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, owners) and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def file_name_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` that spells a run-folder file name.
    Docstrings and comments are prose and may name the files; code and messages take the names from runfolder."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
            and FILE_NAME.search(n.value)]


def test_the_literal_finder_finds_what_it_must_and_only_that():
    src = '''"""Reads summary.json."""
import json
def f(d):
    """Uses checkpoints/best.pt."""
    # comments may say metrics.jsonl
    a = d / "summary.json"
    b = f"{d}/checkpoints/last.pt"
    c = d / "checkpoints"
    e = "saved the checkpoints of the run"
    return json.dumps({"status": "status.json is stale"})
'''
    found = [line for line, _ in file_name_literals(src)]
    assert sorted(found) == [6, 7, 8, 10]


def test_no_module_but_runfolder_spells_a_run_folder_file_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "runfolder.py":
            continue
        for line, text in file_name_literals(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:80]!r}")
    assert not offenders, "use classbench.runfolder's names instead:\n" + "\n".join(offenders)


def test_names_and_paths_agree():
    f = RunFolder("/r/x")
    assert (f.config_yaml.name, f.env_json.name, f.status_json.name, f.metrics_jsonl.name, f.summary_json.name,
            f.nonfinite_json.name) == (runfolder.CONFIG, runfolder.ENV, runfolder.STATUS, runfolder.METRICS,
                                       runfolder.SUMMARY, runfolder.NONFINITE)
    assert f.last_pt == Path("/r/x") / runfolder.CHECKPOINTS / runfolder.LAST_PT
    assert f.best_pt == f.checkpoint("best") and f.best_pt.name == runfolder.BEST_PT
    assert runfolder.checkpoint_rel("last") == f"{runfolder.CHECKPOINTS}/{runfolder.LAST_PT}"


def test_status_round_trip_and_unknown_status(tmp_path):
    d = runfolder.create_run_dir(tmp_path, "synthetic", "x")
    assert RunFolder(d).checkpoints.is_dir()
    assert runfolder.read_status(d) is None and not runfolder.is_finished(d)
    runfolder.write_status(d, runfolder.INTERRUPTED, "SIGTERM at step 3")
    s = runfolder.read_status(d)
    assert (s["status"], s["message"], s["pid"]) == ("interrupted", "SIGTERM at step 3", os.getpid())
    with pytest.raises(ValueError, match="unknown run status"):
        runfolder.write_status(d, "done")
    runfolder.write_status(d, runfolder.FINISHED)
    assert not runfolder.is_finished(d)  # finished needs summary.json too
    RunFolder(d).summary_json.write_text(json.dumps({"steps": 1}))
    assert runfolder.is_finished(d) and runfolder.read_summary(d) == {"steps": 1}
    RunFolder(d).status_json.write_text("{not json")
    assert not runfolder.is_finished(d)


def test_discover_finds_run_folders_and_not_their_insides(tmp_path):
    a = runfolder.create_run_dir(tmp_path, "synthetic", "a")
    b = runfolder.create_run_dir(tmp_path, "synthetic", "b")
    RunFolder(a).config_yaml.write_text("name: a\n")
    RunFolder(b).metrics_jsonl.write_text('{"step": 1}\n')
    nested = RunFolder(a).checkpoints / "x"
    nested.mkdir()
    (nested / runfolder.CONFIG).write_text("name: inner\n")  # inside a run: not a run
    runfolder.create_run_dir(tmp_path, "synthetic", "empty")  # neither file: not (yet) a run
    assert runfolder.discover(tmp_path) == sorted([a, b])
    with pytest.raises(ClassbenchError, match="does not exist"):
        runfolder.discover(tmp_path / "nowhere")


def test_resolve_checkpoint(tmp_path):
    d = runfolder.create_run_dir(tmp_path, "synthetic", "x")
    with pytest.raises(CheckpointError, match=r"holds no checkpoints/best\.pt"):
        runfolder.resolve_checkpoint(d)
    RunFolder(d).best_pt.write_bytes(b"x")
    assert runfolder.resolve_checkpoint(d) == RunFolder(d).best_pt
    assert runfolder.resolve_checkpoint(RunFolder(d).best_pt) == RunFolder(d).best_pt
    with pytest.raises(CheckpointError, match="does not exist"):
        runfolder.resolve_checkpoint(tmp_path / "nope.pt")


def test_config_hash_ignores_only_the_excluded_keys(tmp_path):
    from classbench.config import load_config, to_yaml

    base = ["train.steps=5", "optim.lr=0.1"]
    a = load_config(None, [*base, "train.threads=1"])
    assert runfolder.config_hash(a) == runfolder.config_hash(load_config(None, [*base, "train.threads=3",
                                                                                 "train.runs_dir=elsewhere"]))
    assert runfolder.config_hash(a) != runfolder.config_hash(load_config(None, [*base, "optim.lr=0.05"]))
    d = runfolder.create_run_dir(tmp_path, "synthetic", "x")
    assert runfolder.run_config_hash(d) is None
    RunFolder(d).config_yaml.write_text(to_yaml(a))
    assert runfolder.run_config_hash(d) == runfolder.config_hash(a)


@pytest.mark.parametrize("override", ["train.resume_schedule=replan", "train.checkpoint_every=7",
                                      "data.download=false", "log.every=3"])
def test_config_hash_ignores_keys_that_do_not_change_results(override):
    """A run's results do not depend on these, so a sweep rerun skips it and compare pools it with its twin."""
    from classbench.config import flatten, load_config, to_dict

    base = ["train.steps=5", "optim.lr=0.1"]
    a, b = load_config(None, base), load_config(None, [*base, override])
    key = override.split("=")[0]
    assert flatten(to_dict(a))[key] != flatten(to_dict(b))[key]  # the override took effect
    assert runfolder.config_hash(a) == runfolder.config_hash(b)
    # ...while a key next to it that does change results still changes the hash
    assert runfolder.config_hash(b) != runfolder.config_hash(load_config(None, [*base, override, "train.label_smoothing=0.1"]))


def test_a_training_child_announces_its_run_folder_through_the_channel(tiny_cfg, tmp_path, monkeypatch):
    """The documented channel: $CLASSBENCH_RUN_DIR_FILE names a file; the run writes its folder there."""
    from classbench.train.trainer import resume, train

    channel = tmp_path / "where"
    monkeypatch.setenv(runfolder.RUN_DIR_FILE_ENV, str(channel))
    run_dir = train(tiny_cfg("train.steps=2", "train.epochs=0"))
    assert runfolder.read_announced_run_dir(channel) == run_dir.resolve()
    assert runfolder.read_status(run_dir)["status"] == runfolder.FINISHED
    channel.unlink()
    resume(run_dir, ["train.steps=3"])  # a resumed run announces the folder it continues
    assert runfolder.read_announced_run_dir(channel) == run_dir.resolve()
    assert runfolder.read_announced_run_dir(tmp_path / "never-written") is None


def test_env_json_records_the_cpu_model_and_its_speed_flags():
    """Every figure needs its CPU: env.json carries /proc/cpuinfo's model name and the flags that decide speed."""
    import re

    import torch

    from classbench.host import SPEED_FLAGS

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    first = text.split("\n\n")[0]
    model = re.search(r"^model name\s*:\s*(.*)$", first, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", first, re.M)
    cpu = runfolder.environment(torch.device("cpu"))["cpu"]
    assert cpu["model"] == (model.group(1).strip() if model else None)
    have = set(flags.group(1).split()) if flags else set()
    assert cpu["flags"] == [f for f in SPEED_FLAGS if f in have]
