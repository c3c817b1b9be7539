"""Published figures beside classbench's arms: ``classbench summary RUNS --published FILE``.

A published figure is a reference project's test top-1 for one of our configs (configs/published.yaml),
with the budget and checkpoint selection the source states.  Each is set beside every arm of RUNS that
ran that config on that dataset (mean ± std over seeds, the 95 % CI, the seeds, the arm's own budget
and selection), so that a gap to the reference shows its size and how much of it the seeds explain.
A figure with no arm says "no data here": nothing in RUNS ran it.

The file (a list of sources, each with the figures it published)::

    - source: seed 004                                      # the table's short name
      cite: a fork of tintn/vision-transformer-from-scratch   # where the figures were published
      budget: 100 epochs of 50,000 images, batch 256       # as the source states it
      selection: final epoch, test                          # how the source picked the checkpoint it scored
      score: last                                           # optional: how classbench scores its arms to match
      figures:                                              # config (relative to this file) -> test top-1 %
        cifar10/mcvit-tiny.yaml: 77.25

``score`` is ``best`` (the default: each run's best.pt, chosen on val, or on test without a val split) or
``last`` (each run's final weights, for a source that scores the end of training), so that each figure
sits beside arms selected the way its source selected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import ClassbenchError
from .comparison import SCORES, Arm

NO_DATA = "no data here"
FORMATS = ("markdown", "json")
SOURCE_KEYS = ("source", "cite", "budget", "selection", "figures")
OPTIONAL_KEYS = ("score",)


@dataclass(frozen=True)
class Figure:
    source: str
    cite: str
    budget: str
    selection: str
    config: str  # as written in the file, e.g. cifar10/mcvit-tiny.yaml
    name: str  # the config's name (its file stem), which a run records
    dataset: str
    top1: float  # a fraction, as classbench stores accuracies
    score: str = "best"  # how classbench scores the arms beside it (comparison.SCORES)


def load_published(path: str | Path) -> list[Figure]:
    """Read and check a published-figures file; every config it names must load."""
    from ..config import load_config

    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ClassbenchError(f"Cannot read the published figures {path}: {e.strerror}.") from e
    except yaml.YAMLError as e:
        raise ClassbenchError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(tree, list) or not tree:
        raise ClassbenchError(f"{path} must be a non-empty list of sources, each with {', '.join(SOURCE_KEYS)}.")
    figures = []
    for i, entry in enumerate(tree, 1):
        where = f"{path}, source {i}"
        if not isinstance(entry, dict) or not set(SOURCE_KEYS) <= set(entry) <= {*SOURCE_KEYS, *OPTIONAL_KEYS}:
            got = ", ".join(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise ClassbenchError(f"{where}: needs exactly the keys {', '.join(SOURCE_KEYS)}, and optionally "
                                  f"{', '.join(OPTIONAL_KEYS)} (got {got}).")
        score = entry.get("score", "best")
        if score not in SCORES:
            raise ClassbenchError(f"{where}: score {score!r} is not one of {', '.join(SCORES)}.")
        if not isinstance(entry["figures"], dict) or not entry["figures"]:
            raise ClassbenchError(f"{where}: figures must map config files to test top-1 percentages.")
        for config, top1 in entry["figures"].items():
            if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not 0 <= top1 <= 100:
                raise ClassbenchError(f"{where}: {config}: {top1!r} is not a top-1 percentage (0 to 100).")
            cfg = load_config(path.parent / config)
            figures.append(Figure(str(entry["source"]), str(entry["cite"]), str(entry["budget"]),
                                  str(entry["selection"]), str(config), cfg.name, cfg.data.name, float(top1) / 100, score))
    return figures


def _budget(arm: Arm) -> str:
    """What the arm trained on and how its test figure was chosen, from its first run's records."""
    s, flat = arm.runs[0].summary, arm.config_flat
    steps, batch, epochs, subset = s.get("steps"), s.get("batch_size"), s.get("epochs"), flat.get("data.train_size")
    parts = []
    if isinstance(steps, int) and isinstance(batch, int):
        parts.append(f"{steps:,} steps × {batch}")
    if isinstance(epochs, (int, float)) and epochs > 0:
        of = f" of a {subset:,}-image subset" if isinstance(subset, int) and subset > 0 else ""
        parts.append(f"({epochs:.3g} epoch{'' if epochs == 1 else 's'}{of})")
    chosen = {"val": "test of the best-val checkpoint", "test": "best test step (no val)"}
    how = "test of the final weights" if arm.score == "last" else chosen.get(s.get("selection_split"), "final checkpoint")
    return f"{' '.join(parts) or 'budget not recorded'}; {how}"


def published_rows(figures: Sequence[Figure], arms: dict[str, Sequence[Arm]]) -> list[dict[str, Any]]:
    """One row per (figure, matching arm), in the file's order; a figure that no arm ran gets one row.

    ``arms`` maps each score a figure asks for to the arms scored that way."""
    rows = []
    for f in figures:
        mine = [a for a in arms[f.score] if a.config == f.name and a.config_flat.get("data.name") == f.dataset]
        base = {"config": f.config.removesuffix(".yaml"), "source": f.source, "published": f.top1,
                "published_budget": f.budget, "published_selection": f.selection, "cite": f.cite}
        if not mine:
            rows.append({**base, "arm": None})
        for a in mine:
            t = a.test
            rows.append({**base, "arm": a.label, "n": a.n, "mean": t.mean, "std": t.std,
                         "ci95": list(t.ci95) if t.ci95 else None, "budget": _budget(a),
                         "difference": t.mean - f.top1, "runs": [str(r.path) for r in a.runs]})
    return rows


COLUMNS = ("config", "source", "published top-1 %", "classbench top-1 % (mean ± std)", "95 % CI", "seeds",
           "classbench budget; selection", "difference, points")
NUMERIC = {"published top-1 %", "classbench top-1 % (mean ± std)", "95 % CI", "seeds", "difference, points"}


def _cells(row: dict[str, Any]) -> list[str]:
    head = [row["config"], row["source"], f"{100 * row['published']:.2f}"]
    if row["arm"] is None:
        return [*head, NO_DATA, "–", "0", "–", "–"]
    mean = f"{100 * row['mean']:.2f}" + ("" if row["std"] is None else f" ± {100 * row['std']:.2f}")
    ci = "n=1: no CI" if row["ci95"] is None else f"{100 * row['ci95'][0]:.2f} – {100 * row['ci95'][1]:.2f}"
    return [*head, mean, ci, str(row["n"]), row["budget"], f"{100 * row['difference']:+.2f}"]


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ClassbenchError(f"--published prints {' or '.join(FORMATS)}, not {fmt}.")


def render_published(rows: list[dict[str, Any]], fmt: str) -> str:
    check_format(fmt)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    lines = ["> Published test top-1 beside classbench's arms (runs that differ only in train.seed) of the same "
             "config and dataset: mean ± std over seeds, the Student-t 95 % CI of the mean, and classbench − published. "
             f"'{NO_DATA}': no run of that config in these records.", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if c in NUMERIC else "---" for c in COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    sources = {r["source"]: r for r in rows}  # each source's budget and selection, once
    lines += ["", "Sources (their budget; how they chose the checkpoint they scored):", ""]
    lines += [f"- {name}: {r['cite']}. {r['published_budget']}; {r['published_selection']}." for name, r in sources.items()]
    return "\n".join(lines) + "\n"
