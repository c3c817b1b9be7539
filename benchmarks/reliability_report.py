"""Run the reliability tests and print (or update) the table of docs/reliability.md.

    python benchmarks/reliability_report.py            # run, print the table
    python benchmarks/reliability_report.py --update   # ... and rewrite it in docs/reliability.md

The tests count what they do (kills survived, bad inputs tried, ...) into a
JSON file named by CLASSBENCH_RELIABILITY_REPORT; the bad-data corpus
(tests/test_bad_data.py) is counted from the test results.  Every number in the
table comes from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
R, D = "tests/test_reliability.py", "tests/test_bad_data.py"
I, L, U = "tests/test_inputs.py", "tests/test_lock.py", "tests/test_untrusted_runs.py"

# guarantee, test-name prefixes (file, name), how to phrase the counts
ROWS = [
    ("1. Crash safety (SIGKILL at any moment)", [(R, "test_sigkill_at_random_moments_loses_nothing")],
     lambda c, t: f"{c.get('kill_kills', 0)} SIGKILLs survived ({c.get('kill_targeted', 0)} aimed inside a checkpoint "
                  f"write, {c.get('kill_mid_write', 0)} in all left a half-written temp file), "
                  f"{c.get('kill_checks', 0)} post-kill checks, {c.get('kill_resumes', 0)} resumes, "
                  f"final metrics = uninterrupted run; files lost: {c.get('kill_files_lost', 'n/a')}"),
    ("2. Exact resume", [(R, "test_last_checkpoint_holds_every_state"),
                         (R, "test_resume_is_exact_at_boundaries_and_with_global_rng"),
                         ("tests/test_trainer.py", "test_resume_from_mid_epoch_is_exact")],
     lambda c, t: f"{c.get('exact_resume_cases', 0)} resume cases bit-exact (epoch boundary, MixStyle, dropout); "
                  "every state key checked"),
    ("3. Clean stops (SIGINT, SIGTERM)", [(R, "test_sigint_and_sigterm_save_a_resumable_checkpoint")],
     lambda c, t: f"{c.get('signal_stops', 0)} real processes stopped by a signal, checkpointed, resumed to the end"),
    ("4. Non-finite loss (stop / skip)", [(R, "test_nonfinite_")],
     lambda c, t: f"{c.get('nonfinite_cases', 0)} injected NaN cases; good checkpoints byte-identical"),
    ("5. Bad configs", [(R, "test_bad_config"), (R, "test_any_"), ("tests/test_config.py", "")],
     lambda c, t: f"{c.get('bad_config_in_process', 0)} bad configs in-process + {c.get('bad_config_subprocess', 0)} "
                  f"through `python -m classbench`, each one clear message and exit 2; "
                  f"{c.get('property_examples', 0)} property examples (plus tests/test_config.py)"),
    ("6. Bad data", [(D, "")],
     lambda c, t: f"{t.get('bad_data_cases', 0)} broken datasets, each a clear DataError; pickle payloads never ran"),
    ("7. Bad checkpoints", [(R, "test_every_torch_load"), (R, "test_bad_checkpoint"), (R, "test_checkpoint_payload")],
     lambda c, t: f"{c.get('bad_checkpoint_cases', 0)} bad checkpoint cases via eval/predict/--resume; "
                  f"{c.get('torch_load_calls_checked', 0)} torch.load call(s), all weights_only=True; "
                  f"payload refused and never ran: {'yes' if c.get('malicious_checkpoint_refused') else 'n/a'}"),
    ("8. Disk full or read-only", [(R, "test_failed_write"), (R, "test_a_really_full_disk"),
                                   (U, "test_disk_full_inside_a_checkpoint_write")],
     lambda c, t: f"{c.get('write_failures_injected', 0)} injected write failures + "
                  f"{c.get('write_failures_real_disk_full', 0) + c.get('write_failures_real_disk_full_checkpoint', 0)} "
                  "on a real full tmpfs (one inside the torch.save of a checkpoint: one line, status failed); previous files "
                  "byte-identical, no temp files left"),
    ("9. Concurrency", [(R, "test_run_folders_never_clash"), (R, "test_two_runs_of_one_config"),
                        (R, "test_readers_survive")],
     lambda c, t: f"{c.get('concurrent_run_dirs', 0)} run folders made at once (threads, processes), "
                  f"{c.get('concurrent_training_runs', 0)} twin runs; {c.get('reader_calls', 0)} summary/plot/report "
                  "calls on live, crashed and partial runs"),
    ("10. Bounded inputs", [(I, "")],
     lambda c, t: f"{c.get('bounded_config_cases', 0)} bad configs/overrides, {c.get('bounded_run_config_cases', 0)} bad "
                  f"stored configs (run folders, checkpoints, --resume), {c.get('bounded_image_cases', 0)} huge or special "
                  f"image files (image folders, predict CLI and API, all-black), {c.get('split_warning_cases', 0)} "
                  "split-warning cases; each one line, exit 2, refused before allocating; alias bombs refused in under "
                  "2 s; `${...}` never reads the environment"),
    ("11. One writer per run folder", [(L, "")],
     lambda c, t: f"{c.get('lock_concurrent_resumes', 0)} resumes started at once (one refused, naming the holder's "
                  f"pid), {c.get('lock_live_run_refusals', 0)} resume(s) of a live run refused with its in-flight "
                  f"checkpoint temp file untouched, {c.get('lock_sigkill_recoveries', 0)} SIGKILL-ed holder(s) "
                  "followed by a writer with no clean-up; readers never wait"),
    ("12. Run folders are untrusted input", [(U, "test_a_"), (U, "test_resume_skips"), (U, "test_names_"),
                                             (U, "test_eval_never")],
     lambda c, t: f"{c.get('untrusted_metrics_records', 0)} hand-edited metrics.jsonl cases (skipped with a warning), "
                  f"{c.get('untrusted_stored_configs', 0)} bad config.yaml refused for --resume, "
                  f"{c.get('untrusted_checkpoints', 0)} crafted checkpoints via eval/predict/export/report/--resume, "
                  f"{c.get('untrusted_data_roots', 0)} run naming another data.root (nothing created or downloaded), "
                  f"{c.get('untrusted_strings', 0)} nasty names through plot/report/summary (mathtext, ANSI, formulas)"),
    ("13. Ctrl-C during start-up", [(U, "test_ctrl_c")],
     lambda c, t: f"{c.get('ctrl_c_at_start_up', 0)} real processes interrupted while starting: exit 130, no traceback"),
]


def run_tests(extra: list[str]) -> tuple[dict, list[dict], float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        counts_path, xml_path = Path(tmp) / "counts.json", Path(tmp) / "junit.xml"
        env = {**os.environ, "CLASSBENCH_RELIABILITY_REPORT": str(counts_path)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml_path}",
               R, I, L, U, D, "tests/test_config.py", "tests/test_trainer.py::test_resume_from_mid_epoch_is_exact", *extra]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        wall = time.perf_counter() - t
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # pytest and every process it started
        cpu = ru.ru_utime + ru.ru_stime
        counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
        tests = []
        if xml_path.exists():
            for case in ET.parse(xml_path).iter("testcase"):
                outcome = "passed"
                for child in case:
                    if child.tag in ("failure", "error"):
                        outcome = "failed"
                    elif child.tag == "skipped":
                        outcome = "skipped"
                cls = case.get("classname", "")
                tests.append({"file": cls.replace(".", "/") + ".py", "name": case.get("name", ""),
                              "time": float(case.get("time", 0)), "outcome": outcome})
        if proc.returncode not in (0, 1):
            sys.exit(f"pytest failed to run (exit {proc.returncode})")
    return counts, tests, wall, cpu


def table(counts: dict, tests: list[dict]) -> str:
    derived = {"bad_data_cases": sum(t["outcome"] == "passed" for t in tests
                                     if t["file"] == D and t["name"].startswith("test_bad_data["))}
    lines = ["| guarantee | proved by | result (counts from the last run) | tests | time |",
             "|---|---|---|---|---|"]
    for title, prefixes, phrase in ROWS:
        mine = [t for t in tests if any(t["file"] == f and t["name"].startswith(p) for f, p in prefixes)]
        names = sorted({f"`{f}::{p}*`" if p else f"`{f}` (all)" for f, p in prefixes})
        passed = sum(t["outcome"] == "passed" for t in mine)
        failed = sum(t["outcome"] == "failed" for t in mine)
        skipped = sum(t["outcome"] == "skipped" for t in mine)
        state = f"{passed} passed" + (f", **{failed} failed**" if failed else "") + (f", {skipped} skipped" if skipped else "")
        lines.append(f"| {title} | {'<br>'.join(names)} | {phrase(counts, derived)} | {state} | "
                     f"{sum(t['time'] for t in mine):.1f} s |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help=f"rewrite the table in {DOC.relative_to(REPO)}")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    counts, tests, wall, cpu = run_tests(args.pytest_args)
    rel = [t for t in tests if t["file"] == R]
    failed = [t for t in tests if t["outcome"] == "failed"]
    header = (f"Last run: {date.today().isoformat()}, `python benchmarks/reliability_report.py --update`, "
              f"{platform.machine()} with {os.cpu_count()} CPU cores (shared), torch CPU. "
              f"load average {load:.1f} at the start (other jobs share the cores). "
              f"{len(tests)} tests in {wall:.0f} s wall, {cpu:.0f} s CPU; tests/test_reliability.py alone: "
              f"{len(rel)} tests, {sum(t['time'] for t in rel):.0f} s wall. Failed: {len(failed)}.")
    text = header + "\n\n" + table(counts, tests) + "\n"
    print(text)
    if args.update:
        doc = DOC.read_text()
        if START not in doc or END not in doc:
            sys.exit(f"{DOC} has no {START} ... {END} markers")
        new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda m: f"{START}\n{text}{END}", doc, flags=re.S)
        DOC.write_text(new)
        print(f"updated {DOC.relative_to(REPO)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
