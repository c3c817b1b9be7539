"""`classbench compare`: which arm won, by how much, and whether the difference is real."""

from __future__ import annotations

import argparse
import json
import sys

from .summary import add_run_selection, add_score

# No percent sign in HELP: argparse %-formats a sub-command's help.
HELP = ("Compare arms (a recipe's runs over seeds): difference of mean test top-1 with its confidence interval, "
        "Welch's t-test (McNemar's with one run per arm; one run against several seeds: Crawford and Howell's t-test), "
        "Holm-corrected, as a plain sentence.")

FORMATS = ("text", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_selection(parser)
    parser.add_argument("--baseline", metavar="ARM",
                        help="compare every arm with this one (an arm label, or a config name with one arm); "
                             "default: with the best arm")
    add_score(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:  # the first column (the arm) left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)]) + "\n"


def render(comp, fmt: str) -> str:
    from ..compare.comparison import arm_cells, arm_columns, arms_markdown, excluded_lines, verdict_markdown

    if fmt == "json":
        return json.dumps(comp.verdicts_json(), indent=2) + "\n"
    tail = [*excluded_lines(comp), *comp.notes]
    if fmt == "markdown":
        out = [verdict_markdown(comp), arms_markdown(comp)]
        if tail:
            out.append("\n".join(f"> {t}" for t in tail) + "\n")
        return "\n".join(out)
    ref = comp.reference.label
    out = [f"Against {'the baseline' if comp.baseline else 'the best arm'} {ref} ({comp.scored_as}):"]
    out += [f"  * {v.sentence}" for v in comp.verdicts]
    cols = arm_columns(comp.target)
    out += ["", _text_table(cols, [[arm_cells(a, comp.target)[c] for c in cols] for a in comp.arms]).rstrip("\n")]
    out += tail
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    from ..compare.comparison import build_comparison, excluded_lines
    from ..compare.runs import load_runs
    from ..io import write_output

    runs = load_runs(args.runs_dir, filter=args.filter, group=args.group, groups_file=args.groups_file)
    comp = build_comparison(runs, baseline=args.baseline, score=args.score or "best")
    comp.require_two_arms()
    text = render(comp, args.format)
    if args.format == "json":  # the JSON is a list of comparisons; what was left out goes to stderr
        for line in [*excluded_lines(comp), *comp.notes]:
            print(f"warning: {line}", file=sys.stderr)
    write_output(args.output, text, f"{len(comp.verdicts)} comparisons")
    return 0
