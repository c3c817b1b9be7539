"""Find run folders and load them into :class:`Run` objects.

A run folder (see docs/design.md) holds ``config.yaml``, ``env.json``,
``status.json``, ``metrics.jsonl``, ``checkpoints/`` and, once finished,
``summary.json``.  Readers must survive runs that are being written right now
or that crashed half way: every problem becomes a warning and a status, never
an exception.

    runs = load_runs("runs", group="resnets")
    for r in runs:
        print(r.label, r.status, r.best("val", "top1"))
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import runfolder
from ..errors import ClassbenchError
from ..config import flatten
from ..runfolder import RunFolder, discover, is_run_dir  # noqa: F401 - discover/is_run_dir: the readers' entry points

#: A run without status.json/summary.json whose files have not changed for this
#: long is considered crashed rather than still starting up.
STALE_AFTER_S = 30 * 60

#: Every status a run can have.  The first five come from status.json; the last
#: is derived (a run that says "running" but whose process is gone).
STATUSES = (*runfolder.STATUSES, "crashed")

#: Metric keys that are not metrics.
NON_METRIC_KEYS = {"step", "epoch", "split", "time"}

#: Splits evaluated by the trainer (anything else in metrics.jsonl is "train").
EVAL_SPLITS = ("val", "test", "train_subset")

#: Metrics where lower is better.
LOWER_IS_BETTER = {"loss"}


@dataclass
class Run:
    """One run folder, loaded.

    ``metrics`` holds every valid metrics.jsonl record in file order;
    ``summary`` is summary.json or None for an unfinished run;
    ``config`` is config.yaml as plain Python containers ({} if unreadable).
    """

    path: Path
    rel: str
    name: str
    model: str
    dataset: str
    status: str
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    status_info: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    label: str = ""

    # -- metrics helpers ---------------------------------------------------
    def splits(self) -> list[str]:
        """Splits present in metrics.jsonl, train first then eval splits in a fixed order."""
        seen = {r.get("split", "train") for r in self.metrics}
        order = ["train", *EVAL_SPLITS]
        return [s for s in order if s in seen] + sorted(s for s in seen if s not in order)

    def records(self, split: str, metric: str | None = None) -> list[dict[str, Any]]:
        """Records of one split (that carry a finite numeric ``metric`` if given), sorted by step."""
        out = []
        for r in self.metrics:
            if r.get("split", "train") != split:
                continue
            if metric is not None and not is_number(r.get(metric)):
                continue
            if not is_number(r.get("step")):
                continue
            out.append(r)
        out.sort(key=lambda r: r["step"])
        return out

    def best(self, split: str, metric: str) -> tuple[float, int] | None:
        """(best value, its step) of ``metric`` over all records of ``split``; None if none.

        Max for accuracies, min for losses.  Ties go to the earliest step.
        """
        recs = self.records(split, metric)
        if not recs:
            return None
        lower = metric in LOWER_IS_BETTER
        best = None
        for r in recs:
            v = float(r[metric])
            if best is None or (v < best[0] if lower else v > best[0]):
                best = (v, int(r["step"]))
        return best

    def value_at(self, split: str, metric: str, step: int) -> float | None:
        """Value of ``metric`` on ``split`` at exactly ``step`` (the last such record), or None."""
        found = None
        for r in self.records(split, metric):
            if int(r["step"]) == int(step):
                found = float(r[metric])
        return found

    def last_time(self) -> float | None:
        times = [float(r["time"]) for r in self.metrics if is_number(r.get("time"))]
        return max(times) if times else None

    def last_step(self) -> int | None:
        steps = [int(r["step"]) for r in self.metrics if is_number(r.get("step"))]
        return max(steps) if steps else None

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def best_checkpoint(self) -> Path:
        return self.folder.best_pt

    def config_flat(self) -> dict[str, Any]:
        return flatten(self.config)


# -- small helpers ----------------------------------------------------------


def is_number(v: Any) -> bool:
    """A finite int/float that is not a bool."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v)


def _read_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    conf = OmegaConf.load(path)
    # Leave ${...} interpolations as text: a config that fails to resolve must not break a reader.
    return OmegaConf.to_container(conf, resolve=False)


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def pid_alive(pid: Any) -> bool:
    """True if a process with this id exists on this host (and is not a zombie)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # A zombie has exited; it only waits for its parent to reap it.
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
    except (OSError, IndexError):
        pass
    return True


# -- discovery (the folder format is classbench.runfolder's) --------------------------------


def load_run(path: str | os.PathLike, runs_dir: str | os.PathLike | None = None, *, now: float | None = None) -> Run:
    """Load one run folder.  Never raises for a damaged run: problems become warnings."""
    path = Path(path)
    notes: list[str] = []
    try:
        rel = path.relative_to(runs_dir).as_posix() if runs_dir is not None else path.as_posix()
    except ValueError:
        rel = path.as_posix()
    if rel in ("", "."):
        rel = path.name or path.as_posix()

    folder = RunFolder(path)
    config: dict[str, Any] = {}
    if folder.config_yaml.exists():
        from ..config import load_run_config, to_dict

        try:  # untrusted: bounded YAML, no interpolation, known keys (the config-data loader)
            config = to_dict(load_run_config(path, check=False))
        except ClassbenchError as e:  # a half-written or hand-edited file must not break anything
            notes.append(f"ignoring the run's config: {e}")
    else:
        notes.append(f"{path} has no {runfolder.CONFIG}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = runfolder.read_metrics(path, warn=True)
    notes.extend(str(w.message) for w in caught)

    summary: dict[str, Any] | None = None
    if folder.summary_json.is_file():
        try:
            s = runfolder.read_summary(path)
            summary = s if isinstance(s, dict) else None
            if summary is None:
                notes.append(f"{folder.summary_json} is not a JSON object; ignoring it")
        except (OSError, ValueError) as e:
            notes.append(f"cannot read {folder.summary_json}: {e}")

    status_info: dict[str, Any] = {}
    if folder.status_json.is_file():
        try:
            s = runfolder.read_status(path)
            status_info = s if isinstance(s, dict) else {}
        except (OSError, ValueError) as e:
            notes.append(f"cannot read {folder.status_json}: {e}")

    env: dict[str, Any] = {}
    try:
        e_ = runfolder.read_env(path)
        env = e_ if isinstance(e_, dict) else {}
    except (OSError, ValueError):
        pass

    status = _status(path, summary, status_info, now=now)
    if status == "running":
        notes.append(f"run {rel} is still running: its numbers are partial")
    elif status == "crashed":
        why = "its process is gone" if status_info.get("status") == "running" else "it stopped writing without a summary"
        notes.append(f"run {rel} crashed ({why}): its numbers are partial")
    elif status in ("failed", "interrupted", "nonfinite"):
        msg = status_info.get("message")
        notes.append(f"run {rel} is {status}" + (f": {msg}" if msg else ""))

    name = _get(config, "name") or (summary or {}).get("name") or (path.parent.name if path.parent.name else path.name)
    model = _get(config, "model.name") or (summary or {}).get("model") or "?"
    dataset = (
        _get(config, "data.name")
        or (summary or {}).get("dataset")
        or (path.parent.parent.name if path.parent.parent != path.parent else "?")
    )
    return Run(
        path=path,
        rel=rel,
        name=str(name),
        model=str(model),
        dataset=str(dataset),
        status=status,
        config=config,
        metrics=metrics,
        summary=summary,
        status_info=status_info,
        env=env,
        warnings=notes,
    )


def _status(path: Path, summary: dict | None, info: dict, *, now: float | None) -> str:
    if summary is not None:
        s = summary.get("status", "finished")
        return s if s in STATUSES else "finished"
    s = info.get("status")
    if s == "running":
        host = info.get("host")
        if host in (None, "", socket.gethostname()):
            return "running" if pid_alive(info.get("pid")) else "crashed"
        # Another machine: we cannot see its processes; judge by activity.
        now = time.time() if now is None else now
        return "running" if now - runfolder.last_update(path) < STALE_AFTER_S else "crashed"
    if s in STATUSES:
        return s  # finished without summary.json counts as finished (summary may be written next)
    # No usable status.json and no summary: starting up, or dead.
    now = time.time() if now is None else now
    return "running" if now - runfolder.last_update(path) < STALE_AFTER_S else "crashed"


# -- groups -------------------------------------------------------------------


def _default_groups_files() -> list[Path]:
    from ..config import config_dirs  # the packaged configs of an installed wheel, else the checkout's

    return [Path("configs") / "groups.yaml", *(d / "groups.yaml" for d in config_dirs())]


def load_groups(path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Read configs/groups.yaml: ``{group: [config name or regex, ...]}``.

    A group may also be written as ``{description: ..., configs: [...]}``.
    """
    candidates = [Path(path)] if path else _default_groups_files()
    for p in candidates:
        if p.is_file():
            break
    else:
        where = ", ".join(str(c) for c in candidates)
        raise ClassbenchError(f"No groups file found (looked at {where}). Create configs/groups.yaml or pass --groups-file.")
    try:
        raw = _read_yaml(p) or {}
    except Exception as e:
        raise ClassbenchError(f"Cannot read groups file {p}: {e}") from e
    if not isinstance(raw, dict):
        raise ClassbenchError(f"{p} must map group names to lists of config names or regexes.")
    groups: dict[str, list[str]] = {}
    for name, members in raw.items():
        if isinstance(members, dict):
            members = members.get("configs", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ClassbenchError(f"{p}: group {name!r} must be a list of config names or regexes.")
        groups[str(name)] = members
    return groups


def group_matcher(patterns: Iterable[str]):
    """A predicate on config names: exact name or full regex match of any pattern."""
    compiled = []
    exact = set()
    for pat in patterns:
        exact.add(pat)
        try:
            compiled.append(re.compile(pat))
        except re.error:
            pass  # a plain name with regex metacharacters; exact match only
    return lambda name: name in exact or any(rx.fullmatch(name) for rx in compiled)


def load_runs(
    runs_dir: str | os.PathLike = "runs",
    *,
    filter: str | None = None,  # noqa: A002 - matches the CLI flag
    group: str | None = None,
    groups_file: str | os.PathLike | None = None,
    warn: bool = True,
    require: bool = True,
) -> list[Run]:
    """Discover, filter and load runs.  Warnings (partial runs, corrupt lines) go to ``warnings.warn``.

    ``filter`` is a regex searched in the run path (relative to ``runs_dir``, or the full path);
    ``group`` names a group of configs/groups.yaml.  With ``require``, finding no run is an error.
    """
    runs = [load_run(p, runs_dir) for p in discover(runs_dir, filter)]
    if group:
        groups = load_groups(groups_file)
        if group not in groups:
            raise ClassbenchError(f"Unknown group {group!r}. Groups in configs/groups.yaml: {', '.join(sorted(groups))}.")
        match = group_matcher(groups[group])
        runs = [r for r in runs if match(r.name)]
    if require and not runs:
        what = []
        if filter:
            what.append(f"matching --filter {filter!r}")
        if group:
            what.append(f"in group {group!r}")
        raise ClassbenchError(
            f"No runs found under {runs_dir}" + (" " + " and ".join(what) if what else "") + ". "
            f"A run folder holds {runfolder.CONFIG} or {runfolder.METRICS}."
        )
    assign_labels(runs)
    if warn:
        for r in runs:
            for note in r.warnings:
                warnings.warn(note, stacklevel=2)
    return runs


def assign_labels(runs: list[Run]) -> None:
    """Short unique labels: the config name, plus the run folder name where a config ran twice."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    used: set[str] = set()
    for r in runs:
        label = r.name if counts[r.name] == 1 else f"{r.name} ({r.path.name})"
        base, i = label, 2
        while label in used:
            label = f"{base} #{i}"
            i += 1
        used.add(label)
        r.label = label
