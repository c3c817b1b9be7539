"""The comparison, computed once: arms, their statistics, the verdicts and the cost.

``summary``, ``compare``, ``plot`` and ``report`` all render one
:class:`Comparison`, so their numbers cannot disagree.

* An **arm** is a set of finished runs whose resolved configs differ only in
  ``train.seed`` (and in the keys that do not change results,
  :data:`classbench.runfolder.HASH_EXCLUDED`).  It is keyed by the config hash
  without the seed and labelled by its config name, plus the config keys that
  tell it apart from other arms of the same name.
* Per arm: n, mean/std/95 % CI/min/max of test top-1 of the val-chosen
  checkpoint (``test_top1`` of summary.json, the honest selection; ``score="last"``:
  of the final weights, for sources that publish the end of training) and of best
  val top-1; params, FLOPs, mean train img/s, mean wall time; with a target,
  the time to reach it.
* **Verdicts**: every arm against the best arm (highest mean test top-1) or
  against a baseline.  Welch's t-test over seeds when both arms hold two or more
  runs; McNemar's exact test on the stored test outcomes when both hold one
  run (that tests the two trained models, not the recipes); the t-test of one
  run against the other arm's seeds when one arm holds one run and the other
  several (Crawford and Howell's, on the other arm's seed spread); Holm's correction
  over all the comparisons made.
* Bad input never raises here: unfinished and crashed runs are left out and
  listed, arms scored on different images are not compared (with the reason),
  a one-run arm has no CI.  :meth:`Comparison.require_two_arms` is the one check
  that stops a command (exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import runfolder
from ..config import flatten
from ..errors import ClassbenchError
from ..host import timing_setups
from . import stats
from .runs import Run, is_number

#: The difference the power sentence is about: half a point of top-1.
DETECT = 0.005
#: The power the sentence asks for.
POWER = 0.8

#: What an arm's test figure is for each run.  ``best``: test top-1 of best.pt (summary.json's test_top1: the
#: checkpoint chosen on val, or on test for a recipe without a val split).  ``last``: test top-1 of the final
#: weights, the run's test evaluation at its last step in metrics.jsonl, which is what a source that reports
#: "after the last epoch" publishes.  Only per-run figures exist for it (the stored per-image test outcomes are
#: best.pt's), so two one-run arms cannot be tested against each other at ``last``.
SCORES = ("best", "last")

#: What decides which images an arm is scored on (arms that differ here are not compared): the dataset
#: keys that matter for each dataset, then the hold-out, then the test size.
DATASET_KEYS = {"imagefolder": ("data.root",), "cifar100": ("data.labels",),
                "synthetic": ("data.num_classes", "data.synthetic_size", "data.image_size")}
SPLIT_KEYS = ("data.val_size", "data.split_seed")
TEST_SIZE_KEY = "data.test_size"

#: Differences that never label an arm (the seed is the arm's axis; the name is already in the label).
_LABEL_IGNORED = {"name", "train.seed", *runfolder.HASH_EXCLUDED}


# ---------------------------------------------------------------- formatting shared by every renderer
def fmt_points(*fractions: float) -> list[str]:
    """Fractions as percentage points, one precision for all: 2 decimals when any is below one point."""
    pts = [100 * f for f in fractions]
    small = any(0 < abs(p) < 0.95 for p in pts)
    return [f"{p:.2f}" if small else f"{p:.1f}" for p in pts]


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def _p_clause(name: str, p: float) -> str:
    text = fmt_p(p)
    return f"{name} p {text}" if text.startswith("<") else f"{name} p = {text}"


# ---------------------------------------------------------------- arms
@dataclass
class TimeToTarget:
    target: float
    mean_s: float | None  # mean over the seeds that reached the target
    reached: int
    n: int


@dataclass
class Arm:
    key: str  # the config hash without the seed
    label: str
    config: str  # the config name
    runs: list[Run]
    config_flat: dict[str, Any]  # the resolved config of its first run, flattened
    test: stats.Description  # the runs' test figures (values) at the arm's score
    val: stats.Description | None  # best_val_top1 over the runs that have one
    params: float | None
    flops: float | None
    train_img_per_s: float | None
    wall_time_s: float | None
    time_to_target: TimeToTarget | None = None
    outcomes: dict[str, dict | None] = field(default_factory=dict)  # run path -> stored test outcomes (None: none or damaged)
    notes: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # each run's test top-1 at the arm's score, in the order of runs
    score: str = "best"  # one of SCORES

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def test_values(self) -> list[float]:
        return list(self.values)

    @property
    def tta(self) -> bool:
        return bool(self.config_flat.get("eval.tta"))

    @property
    def selections(self) -> set[str]:
        """The splits its runs chose best.pt on: val, or test for a recipe without a val split."""
        return {selection_of(r) for r in self.runs}

    @property
    def representative(self) -> Run:
        """The median seed (the lower of the two middle ones): typical, not the luckiest."""
        ranked = sorted(zip(self.values, self.runs), key=lambda vr: (vr[0], vr[1].rel))
        return ranked[(len(ranked) - 1) // 2][1]

    def test_count(self) -> int | None:
        """Test images scored, from the stored test outcomes (None when no run has them)."""
        counts = {p["correct"].size for p in self.outcomes.values() if p is not None}
        return counts.pop() if len(counts) == 1 else None

    def to_json(self) -> dict[str, Any]:
        """The ``summary --by arm --format json`` record (fractions, not percentages)."""
        t = self.test
        return {
            "arm": self.label, "config": self.config, "n": self.n, "runs": [str(r.path) for r in self.runs],
            "mean": t.mean, "std": t.std, "ci95": list(t.ci95) if t.ci95 else None, "min": t.min, "max": t.max,
            "metric": "test_top1", "score": self.score,
            "best_val_top1": None if self.val is None else {
                "n": self.val.n, "mean": self.val.mean, "std": self.val.std,
                "ci95": list(self.val.ci95) if self.val.ci95 else None, "min": self.val.min, "max": self.val.max},
            "params": self.params, "flops": self.flops,
            "train_img_per_s": self.train_img_per_s, "wall_time_s": self.wall_time_s,
            "time_to_target": None if self.time_to_target is None else {
                "target": self.time_to_target.target, "mean_s": self.time_to_target.mean_s,
                "reached": self.time_to_target.reached, "n": self.time_to_target.n},
            "tta": self.tta, "test_count": self.test_count(), "selection": sorted(self.selections), "key": self.key,
            "notes": list(self.notes),
        }


@dataclass
class Excluded:
    run: str  # path relative to the runs folder
    status: str
    reason: str


@dataclass
class Verdict:
    a: Arm
    b: Arm
    comparable: bool
    result: stats.TestResult | None
    p_adjusted: float | None = None
    sentence: str = ""
    reason: str = ""  # why there is no test (not comparable, or not testable)

    @property
    def diff(self) -> float | None:
        if not self.comparable:
            return None
        return self.result.diff if self.result else self.a.test.mean - self.b.test.mean

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < stats.ALPHA

    def to_json(self) -> dict[str, Any]:
        """The ``compare --format json`` record."""
        r = self.result
        return {
            "a": self.a.label, "b": self.b.label, "n_a": self.a.n, "n_b": self.b.n,
            "diff": self.diff, "ci95": list(r.ci95) if r and r.ci95 else None,
            "p_value": r.p_value if r else None, "p_adjusted": self.p_adjusted,
            "test": r.test if r else None, "verdict": self.sentence,
            "significant": self.significant, "comparable": self.comparable,
            "df": r.df if r else None, "discordant": list(r.discordant) if r and r.discordant else None,
        }


@dataclass
class Comparison:
    arms: list[Arm]  # best first (mean test top-1, the honest selection)
    verdicts: list[Verdict]
    reference: Arm | None
    baseline: bool  # the reference was chosen with --baseline
    excluded: list[Excluded]
    notes: list[str]
    target: float | None = None
    score: str = "best"  # one of SCORES: what every arm's test figure is

    @property
    def by_arm_default(self) -> bool:
        """Renderers show arms by default when any arm has two or more runs, and always at a score other than
        best: a run's row has best.pt's figure only."""
        return self.score != "best" or any(a.n >= 2 for a in self.arms)

    def arm(self, label: str) -> Arm:
        for a in self.arms:
            if a.label == label:
                return a
        raise KeyError(label)

    def arm_of(self, run: Run) -> Arm | None:
        for a in self.arms:
            if any(r.path == run.path for r in a.runs):
                return a
        return None

    def require_two_arms(self) -> None:
        """Raise the exit-2 error of a comparison with nothing to compare."""
        if len(self.arms) < 2:
            found = (f"{len(self.arms)} arm ({self.arms[0].label}, {self.arms[0].n} run(s))" if self.arms else "no arm")
            left = f"; {len(self.excluded)} unfinished or crashed run(s) left out" if self.excluded else ""
            raise ClassbenchError(
                f"Fewer than two arms to compare: found {found}{left}. An arm is a set of finished runs whose "
                "configs differ only in train.seed; train a second recipe (e.g. `classbench sweep CONFIG --set "
                "model.name=a,b --seeds 3`) or point at a folder that holds both."
            )
        if not any(v.comparable for v in self.verdicts):
            why = "; ".join(f"{v.a.label if v.b is self.reference else v.b.label}: {v.reason}" for v in self.verdicts)
            raise ClassbenchError(f"No two arms can be compared (they are scored on different images): {why}.")

    def headline(self) -> list[str]:
        """The verdict sentences, the most decisive first: what heads summary, compare and report."""
        return [v.sentence for v in self.verdicts]

    @property
    def selections(self) -> set[str]:
        return set().union(*(a.selections for a in self.arms))

    @property
    def scored_as(self) -> str:
        """What the test figures are, in words: the honest val-chosen checkpoint unless an arm has no val split."""
        if self.score == "last":
            return "test top-1 of the final weights, at each run's last step, as sources that report the end of training do"
        kinds = self.selections
        if kinds <= {"val"}:
            return "test top-1 of the val-chosen checkpoint"
        if kinds == {"test"}:
            return "test top-1 of the test-chosen checkpoint: no val split, as the recipes' source does; optimistic"
        return (f"test top-1 of each run's {runfolder.BEST_PT}, chosen on val, or on test (optimistic) where the "
                "recipe has no val split")

    def arms_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.arms]

    def verdicts_json(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.verdicts]


# ---------------------------------------------------------------- building
@functools.lru_cache(maxsize=1)
def _defaults() -> str:
    from ..config import Config, to_dict

    return json.dumps(to_dict(Config()))


def _with_defaults(tree: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for k, v in tree.items():
        out[k] = _with_defaults(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _resolved_flat(run: Run) -> dict[str, Any]:
    """The run's config with today's defaults filled in where it lacks a key (runs written before the key
    existed still match newer ones), flattened.  Plain dict work: building a typed Config per run costs
    half a second in OmegaConf."""
    return flatten(_with_defaults(run.config, json.loads(_defaults())))


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def arm_key(flat: dict[str, Any]) -> str:
    """The config hash without the seed: equal for the seeds of one recipe."""
    return runfolder.config_hash(_unflatten({k: v for k, v in flat.items() if k != "train.seed"}))


def final_test_top1(run: Run) -> float | None:
    """Test top-1 of the run's final weights: its test evaluation at its last step (None when it has none)."""
    records = run.records("test", "top1")
    steps = (run.summary or {}).get("steps")
    if not records or not is_number(steps) or records[-1]["step"] != steps:
        return None
    return float(records[-1]["top1"])


def test_figure(run: Run, score: str) -> float | None:
    """The run's test top-1 at ``score`` (see SCORES), or None when it has none."""
    if score == "last":
        return final_test_top1(run)
    value = (run.summary or {}).get("test_top1")
    return float(value) if is_number(value) else None


def _exclusion(run: Run, figure: float | None, score: str) -> str | None:
    """Why a run, whose test figure at ``score`` is ``figure``, cannot be part of an arm, or None."""
    if run.status != "finished":
        msg = run.status_info.get("message") if run.status_info else None
        return {"running": "still running", "crashed": f"crashed (no {runfolder.SUMMARY})"}.get(run.status, run.status) + (f": {msg}" if msg else "")
    if run.summary is None:
        return f"finished but {runfolder.SUMMARY} is missing or unreadable"
    if figure is None and score == "last":
        return (f"no test evaluation at its last step in {runfolder.METRICS}, which --score last reads "
                "(eval.splits held no test split)")
    if figure is None:
        return f"no test score in {runfolder.SUMMARY} (the run had no test split)"
    if not run.config:
        return f"{runfolder.CONFIG} is missing or unreadable, so its arm is unknown"
    return None


def selection_of(run: Run) -> str:
    """The split a finished run chose best.pt on (summary.json's selection_split; older runs: val)."""
    return str((run.summary or {}).get("selection_split") or "val")


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if is_number(v)]
    return sum(vals) / len(vals) if vals else None


def _first(values: Sequence[Any]) -> float | None:
    vals = [v for v in values if is_number(v)]
    return float(vals[0]) if vals else None


def _time_to_target(runs: Sequence[Run], target: float) -> TimeToTarget:
    times = []
    for r in runs:
        for rec in r.records("val", "top1"):
            if float(rec["top1"]) >= target and is_number(rec.get("time")):
                times.append(float(rec["time"]))
                break
    return TimeToTarget(target, sum(times) / len(times) if times else None, len(times), len(runs))


def _labels(groups: dict[str, list[tuple[Run, dict, float]]]) -> dict[str, str]:
    """Config name, plus the config keys in which the arms of the same name differ."""
    by_name: dict[str, list[str]] = {}
    for key, members in groups.items():
        by_name.setdefault(members[0][0].name, []).append(key)
    labels: dict[str, str] = {}
    for name, keys in by_name.items():
        if len(keys) == 1:
            labels[keys[0]] = name
            continue
        flats = [groups[k][0][1] for k in keys]
        differing = _differing_keys(flats)
        for key, flat in zip(keys, flats):
            parts = [f"{k}={_fmt_value(flat.get(k, '(unset)'))}" for k in differing]
            labels[key] = " ".join([name, *parts])
    used: dict[str, int] = {}
    for key in sorted(labels, key=lambda k: labels[k]):  # still equal (hash-only differences): number them
        base = labels[key]
        used[base] = used.get(base, 0) + 1
        if used[base] > 1:
            labels[key] = f"{base} #{used[base]}"
    return labels


def _differing_keys(flats: list[dict]) -> list[str]:
    """The config keys, seed and run-only keys aside, whose values differ between these resolved configs."""
    all_keys = sorted({k for f in flats for k in f} - _LABEL_IGNORED)
    return [k for k in all_keys if len({_fmt_value(f.get(k, "(unset)")) for f in flats}) > 1]


def _split_config_notes(arms: list[Arm]) -> list[str]:
    """A note per config whose runs fall into several arms when one of those arms holds a single run.

    That is how a seed added later with other overrides looks (the first runs with train.precision=fp32,
    the new one without): it joins no arm, and a verdict on it would compare recipes, not seeds.
    """
    by_name: dict[str, list[Arm]] = {}
    for arm in arms:
        by_name.setdefault(arm.config, []).append(arm)
    notes = []
    for name, group in sorted(by_name.items()):
        if len(group) < 2 or all(a.n >= 2 for a in group):
            continue
        keys = _differing_keys([a.config_flat for a in group])
        notes.append(
            f"config {name} makes {len(group)} arms, which differ in {', '.join(keys) or 'keys not shown'}: "
            "runs of one config that differ in any key but the seed are separate arms. If a lone run was meant as "
            "another seed of an arm, train it again from one of that arm's stored configs, which hold every "
            f"override: `classbench train RUN/{runfolder.CONFIG} train.seed=N`"
        )
    return notes


def _fmt_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def build_arms(runs: Sequence[Run], *, target: float | None = None,
               score: str = "best") -> tuple[list[Arm], list[Excluded]]:
    """Group finished runs into arms (best mean test top-1 at ``score`` first); list the runs left out."""
    if score not in SCORES:
        raise ClassbenchError(f"Unknown score {score!r}: use one of {', '.join(SCORES)}.")
    excluded: list[Excluded] = []
    groups: dict[str, list[tuple[Run, dict, float]]] = {}  # arm key -> (run, its resolved config, its test figure)
    for run in runs:
        figure = test_figure(run, score) if run.status == "finished" else None
        why = _exclusion(run, figure, score)
        if why:
            excluded.append(Excluded(run.rel, run.status, why))
            continue
        flat = _resolved_flat(run)
        groups.setdefault(arm_key(flat), []).append((run, flat, figure))
    labels = _labels(groups)
    arms = []
    for key, members in groups.items():
        members.sort(key=lambda m: (m[1].get("train.seed", 0) if is_number(m[1].get("train.seed")) else 0, m[0].rel))
        arm_runs = [m[0] for m in members]
        sums = [r.summary for r in arm_runs]
        values = [m[2] for m in members]
        best_vals = [float(s["best_val_top1"]) for s in sums if is_number(s.get("best_val_top1"))]
        arm = Arm(
            key=key, label=labels[key], config=arm_runs[0].name, runs=arm_runs, config_flat=members[0][1],
            test=stats.describe(values), values=values, score=score,
            val=stats.describe(best_vals) if best_vals else None,
            params=_first([s.get("params") for s in sums]), flops=_first([s.get("flops") for s in sums]),
            train_img_per_s=_mean([s.get("train_img_per_s") for s in sums]),
            wall_time_s=_mean([s.get("wall_time_s") for s in sums]),
            time_to_target=_time_to_target(arm_runs, target) if target is not None else None,
        )
        seeds = [m[1].get("train.seed") for m in members]
        if len(set(map(str, seeds))) < len(seeds):
            arm.notes.append(f"arm {arm.label}: several runs share a seed ({', '.join(map(str, seeds))}); "
                             "they count as separate samples but are not independent draws")
        for r in arm_runs:
            try:
                arm.outcomes[str(r.path)] = runfolder.read_test_outcomes(r.path)
            except ClassbenchError as e:
                arm.outcomes[str(r.path)] = None
                arm.notes.append(str(e))
        setups = sorted({m for r in arm_runs for m in timing_setups(r.env)})
        if len(setups) > 1:  # a mean of two set-ups' speeds describes neither (a resumed run's own img/s may mix two)
            arm.notes.append(f"arm {arm.label}: its runs were timed on {len(setups)} different set-ups ({'; '.join(setups)}); "
                             "its img/s and wall time are means across them")
        counts = sorted({p["correct"].size for p in arm.outcomes.values() if p is not None})
        if len(counts) > 1:
            arm.notes.append(f"arm {arm.label}: its runs were scored on different numbers of test images "
                             f"({', '.join(map(str, counts))}); the data changed between them")
        arms.append(arm)
    arms.sort(key=lambda a: (-a.test.mean, a.label))
    return arms, excluded


def _cohort_difference(a: Arm, b: Arm) -> str | None:
    """Why two arms are not scored on the same val and test images, or None when they are."""
    fa, fb = a.config_flat, b.config_flat
    keys = ["data.name", *DATASET_KEYS.get(fa.get("data.name"), ()), *SPLIT_KEYS]
    reasons = [f"{k} {_fmt_value(fa.get(k))} vs {_fmt_value(fb.get(k))}" for k in keys if fa.get(k) != fb.get(k)]
    ca, cb = a.test_count(), b.test_count()
    if ca is not None and cb is not None:
        if ca != cb:
            reasons.append(f"test size {ca} vs {cb} images")
    elif fa.get(TEST_SIZE_KEY) != fb.get(TEST_SIZE_KEY):
        reasons.append(f"{TEST_SIZE_KEY} {fa.get(TEST_SIZE_KEY)} vs {fb.get(TEST_SIZE_KEY)}")
    if not reasons:
        return None
    return f"{a.label} and {b.label} are scored on different images ({'; '.join(reasons)})"


def _paired_outcomes(a: Arm, b: Arm) -> tuple[Any, Any] | str:
    """(correct_a, correct_b) on the same test images from the stored test outcomes, or why not."""
    pa, pb = a.outcomes.get(str(a.runs[0].path)), b.outcomes.get(str(b.runs[0].path))
    missing = [arm.runs[0].rel for arm, p in ((a, pa), (b, pb)) if p is None]
    if missing:
        return (f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no stored test outcomes "
                f"({runfolder.TEST_OUTCOMES}; runs trained before classbench stored them), so McNemar's test "
                "is not possible")
    if pa["correct"].size != pb["correct"].size or pa["labels_sha256"] != pb["labels_sha256"]:
        return "their stored test outcomes are not for the same test images in the same order, so McNemar's test is not possible"
    return pa["correct"], pb["correct"]


def _test(a: Arm, b: Arm) -> stats.TestResult | str:
    """The test of a against b, or why there is none."""
    if a.n >= 2 and b.n >= 2:
        return stats.welch(a.test_values, b.test_values)
    if a.n == 1 and b.n == 1:
        if a.score == "last":
            return ("one run per arm, and McNemar's test needs the per-image test results, which the records "
                    f"store for {runfolder.BEST_PT} only, not for the final weights (compare with --score best, or "
                    "train more seeds)")
        paired = _paired_outcomes(a, b)
        if isinstance(paired, str):
            return paired + "; with one run per arm there is no seed spread for Welch's t-test either"
        return stats.mcnemar(*paired)
    # One run against several seeds: the one run is tested against the other arm's seed spread.
    if a.n == 1:
        return stats.single_run_t(a.test_values[0], b.test_values)
    r = stats.single_run_t(b.test_values[0], a.test_values)
    ci = None if r.ci95 is None else (-r.ci95[1], -r.ci95[0])
    return dataclasses.replace(r, diff=-r.diff, ci95=ci, statistic=None if r.statistic is None else -r.statistic)


def _seeds_phrase(a: Arm, b: Arm) -> str:
    return f"{a.n} seeds each" if a.n == b.n else f"{a.n} and {b.n} seeds"


def _sentence(v: Verdict, *, family: int) -> str:
    a, b, r = v.a.label, v.b.label, v.result
    if not v.comparable:
        return f"not compared: {v.reason}."
    if r is None or r.p_value is None:
        (d,) = fmt_points(v.diff)
        why = v.reason or r.note
        return f"no test of {a} against {b} ({a} − {b} = {d} points): {why}."
    d, lo, hi = fmt_points(r.diff, *r.ci95) if r.ci95 else (*fmt_points(r.diff), "–", "–")
    holm = f", {_p_clause('Holm', v.p_adjusted)}" if family > 1 else ""
    if r.test == "welch":
        stat = f"{_p_clause('Welch', r.p_value)}{holm}; {_seeds_phrase(v.a, v.b)}"
    elif r.test == "single-run t":
        one, many = (v.a, v.b) if v.a.n == 1 else (v.b, v.a)
        stat = (f"{_p_clause('single-run t', r.p_value)}{holm}; 1 run against {many.n} seeds, assuming "
                f"{one.label} varies over seeds as {many.label} does")
    else:
        n01, n10 = r.discordant
        stat = (f"{_p_clause('McNemar exact', r.p_value)}{holm}; {r.count} paired test images, "
                f"{n01} right only for {a} and {n10} only for {b}")
    ci = f"95 % CI {lo} to {hi}; {stat}"
    if v.significant:
        (mag,) = fmt_points(abs(r.diff))
        word = "beats" if r.diff > 0 else "trails"
        text = f"{a} {word} {b} by {mag} points ({ci})"
    else:
        text = f"no significant difference between {a} and {b} ({a} − {b} = {d} points, {ci})"
    if r.test == "mcnemar":
        return text + ". This tests the two trained models, not the recipes: train more seeds per arm to compare the recipes."
    if not v.significant:
        spread = stats.pooled_spread([v.a.test_values, v.b.test_values])
        sd, df = spread if spread else (None, 0)
        n = stats.seeds_for_power(sd, DETECT, POWER) if sd is not None else None
        det, pw = f"{100 * DETECT:g}", f"{100 * POWER:g} %"
        if n is None:
            text += f"; even 100,000 seeds per arm would not detect a {det}-point difference with {pw} power"
        else:
            text += f"; about {n} seeds per arm would detect a {det}-point difference with {pw} power"
        if sd is not None:
            # The seed count is only as good as the spread it rests on, and a spread from two or three seeds
            # is rough (one degree of freedom puts the true std anywhere from about half to 32 times it, at 95 %).
            (std,) = fmt_points(sd)
            text += (f" if the seeds spread as these do (pooled std {std} points, {df} degree"
                     f"{'' if df == 1 else 's'} of freedom)")
    return text + "."


def _pick_reference(arms: list[Arm], baseline: str | None) -> Arm:
    if baseline is None:
        return arms[0]
    exact = [a for a in arms if a.label == baseline]
    named = [a for a in arms if a.config == baseline]
    if exact:
        return exact[0]
    if len(named) == 1:
        return named[0]
    labels = ", ".join(repr(a.label) for a in arms)
    if named:
        raise ClassbenchError(f"--baseline {baseline!r} names {len(named)} arms; give one label exactly: {labels}.")
    raise ClassbenchError(f"--baseline {baseline!r} is not an arm here. Arms: {labels}.")


def build_comparison(runs: Sequence[Run], *, baseline: str | None = None, target: float | None = None,
                     score: str = "best") -> Comparison:
    """Everything summary, compare, plot and report show, computed once from the run folders."""
    arms, excluded = build_arms(runs, target=target, score=score)
    notes = [n for a in arms for n in a.notes] + _split_config_notes(arms)
    if len(arms) < 2:
        return Comparison(arms, [], arms[0] if arms else None, baseline is not None, excluded, notes, target, score)
    ref = _pick_reference(arms, baseline)
    verdicts = []
    for other in arms:
        if other is ref:
            continue
        a, b = (other, ref) if baseline is not None else (ref, other)  # without a baseline: the best arm is a
        why = _cohort_difference(a, b)
        if why:
            verdicts.append(Verdict(a, b, False, None, reason=why))
            continue
        result = _test(a, b)
        if isinstance(result, str):
            verdicts.append(Verdict(a, b, True, None, reason=result))
        else:
            verdicts.append(Verdict(a, b, True, result, reason=result.note))
    tested = [v for v in verdicts if v.result is not None and v.result.p_value is not None]
    for v, p in zip(tested, stats.holm([v.result.p_value for v in tested])):
        v.p_adjusted = p
    for v in verdicts:
        v.sentence = _sentence(v, family=len(tested))
    # Significant first, then by p-value, then untestable, then not comparable: the most decisive heads the page.
    verdicts.sort(key=lambda v: (not v.comparable, v.p_adjusted is None, not v.significant,
                                 v.p_adjusted if v.p_adjusted is not None else 1.0, -(abs(v.diff or 0.0))))
    return Comparison(arms, verdicts, ref, baseline is not None, excluded, notes, target, score)


# ---------------------------------------------------------------- text renderings shared by the commands
ARM_COLUMNS = ("arm", "n", "test top-1 % (mean ± std)", "95 % CI", "min – max", "best val top-1 % (mean)",
               "params", "FLOPs", "img/s", "wall time")


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def arm_cells(arm: Arm, target: float | None = None) -> dict[str, str]:
    """The human-readable cells of one arm row (markdown, text and HTML show the same); accuracies in %."""
    from .summary import fmt_count, fmt_duration, fmt_rate

    t = arm.test
    cells = {
        "arm": arm.label,
        "n": str(arm.n),
        ARM_COLUMNS[2]: _pct(t.mean) + ("" if t.std is None else f" ± {_pct(t.std)}"),
        "95 % CI": "n=1: no CI" if t.ci95 is None else f"{_pct(t.ci95[0])} – {_pct(t.ci95[1])}",
        "min – max": f"{_pct(t.min)} – {_pct(t.max)}",
        ARM_COLUMNS[5]: "–" if arm.val is None else _pct(arm.val.mean),
        "params": fmt_count(arm.params),
        "FLOPs": fmt_count(arm.flops),
        "img/s": fmt_rate(arm.train_img_per_s),
        "wall time": fmt_duration(arm.wall_time_s),
    }
    if target is not None:
        tt = arm.time_to_target
        cells[target_column(target)] = (f"{fmt_duration(tt.mean_s)} ({tt.reached}/{tt.n} seeds)" if tt and tt.mean_s is not None
                                        else f"not reached (0/{arm.n} seeds)")
    return cells


def target_column(target: float) -> str:
    return f"time to val {100 * target:g}%"


def arm_columns(target: float | None) -> list[str]:
    return [*ARM_COLUMNS, *([target_column(target)] if target is not None else [])]


def excluded_lines(comp: Comparison) -> list[str]:
    return [f"left out {e.run}: {e.reason}" for e in comp.excluded]


def arms_markdown(comp: Comparison) -> str:
    cols = arm_columns(comp.target)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "arm" else "---:" for c in cols) + "|"]
    for arm in comp.arms:
        cells = arm_cells(arm, comp.target)
        lines.append("| " + " | ".join(cells[c].replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def verdict_markdown(comp: Comparison) -> str:
    """The verdict block that heads the summary markdown and `compare --format markdown`."""
    if not comp.verdicts:
        return ""
    ref = comp.reference.label if comp.reference else "–"
    how = f"against the baseline {ref}" if comp.baseline else f"against the best arm, {ref}"
    out = [f"**Verdict** ({how}; {comp.scored_as}):", ""]
    out += [f"- {v.sentence}" for v in comp.verdicts]
    return "\n".join(out) + "\n"
