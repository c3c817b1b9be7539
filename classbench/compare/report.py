"""One self-contained HTML report comparing runs.

The file needs nothing but a browser: the figures are inlined as base64 PNG,
the CSS is inline, and there is no script and no external resource, so it
opens offline and can be mailed or archived as is.

Sections, in order: the verdict of the comparison (Welch, McNemar or the one-run t-test, Holm-corrected;
classbench.compare.comparison), the arm table with its confidence intervals, the
per-run table (both selections), the learning curves (per arm: mean with a band,
when any arm has several seeds), accuracy against size, for each arm the
per-class accuracy, confusion matrix and calibration of its median seed's
best.pt on the test split (from the test outcomes the trainer stored, so a
record without checkpoints has them too; best.pt is evaluated only for older
runs, and for a TTA run's plain accuracy), each run's config differences from
the group's common config, and the runs' environments and warnings.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ClassbenchError
from ..io import atomic_write_text
from ..runfolder import (CONFIG, SUMMARY, TEST_OUTCOMES, RunFolder, attempt_environments, calibration_bins,
                         checkpoint_rel, confusion_matrix, plain_text, test_outcomes_path)
from . import stats
from .comparison import Arm, Comparison, arm_cells, arm_columns, build_comparison, excluded_lines
from .plots import arm_colors, make_arm_figures, make_figures, reliability_figure, run_colors
from .runs import Run
from .summary import explanation, format_cell, summarize, table_columns

#: Confusion matrices with at most this many classes are HTML tables; larger ones an image.
MAX_TABLE_CLASSES = 20
#: Arms the report analyses (best first): each adds a confusion matrix and a figure to the page, and a pass
#: over the test split when its predictions are not stored.
MAX_ARMS_ANALYSED = 8

_NUMERIC_COLS = {
    "best_any_step", "best_any_step_at", "test_at_best_val", "test_at_best_val_step",
    "params", "flops", "wall_time_s", "train_img_per_s",
}

# Keys that differ between every pair of runs without being a design choice.
_IGNORED_DIFF_KEYS = {"name"}


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


# ---------------------------------------------------------------- per-class evaluation
@dataclass
class ClassEval:
    """Test-split predictions of best.pt, counted per class: the trainer's stored ones or a new evaluation."""

    run: Run
    source: Path  # where the predictions come from: the checkpoint evaluated, or the stored test outcomes file
    classes: list[str]
    confusion: np.ndarray  # (C, C) counts, rows = true class, cols = predicted
    other: np.ndarray  # (C,) predictions outside the C classes (a head with more outputs), per true class
    step: int | None = None
    notes: list[str] = field(default_factory=list)
    stored: bool = False  # True: the trainer's own test outcomes, read from the run folder; nothing was evaluated

    @property
    def support(self) -> np.ndarray:
        """Test images per true class."""
        return self.confusion.sum(axis=1) + self.other

    @property
    def count(self) -> int:
        return int(self.support.sum())

    @property
    def top1(self) -> float:
        return float(np.trace(self.confusion)) / max(self.count, 1)

    @property
    def per_class(self) -> np.ndarray:
        support = self.support
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, np.diag(self.confusion) / np.maximum(support, 1), np.nan)


def class_eval(run: Run, confusion, other, num_classes: int, *, classes: Sequence[str] | None, source: Path,
               step: int | None = None, notes: Sequence[str] = (), stored: bool = False) -> ClassEval:
    """The one place where a confusion matrix (counts[true class, predicted class]) and the count of predictions
    outside the classes (``other``, per true class) become a ClassEval, whether they were just evaluated or
    stored.  Classes are named by ``classes`` when it has ``num_classes`` names, else numbered.  A matrix of another size (damaged, or from another dataset) raises
    ClassbenchError rather than miscounting."""
    n_cls = int(num_classes)
    conf = np.asarray(confusion)
    if conf.shape != (n_cls, n_cls):
        raise ClassbenchError(f"{plain_text(source)} counts {conf.shape[0] if conf.ndim else 0} classes, but the run has "
                              f"{n_cls}; it does not belong to this run.")
    names = [str(c) for c in classes] if classes is not None and len(classes) == n_cls else [str(i) for i in range(n_cls)]
    other = np.asarray(other).astype(np.int64, copy=False).reshape(-1)
    notes = list(notes)
    if other.sum():
        notes.append(f"{int(other.sum())} prediction(s) name a class outside the dataset's {n_cls} (the model has more "
                     "outputs than the dataset has classes): they count as wrong, in no column of the matrix.")
    return ClassEval(run, source, names, conf.astype(np.int64, copy=False), other, step, notes, stored)


def count_predictions(run: Run, pred, target, num_classes: int, *, source: Path, **kw) -> ClassEval:
    """:func:`class_eval` of class indices ``pred``/``target`` (numpy arrays or CPU tensors, in split order).
    Labels outside 0..num_classes-1 raise ClassbenchError rather than miscounting."""
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    if pred.shape != target.shape:
        raise ClassbenchError(f"{plain_text(source)}: {pred.size} predictions for {target.size} test images.")
    try:
        conf, other = confusion_matrix(pred, target, num_classes)
    except ValueError:
        raise ClassbenchError(f"{plain_text(source)}: labels outside 0..{int(num_classes) - 1}, but the run has "
                              f"{int(num_classes)} classes; they do not belong to this run.") from None
    return class_eval(run, conf, other, num_classes, source=source, **kw)


def evaluate_per_class(run: Run, *, device: str = "cpu", limit: int | None = None) -> ClassEval:
    """The test predictions of the run's best.pt, evaluated now and counted per class.

    The evaluation is :func:`classbench.inference.evaluate.evaluate_checkpoint`, the trainer's own
    (normalisation, memory format, precision, ``eval.tta``), so without ``limit`` the top-1 here is
    summary.json's ``test_top1``.  Raises (ClassbenchError, ImportError, ...) when the checkpoint or the
    data cannot be loaded; the report turns that into a note.
    """
    from ..inference.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(run.path, split="test", kind="best", device=device, with_predictions=True, limit=limit)
    return _class_eval(run, m)


def _class_eval(run: Run, m: dict) -> ClassEval:
    """Count the predictions of an :func:`evaluate_checkpoint` result (with predictions) per class."""
    notes = []
    if m["count"] < m["split_size"]:
        notes.append(f"evaluated on the first {m['count']} of {m['split_size']} test images (--eval-limit)")
    step = m["step"]
    return count_predictions(run, m["pred"], m["target"], m["num_classes"], classes=m["classes"],
                             source=Path(m["checkpoint"]), step=int(step) if isinstance(step, int) else None, notes=notes)


def stored_targets(run: Run, stored: dict) -> np.ndarray:
    """The true class of each image behind a run's stored test predictions in an older format (with ``pred`` and
    no confusion matrix; :func:`classbench.runfolder.read_test_outcomes`).

    Such a file holds only a digest of the labels, so they are read from the dataset that the run's config
    names, on this machine, and checked against the digest.  Files from before 2026-12-03 hold the labels
    themselves.  Raises ClassbenchError (or the data layer's DataError) when the dataset is not here or is
    not the one the run was scored on."""
    from ..data import run_test_labels
    from ..runfolder import labels_digest

    if "target" in stored:
        return np.asarray(stored["target"])
    labels = run_test_labels(run.path)
    n = stored["correct"].size
    if len(labels) != n or labels_digest(labels) != stored["labels_sha256"]:
        raise ClassbenchError(f"the test labels of {plain_text(run.config_flat().get('data.name', 'its dataset'))} here are "
                              f"not those {plain_text(run.rel)} was scored on ({len(labels)} images here, {n} stored; the "
                              "digests differ), so its per-class counts cannot be made; point $CLASSBENCH_DATA at the run's dataset.")
    return labels


def stored_class_eval(run: Run, stored: dict) -> ClassEval:
    """Count the trainer's stored test outcomes (:func:`classbench.runfolder.read_test_outcomes`) per class.

    They agree with summary.json's ``test_top1`` by construction, with or without ``eval.tta``: at the end of
    a run the trainer makes ONE call of ``classbench.train.evaluate.evaluate`` on best.pt (with the run's
    ``eval.tta``, normalisation and precision, on its own device) and takes both summary.json's test top-1/top-5/
    loss and these predictions from it; the confusion matrix counts the column that top-1 counted (under TTA the argmax of the
    flip-averaged probabilities, ``confidence`` that averaged probability).  Under DDP the ranks' shards are
    reassembled in split order and the top-1 counts all-reduced: the same images once each.  Re-evaluating
    best.pt here could only differ (another device or precision), so the stored file is the better source.
    tests/test_report_records.py checks the agreement, also under ``eval.tta=true``.

    The class names come from summary.json (runs since 2026-12-02), else from best.pt when the folder still
    has it, else the classes are numbered in the dataset's order (and a note says why)."""
    folder = RunFolder(run.path)
    summary = run.summary or {}
    classes, n_cls, notes = None, summary.get("num_classes"), []
    named = summary.get("classes")
    if isinstance(named, list) and all(isinstance(c, str) for c in named) and len(named) == n_cls:
        classes = named
    elif folder.best_pt.is_file():
        from ..train.checkpoint import load_checkpoint

        try:  # checked on load (sizes, class names): a shared folder's file may claim anything
            ckpt = load_checkpoint(folder.best_pt)
            classes, n_cls = ckpt.get("classes"), int(ckpt["num_classes"])
        except ClassbenchError as e:
            notes.append(f"Class names unavailable, so classes are numbered: {e}")
    else:
        notes.append(f"Classes are numbered in the dataset's order: their names are kept in "
                     f"{checkpoint_rel('best')}, which this record does not hold.")
    if isinstance(n_cls, bool) or not isinstance(n_cls, int) or n_cls < 1:
        raise ClassbenchError(f"{plain_text(folder.summary_json)} has no valid num_classes ({plain_text(repr(n_cls))[:60]}), so its stored "
                              "test predictions cannot be counted per class.")
    step = summary.get("best_step")
    source = test_outcomes_path(run.path) or folder.test_outcomes
    kw = dict(classes=classes, source=source, notes=notes, stored=True,
              step=step if isinstance(step, int) and not isinstance(step, bool) else None)
    if "confusion" in stored:
        return class_eval(run, stored["confusion"], stored["confusion_other"], n_cls, **kw)
    if "pred" not in stored:
        raise ClassbenchError(f"{plain_text(source)} holds no confusion matrix (it was recorded where "
                              "the dataset's labels were not at hand), so its per-class counts cannot be made.")
    return count_predictions(run, stored["pred"], stored_targets(run, stored), n_cls, **kw)


# ---------------------------------------------------------------- config differences
def config_differences(runs: Sequence[Run]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """(common config, {run label: {key: value}} for keys that differ, differing keys in order)."""
    flats = [r.config_flat() for r in runs]
    keys: list[str] = []
    for f in flats:
        for k in f:
            if k not in keys:
                keys.append(k)
    missing = object()
    common: dict[str, Any] = {}
    differing: list[str] = []
    for k in keys:
        vals = [f.get(k, missing) for f in flats]
        first = vals[0]
        if all(_same(v, first) for v in vals):
            if first is not missing:
                common[k] = first
        elif k not in _IGNORED_DIFF_KEYS:
            differing.append(k)
    diffs = {
        (r.label or r.name): {k: f.get(k, "(unset)") for k in differing}
        for r, f in zip(runs, flats)
    }
    return common, diffs, differing


def _same(a: Any, b: Any) -> bool:
    try:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return a is b


def _fmt_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


# ---------------------------------------------------------------- HTML pieces
CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --soft:#f6f8fa; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, "Liberation Sans", "DejaVu Sans", sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#24292f; color:#fff; padding:22px 40px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header .meta { color:#c9d1d9; font-size:13px; }
nav { position:sticky; top:0; z-index:2; background:var(--soft); border-bottom:1px solid var(--line); padding:8px 40px; }
nav a { color:var(--accent); text-decoration:none; margin-right:18px; font-weight:500; }
main { padding:8px 40px 60px; max-width:1500px; }
section { margin-top:28px; }
h2 { font-size:19px; font-weight:600; border-bottom:1px solid var(--line); padding-bottom:6px; margin:0 0 12px; }
h3 { font-size:15px; font-weight:600; margin:18px 0 8px; }
h4 { font-size:13px; font-weight:600; margin:14px 0 6px; }
.verdict { font-size:15px; border-left:4px solid var(--accent); }
.verdict li { margin:4px 0; } .verdict li.sig { font-weight:600; }
.arm-analysis { border-top:1px solid var(--line); margin-top:18px; }
.arm-analysis img.fig { max-width:600px; }
p.note, .note { color:var(--muted); font-size:13px; }
.scroll { overflow-x:auto; }
td.nowrap { white-space:nowrap; }
.box { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px 14px; margin:10px 0; }
.warn { background:#fff8c5; border-color:#d4a72c; }
table { border-collapse:collapse; font-size:13px; margin:6px 0 12px; }
th, td { border:1px solid var(--line); padding:5px 9px; vertical-align:top; }
th { background:var(--soft); font-weight:600; text-align:left; white-space:nowrap; }
tbody tr:nth-child(even) td { background:#fbfcfd; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.run { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size:12px; }
.swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:baseline; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; }
.st-finished { background:#1a7f37; } .st-running { background:#0969da; } .st-crashed { background:#cf222e; }
.st-failed { background:#cf222e; } .st-interrupted { background:#9a6700; } .st-nonfinite { background:#8250df; }
.best td { font-weight:600; }
img.fig { display:block; width:100%; max-width:1100px; height:auto; border:1px solid var(--line); border-radius:6px; margin:8px 0 18px; }
code, .kv { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size:12px; }
.kv { display:inline-block; background:#eef1f4; border-radius:4px; padding:1px 6px; margin:2px 4px 2px 0; }
.bar { background:#e7ecf0; height:10px; width:160px; border-radius:3px; overflow:hidden; display:inline-block; vertical-align:middle; }
.bar > span { display:block; height:100%; background:#0969da; }
.cm td { text-align:right; min-width:42px; font-variant-numeric:tabular-nums; }
.cm th.rot { writing-mode:vertical-rl; transform:rotate(180deg); text-align:left; padding:6px 4px; }
.perclass { column-width:380px; column-gap:24px; }
.perclass table { break-inside:avoid; }
details summary { cursor:pointer; color:var(--accent); }
footer { color:var(--muted); font-size:12px; padding:20px 40px; border-top:1px solid var(--line); }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="fig" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _breakable(path: str) -> str:
    """A path that may wrap after its slashes."""
    return "/<wbr>".join(esc(part) for part in path.split("/"))


def _badge(status: str) -> str:
    return f'<span class="badge st-{esc(status)}">{esc(status)}</span>'


def _summary_table(rows: list[dict], colors: dict[str, str], split: str, metric: str) -> str:
    cols = table_columns(split, metric)
    out = ['<div class="scroll"><table id="summary-table" class="summary">', "<thead><tr>"]
    out += [f'<th class="{"num" if k in _NUMERIC_COLS else ""}">{esc(h)}</th>' for k, h in cols]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        label = row["label"]
        cls = "run-row best" if i == 0 else "run-row"
        out.append(f'<tr class="{cls}" data-run="{esc(row["run"])}">')
        for k, _ in cols:
            if k == "run":
                sw = f'<span class="swatch" style="background:{esc(colors.get(label, "#888"))}"></span>'
                out.append(f'<td class="run">{sw}{_breakable(row["run"])}</td>')
            elif k == "status":
                out.append(f"<td>{_badge(row['status'])}</td>")
            else:
                c = "num" if k in _NUMERIC_COLS else "nowrap"
                out.append(f'<td class="{c}">{esc(format_cell(row, k))}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _per_class_html(ev: ClassEval) -> str:
    acc = ev.per_class
    support = ev.support
    order = list(range(len(ev.classes)))
    chunks = []
    per_table = 25
    for start in range(0, len(order), per_table):
        rows = ["<table class='pc'><thead><tr><th>class</th><th class='num'>accuracy</th><th></th><th class='num'>images</th></tr></thead><tbody>"]
        for i in order[start : start + per_table]:
            a = acc[i]
            pct = "–" if math.isnan(a) else f"{100 * a:.1f}%"
            width = 0 if math.isnan(a) else 100 * a
            rows.append(
                f"<tr><td>{esc(ev.classes[i])}</td><td class='num'>{pct}</td>"
                f"<td><span class='bar'><span style='width:{width:.1f}%'></span></span></td>"
                f"<td class='num'>{int(support[i])}</td></tr>"
            )
        rows.append("</tbody></table>")
        chunks.append("".join(rows))
    return f"<div class='perclass'>{''.join(chunks)}</div>"


def _confusion_html(ev: ClassEval, table_id: str = "confusion-matrix") -> str:
    cm = ev.confusion
    n = len(ev.classes)
    if n > MAX_TABLE_CLASSES:
        return _img(_confusion_png(ev), f"confusion matrix of {ev.run.label}")
    frac = cm / np.maximum(ev.support[:, None], 1)
    out = [f"<table class='cm' id='{esc(table_id)}'><thead><tr><th>true \\ predicted</th>"]
    out += [f"<th class='rot'>{esc(c)}</th>" for c in ev.classes]
    out.append("</tr></thead><tbody>")
    for i in range(n):
        out.append(f"<tr><th>{esc(ev.classes[i])}</th>")
        for j in range(n):
            f = float(frac[i, j])
            if i == j:
                bg = f"rgba(26,127,55,{0.12 + 0.75 * f:.3f})"
            else:
                bg = f"rgba(207,34,46,{min(0.85, 1.6 * f):.3f})" if cm[i, j] else "transparent"
            fg = "#fff" if (i == j and f > 0.6) or (i != j and f > 0.35) else "#1f2328"
            out.append(f"<td style='background:{bg};color:{fg}' title='{esc(ev.classes[i])} → {esc(ev.classes[j])}: {100 * f:.1f}%'>{int(cm[i, j])}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _confusion_png(ev: ClassEval) -> bytes:
    from .plots import _new_figure, _png_bytes

    n = len(ev.classes)
    cm = ev.confusion.astype(float)
    frac = cm / np.maximum(ev.support[:, None], 1)
    side = min(14.0, max(8.0, n * 0.12))
    fig = _new_figure(figsize=(side, side))
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n), ev.classes, rotation=90, fontsize=max(4, 9 - n // 25))
    ax.set_yticks(range(n), ev.classes, fontsize=max(4, 9 - n // 25))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, shrink=0.6, label="fraction of the true class")
    return _png_bytes(fig)


def _config_diff_html(runs: Sequence[Run], colors: dict[str, str]) -> str:
    if not any(r.config for r in runs):
        return f"<p class='note'>No run has a readable {CONFIG}.</p>"
    common, diffs, keys = config_differences(runs)
    out = []
    if len(runs) < 2:
        out.append("<p class='note'>One run only: nothing to compare. Its full config is below.</p>")
    elif not keys:
        out.append("<p class='note'>All runs share the same config (apart from their names).</p>")
    else:
        out.append(f"<p class='note'>{len(keys)} keys differ across the runs; every other key is common (below).</p>")
        out.append("<table id='config-diff'><thead><tr><th>run</th><th>config</th><th>differences from the common config</th></tr></thead><tbody>")
        for r in runs:
            label = r.label or r.name
            sw = f'<span class="swatch" style="background:{esc(colors.get(label, "#888"))}"></span>'
            kvs = "".join(f"<span class='kv'>{esc(k)}={esc(_fmt_value(v))}</span>" for k, v in diffs[label].items())
            out.append(f"<tr><td class='run'>{sw}{_breakable(r.rel)}</td><td>{esc(r.name)}</td><td>{kvs}</td></tr>")
        out.append("</tbody></table>")
    if common:
        items = "".join(f"<tr><td><code>{esc(k)}</code></td><td><code>{esc(_fmt_value(v))}</code></td></tr>" for k, v in common.items())
        out.append(f"<details><summary>Common config ({len(common)} keys)</summary><table><tbody>{items}</tbody></table></details>")
    return "".join(out)


def _env_html(runs: Sequence[Run]) -> str:
    out = ["<table id='runs-env'><thead><tr><th>run</th><th>status</th><th class='num'>last step</th><th>started</th>"
           "<th>host</th><th>device</th><th>git commit</th><th>torch</th></tr></thead><tbody>"]
    for r in runs:
        env = r.env
        every = attempt_environments(env)
        resumes, attempts = every[1:], [e for e in every if e is not None]

        def each(value) -> str:  # a resumed run shows every attempt's value, once each, in order
            return ", then ".join(dict.fromkeys(v for e in attempts if (v := value(e)))) or "–"

        def commit(e) -> str:
            c = e.get("git_commit") or ""
            return c[:10] + (" (dirty)" if e.get("git_dirty") else "") if c else ""

        started = str(env.get("started", "–")) + "".join(f"; resumed at step {e.get('step', '?')} {e.get('started', '')}"
                                                        for e in resumes)
        step = r.last_step()
        out.append(
            f"<tr><td class='run'>{esc(r.rel)}</td><td>{_badge(r.status)}</td>"
            f"<td class='num'>{'–' if step is None else step}</td><td>{esc(started)}</td>"
            f"<td>{esc(each(lambda e: e.get('host')))}</td>"
            f"<td>{esc(each(lambda e: e.get('device_name') or e.get('device')))}</td>"
            f"<td><code>{esc(each(commit))}</code></td>"
            f"<td>{esc(each(lambda e: (e.get('versions') or {}).get('torch')))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------- the comparison: verdict, arms, per-arm analysis
def _verdict_html(comp: Comparison) -> str:
    if len(comp.arms) < 2:
        what = (f"one arm ({esc(comp.arms[0].label)}, {comp.arms[0].n} run(s))" if comp.arms else "no finished run")
        return f"<p class='note'>Nothing to compare: {what}. An arm is a set of finished runs whose configs differ only in train.seed.</p>"
    ref = esc(comp.reference.label)
    how = f"against the baseline <strong>{ref}</strong>" if comp.baseline else f"against the best arm, <strong>{ref}</strong>"
    items = "".join(f"<li class='{'sig' if v.significant else 'nosig'}'>{esc(v.sentence)}</li>" for v in comp.verdicts)
    scored = (f"test top-1 of the checkpoint chosen on val ({SUMMARY}'s test_top1, the honest selection)"
              if comp.score == "best" and comp.selections <= {"val"} else esc(comp.scored_as))
    return f"<div class='box verdict'><p>Every arm {how}, on {scored}:</p><ul>{items}</ul></div>"


def _arms_table_html(comp: Comparison, colors: dict[str, str]) -> str:
    if not comp.arms:
        return "<p class='note'>No finished run yet.</p>"
    cols = arm_columns(comp.target)
    out = ["<div class='scroll'><table id='arms-table'><thead><tr>"]
    out += [f"<th class='{'' if c == 'arm' else 'num'}'>{esc(c)}</th>" for c in cols]
    out.append("</tr></thead><tbody>")
    for i, arm in enumerate(comp.arms):
        cells = arm_cells(arm, comp.target)
        sw = f'<span class="swatch" style="background:{esc(colors.get(arm.label, "#888"))}"></span>'
        out.append(f"<tr class='arm-row{' best' if i == 0 else ''}' data-arm='{esc(arm.label)}'>")
        out += [f"<td class='run'>{sw}{esc(cells[c])}</td>" if c == "arm" else f"<td class='num'>{esc(cells[c])}</td>" for c in cols]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    out.append(f"<p class='note'>Accuracies in %: {esc(comp.scored_as)}; mean ± std over the "
               "arm's seeds, the Student-t 95 % CI of the mean (none for one run) and the range; cost columns are means "
               "over the seeds.</p>")
    tail = [*excluded_lines(comp), *comp.notes]
    if tail:
        out.append("<ul class='note'>" + "".join(f"<li>{esc(t)}</li>" for t in tail) + "</ul>")
    return "".join(out)


@dataclass
class ArmEval:
    """The per-arm analysis: test predictions of the best.pt of the arm's median seed."""

    arm: Arm
    classes: ClassEval
    calibration: stats.Calibration | None  # None: ``notes`` say why
    plain_top1: float | None  # without TTA, for a run that used TTA (None: ``notes`` say why)
    notes: list[str] = field(default_factory=list)


STORED, CHECKPOINT = "stored", "checkpoint"


def analysis_source(arm: Arm) -> str | None:
    """Where the per-arm analysis of the arm's median seed comes from: :data:`STORED` (the trainer's test
    outcomes; a damaged file counts as absent, and the arm's notes say so), :data:`CHECKPOINT` (best.pt,
    evaluated: a run from before outcomes were stored, or a stored file without the calibration bins that
    best.pt can give), or None when the run has neither."""
    stored = arm.outcomes.get(str(arm.representative.path))
    has_best = RunFolder(arm.representative.path).best_pt.is_file()
    if stored is not None and ("calibration" in stored or not has_best):
        return STORED
    return CHECKPOINT if has_best else None


def evaluate_arm(arm: Arm, *, device: str = "cpu", limit: int | None = None) -> ArmEval:
    """Per-class accuracy, confusion matrix and calibration of the arm's median seed's best.pt on the test split.

    From the trainer's stored test outcomes when the run has them (nothing is evaluated: they are the very
    predictions behind summary.json's test_top1, see :func:`stored_class_eval`), so a record without
    checkpoints has its analysis.  best.pt is evaluated through the one checkpoint-evaluation path only for runs
    from before outcomes were stored, and for stored files without calibration bins when best.pt is there to
    give them.  A TTA run's plain (no-TTA) top-1 always needs best.pt; without it a note says so.  ``limit``
    applies to evaluations only.  Raises ClassbenchError when the run has neither source, and whatever the
    evaluation raises when it fails."""
    from ..inference.evaluate import evaluate_checkpoint

    run = arm.representative
    source = analysis_source(arm)
    has_best = RunFolder(run.path).best_pt.is_file()
    notes: list[str] = []
    bins = None
    if source == STORED:
        stored = arm.outcomes[str(run.path)]
        ev = stored_class_eval(run, stored)
        bins = stored.get("calibration")
        if bins is None:
            notes.append(f"Calibration cannot be computed from this record: its {TEST_OUTCOMES} holds no calibration "
                         f"bins (they need the predicted class's probability), and there is no "
                         f"{checkpoint_rel('best')} to evaluate.")
    elif source == CHECKPOINT:
        m = evaluate_checkpoint(run.path, split="test", kind="best", device=device, with_predictions=True, limit=limit)
        ev = _class_eval(run, m)
        try:
            bins = calibration_bins(m["confidence"].numpy(), m["pred"].numpy() == m["target"].numpy())
        except ValueError as e:
            notes.append(f"Calibration not computed from {plain_text(ev.source)}: {e}.")
    else:
        raise ClassbenchError(f"{plain_text(run.rel)} has neither stored test outcomes ({TEST_OUTCOMES}) nor "
                              f"a {checkpoint_rel('best')}.")
    cal = None if bins is None else stats.calibration(bins)
    plain = None
    if arm.tta and not has_best:
        notes.append(f"The plain (no-TTA) test top-1 needs {checkpoint_rel('best')}, which this record does not hold; "
                     "the figures here are with TTA, as the run was scored.")
    elif arm.tta:
        try:
            pm = evaluate_checkpoint(run.path, split="test", kind="best", device=device, limit=limit, tta=False)
        except Exception as e:  # data or checkpoint unavailable: the TTA analysis still stands
            notes.append(f"The plain (no-TTA) test top-1 could not be computed: {type(e).__name__}: {e}")
        else:
            plain = pm["top1"]
            if pm["count"] < pm["split_size"]:
                notes.append(f"The plain (no-TTA) top-1 is on the first {pm['count']} of {pm['split_size']} test "
                             "images (--eval-limit).")
    return ArmEval(arm, ev, cal, plain, notes)


def _arm_analysis_html(ae: ArmEval, index: int, colors: dict[str, str]) -> str:
    ev, arm = ae.classes, ae.arm
    sw = f'<span class="swatch" style="background:{esc(colors.get(arm.label, "#888"))}"></span>'
    seed = "its only run" if arm.n == 1 else f"its median seed of {arm.n}"
    acc = f"test top-1 <strong>{100 * ev.top1:.2f}%</strong>"
    if arm.tta:
        acc += " with TTA (flip-averaged, as trained)"
    if ae.plain_top1 is not None:
        acc += f" · <strong>{100 * ae.plain_top1:.2f}%</strong> plain (no TTA)"
    at = "" if ev.step is None else f" at step {ev.step}"
    how = (f"as the trainer scored it when the run finished (its stored <code>{esc(TEST_OUTCOMES)}</code>; "
           "nothing re-evaluated)" if ev.stored else "evaluated now")
    out = [f"<div class='arm-analysis' data-arm='{esc(arm.label)}'><h3>{sw}{esc(arm.label)}</h3>",
           f"<p>{seed}: <code>{esc(ev.run.rel)}</code>, checkpoint <code>{checkpoint_rel('best')}</code>{at}, "
           f"{how}: {acc} on {ev.count} images.</p>"]
    out += [f"<p class='note'>{esc(n)}</p>" for n in [*ev.notes, *ae.notes]]
    out.append("<h4>Per-class accuracy (test)</h4>" + _per_class_html(ev))
    out.append("<h4>Confusion matrix (test; rows = true class, columns = predicted)</h4>")
    out.append(_confusion_html(ev, "confusion-matrix" if index == 0 else f"confusion-matrix-{index + 1}"))
    if ae.calibration is not None:
        cal = ae.calibration
        out.append(f"<h4>Calibration</h4><p>Expected calibration error (ECE, {len(cal.count)} equal-width confidence bins): "
                   f"<strong class='ece'>{100 * cal.ece:.2f} %</strong> — the mean gap between confidence and accuracy, "
                   "weighted by the images in each bin.</p>")
        out.append(_img(reliability_figure(cal, title=arm.label), f"reliability diagram of {arm.label}"))
    out.append("</div>")
    return "".join(out)


def _per_arm_html(comp: Comparison, colors: dict[str, str], *, per_class: bool, device: str, limit: int | None) -> str:
    sources = {a.key: analysis_source(a) for a in comp.arms[:MAX_ARMS_ANALYSED]}
    if not any(sources.values()):
        return (f"<p class='note'>No finished run has stored test outcomes ({esc(TEST_OUTCOMES)}) or a "
                f"{checkpoint_rel('best')}, so there is no per-class analysis: runs from before classbench stored "
                "their test outcomes need their checkpoint, and a record holds none.</p>")
    if not per_class:
        return "<p class='note'>Per-class analysis skipped (--no-per-class).</p>"
    out = []
    if comp.score == "last":  # the records keep per-image predictions for best.pt only
        out.append(f"<p class='note'>Each arm's analysis is of {checkpoint_rel('best')}, whose test predictions are "
                   "the recorded ones; the verdict and the arm table above score the final weights (--score last).</p>")
    for i, arm in enumerate(comp.arms[:MAX_ARMS_ANALYSED]):
        if sources[arm.key] is None:
            out.append(f"<p class='note'>No per-class analysis of arm {esc(arm.label)}: its median seed "
                       f"<code>{esc(arm.representative.rel)}</code> has neither readable stored test outcomes "
                       f"({esc(TEST_OUTCOMES)}) nor a {checkpoint_rel('best')}.</p>")
            continue
        try:
            ae = evaluate_arm(arm, device=device, limit=limit)
        except Exception as e:  # data or checkpoint unavailable, a damaged stored file: a note, not a failure
            what = "read the stored test outcomes of" if sources[arm.key] == STORED else "evaluate"
            out.append(f"<div class='box warn'>Could not {what} <code>{esc(arm.representative.rel)}</code> of arm "
                       f"{esc(arm.label)} on the test split: {esc(type(e).__name__)}: {esc(e)}</div>")
            continue
        out.append(_arm_analysis_html(ae, i, colors))
    if len(comp.arms) > MAX_ARMS_ANALYSED:
        out.append(f"<p class='note'>{len(comp.arms) - MAX_ARMS_ANALYSED} more arms not analysed (the best "
                   f"{MAX_ARMS_ANALYSED} are; use --filter or --group to pick others).</p>")
    return "".join(out)


def build_report(
    runs: Sequence[Run],
    *,
    title: str | None = None,
    runs_dir: str | os.PathLike | None = None,
    group: str | None = None,
    filter: str | None = None,  # noqa: A002
    per_class: bool = True,
    device: str = "cpu",
    eval_limit: int | None = None,
    smooth: float = 0.0,
    x: str = "step",
    baseline: str | None = None,
    band: str = "minmax",
    score: str = "best",
) -> str:
    """The whole report as one HTML string.  ``score`` (one of comparison.SCORES) decides the verdict and the arm
    table; the runs table and the per-arm analysis stay on best.pt, whose predictions are the ones recorded."""
    from .. import __version__

    split, metric = "test", "top1"
    comp = build_comparison(runs, baseline=baseline, score=score)
    rows = summarize(runs, split=split, metric=metric)
    order = {row["path"]: i for i, row in enumerate(rows)}
    runs = sorted(runs, key=lambda r: order.get(str(r.path), 0))
    colors = run_colors(runs)
    acolors = arm_colors(comp.arms)
    by_arm = comp.by_arm_default
    figs = (make_arm_figures(comp.arms, x=x, smooth=smooth, band=band, title=group) if by_arm
            else make_figures(runs, x=x, smooth=smooth, title=group))

    what = f"group {group}" if group else (f"runs matching {filter}" if filter else "all runs")
    title = title or f"classbench report — {what}"
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    status_line = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    parts: list[str] = []
    parts.append("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    parts.append("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    parts.append(f"<title>{esc(title)}</title><style>{CSS}</style></head><body>")
    parts.append(
        f"<header><h1>{esc(title)}</h1><div class='meta'>{len(runs)} runs ({esc(status_line)}) · "
        f"from <code>{esc(runs_dir or '')}</code> · generated {esc(generated)} · classbench {esc(__version__)}</div></header>"
    )
    parts.append(
        "<nav><a href='#verdict'>Verdict</a><a href='#arms'>Arms</a><a href='#summary'>Runs table</a>"
        "<a href='#curves'>Curves</a><a href='#size'>Size</a><a href='#per-arm'>Per arm</a>"
        "<a href='#configs'>Configs</a><a href='#runs'>Runs</a></nav><main>"
    )

    # The verdict first, then the arms it is about.
    parts.append("<section id='verdict'><h2>Verdict</h2>" + _verdict_html(comp) + "</section>")
    parts.append("<section id='arms'><h2>Arms</h2>" + _arms_table_html(comp, acolors) + "</section>")

    warn_notes = [(r, n) for r in runs for n in r.warnings]
    if warn_notes:
        items = "".join(f"<li>{esc(n)}</li>" for _, n in warn_notes[:50])
        more = f"<li>… and {len(warn_notes) - 50} more</li>" if len(warn_notes) > 50 else ""
        parts.append(f"<div class='box warn' id='warnings'><strong>Warnings</strong><ul>{items}{more}</ul></div>")

    # One row per run
    parts.append("<section id='summary'><h2>Runs table</h2>")
    parts.append("<div class='box'>" + "<br>".join(esc(e) for e in explanation(split, metric)) + "</div>")
    parts.append(_summary_table(rows, colors, split, metric))
    parts.append("<p class='note'>Sorted by the second accuracy column (the honest one), best first. Both columns are test scores: the first "
                 "may pick a different step for every run by looking at the test set; the second picks the checkpoint on val "
                 "and only then reads the test score.</p></section>")

    # Curves
    parts.append("<section id='curves'><h2>Learning curves</h2>")
    band_text = "min to max over the seeds" if band == "minmax" else "the 95 % CI of the mean over the seeds"
    parts.append(f"<p class='note'>Colour = {'arm: its mean curve over seeds, shaded ' + band_text if by_arm else 'run'} "
                 "(the same in every figure); line style = split (train solid, val dashed, test dash-dot, train_subset dotted)"
                 + (f"; train lines smoothed with EMA {smooth}" if smooth else "") + ".</p>")
    for m in ("loss", "top1", "top5"):
        if f"{m}.png" in figs:
            parts.append(_img(figs[f"{m}.png"], f"{m} curves"))
    parts.append("</section>")

    parts.append("<section id='size'><h2>Accuracy vs. size</h2>")
    parts.append(_img(figs["size.png"], "accuracy against parameters"))
    parts.append("</section>")

    parts.append("<section id='per-arm'><h2>Per arm: per-class accuracy, confusion matrix and calibration</h2>")
    parts.append(_per_arm_html(comp, acolors, per_class=per_class, device=device, limit=eval_limit))
    parts.append("</section>")

    parts.append("<section id='configs'><h2>Config differences</h2>")
    parts.append(_config_diff_html(runs, colors))
    parts.append("</section>")

    parts.append("<section id='runs'><h2>Runs</h2>")
    parts.append(_env_html(runs))
    parts.append("</section></main>")
    parts.append(f"<footer>Generated by classbench {esc(__version__)} on {esc(generated)}. "
                 "Self-contained: figures are embedded, nothing is loaded from the network.</footer>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path: str | os.PathLike, html_text: str) -> Path:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, html_text)
    return p
