"""Every CPU figure that issues #19 and #16 still lack, in one run on a quiet machine.

    CLASSBENCH_DATA=/path/to/datasets python benchmarks/quiet_suite.py --out /tmp/quiet
    python benchmarks/quiet_suite.py --out /tmp/quiet-smoke --smoke     # the plumbing only, < 1 min

Parts (in this order; ``--only`` picks some, by name or letter):

* ``a-peak`` (#19 goal 2): ResNet-18 training at batch 256, at the precision ``auto`` picks, against
  the matmul peak measured in the same process at that precision (``classbench bench ... --matmul-peak``),
  as a % of peak; several fresh processes, so the spread shows.
* ``b-profile`` (#19 goal 2, "where the time goes"): ``torch.profiler`` over the trainer's own
  loop (``Trainer.fit`` on configs/cifar10/resnet18.yaml at batch 256, real data), each op's
  self time put into convolutions, batch norm, ReLU and residual adds, head/pool/loss, casts and
  copies, optimizer, data/augment and other; and the split into data / forward / backward / optimizer.
* ``c-reference-loop`` (#19 goal 3): ``benchmarks/reference_loop.py`` for resnet18, resnet20 and
  mcvit_tiny at batch 256 on real data, interleaved repeats, median ratio.
* ``d-model-speeds`` (#16): the speed cells of docs/models.md that say n/m, with the command
  docs/models.md names (``classbench bench --mode both --batch-size 64 --steps 3 --warmup 1 --matmul-peak``),
  repeated in fresh processes; the median is the cell, the range is its spread.
* ``e-fast-recipe`` (#19 goal 1): airbench_net (configs/cifar10/fast.yaml) training and evaluation
  throughput, and a short run of the trainer itself, to state a 10-minute budget in epochs.
* ``f-seed002-cost`` (#16, #21): what one run of seed 002's budget (5,000 steps at batch 128, an
  evaluation every 100 steps) costs here, per config of its suite.

Each part writes ``<part>.json`` (raw numbers) and ``<part>.md`` (tables ready to paste, headed by
the commands, the machine, the date and the load average before and after); ``summary.md`` is
every part's markdown, ``suite.json`` everything, ``logs/`` each child's output.  Every
measurement runs in a child process, so that no part inherits another's allocator setting,
thread pools or warm caches.  A part that fails is reported and the suite goes on (exit status 1).

``--smoke`` runs the same code at tiny sizes on synthetic data (no CIFAR needed): its figures
mean nothing; it checks that a quiet-machine run will produce every table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from classbench.io import atomic_write_json, atomic_write_text  # noqa: E402

# The SIMD/matrix flags of /proc/cpuinfo that decide the kernels torch picks on a CPU.
SIMD_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx_vnni|avx512\w*|amx\w*)$")
# docs/models.md's speed column: the command and the rows that say n/m there (the fidelity work changed them).
MODELS_MD_BENCH = ["--mode", "both", "--batch-size", "64", "--steps", "3", "--warmup", "1", "--matmul-peak"]
NM_MODELS = ["cvit_tiny", "mcvit_tiny", "vit_12x256_p8", "vit_aux_3x4x256_p8", "vitn_12x256_p8",
             "vitn_12x256_p8_dm", "vitn_12x256_p8_lt", "vitn_12x256_p8_ltv", "vitn_12x256_p8_ra"]
REFERENCE_LOOP_TARGETS = {"resnet18": 3.0, "resnet20": 2.0, "mcvit_tiny": 2.0}  # issue #19, goal 3
PEAK_TARGET_PCT = 40.0  # issue #19, goal 2
FAST_BUDGET_S = 600  # issue #19, goal 1: 10 minutes
DATA_MARK = "classbench.data"  # the profiler range around each batch the trainer's loader makes
# Throughput runs of a few steps: the recipes' warm-up and milestones lie beyond them (a config error), and an
# lr schedule costs one float per step, so they run at a constant lr.
CONSTANT_LR = ["sched.name=constant", "sched.warmup_steps=0", "sched.milestones=[]"]


@dataclass
class Sizes:
    """How much each part measures: the quiet-machine budget (~20 min on a 2-core AVX2 EPYC) or --smoke."""

    smoke: bool
    repeats: int = 3
    peak: list[str] = field(default_factory=lambda: ["--batch-size", "256", "--steps", "3", "--warmup", "1"])
    profile: list[str] = field(default_factory=lambda: ["--batch-size", "256", "--warmup", "1", "--steps", "3"])
    # per model: the tutorial loop is ~8 s a step for resnet18 here, ~1 s for the small two
    loop: dict[str, list[str]] = field(default_factory=lambda: {
        "resnet18": ["--steps", "3", "--warmup", "1"],
        "resnet20": ["--steps", "8", "--warmup", "2"],
        "mcvit_tiny": ["--steps", "8", "--warmup", "2"]})
    loop_common: list[str] = field(default_factory=lambda: ["--batch-size", "256", "--data", "real"])
    speeds: list[str] = field(default_factory=lambda: list(MODELS_MD_BENCH))
    speed_models: list[str] = field(default_factory=lambda: list(NM_MODELS))
    fast_bench: list[str] = field(default_factory=lambda: ["--batch-size", "512", "--steps", "3", "--warmup", "1"])
    fast_run: list[str] = field(default_factory=lambda: ["train.steps=10"])
    cost: list[str] = field(default_factory=lambda: ["--batch-size", "128", "--steps", "3", "--warmup", "1"])
    cost_configs: list[str] | None = None  # None: every seed-002 config of configs/cifar10
    matmul: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)  # overrides that replace real CIFAR-10 (smoke)
    timeout_s: int = 1200

    @classmethod
    def for_mode(cls, smoke: bool, repeats: int | None) -> "Sizes":
        if not smoke:
            s = cls(smoke=False)
        else:
            tiny = ["--batch-size", "4", "--steps", "1", "--warmup", "0"]
            s = cls(smoke=True, repeats=1, peak=list(tiny), profile=["--batch-size", "8", "--warmup", "0", "--steps", "1"],
                    loop={"resnet20": ["--steps", "1", "--warmup", "0"]},
                    loop_common=["--batch-size", "16", "--data", "synthetic", "--workers", "0"],
                    speeds=["--mode", "both", *tiny, "--matmul-peak"], speed_models=["cvit_tiny", "vitn_12x256_p8_ra"],
                    fast_bench=list(tiny), fast_run=["train.steps=2", "train.batch_size=8"],
                    cost=list(tiny), cost_configs=["resnet18-imagenet-stem", "vit-aux-3x4x256-8x8"],
                    matmul=["--matmul-size", "128"],
                    data=["data.name=synthetic", "data.synthetic_size=64", "data.image_size=32", "data.num_classes=10",
                          "data.val_size=16", "data.test_size=16"],
                    timeout_s=300)
        if repeats is not None:
            s.repeats = repeats
        return s


# ================================================================ the machine and the clock
def machine() -> dict[str, Any]:
    """What a reader needs to compare the figures: CPU model and SIMD flags, cores, memory, versions."""
    import torch

    from classbench.train.precision import default_threads, resolve_precision

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "logical_cpus": os.cpu_count(), "threads": default_threads(),
                            "precision_auto": resolve_precision("auto", torch.device("cpu")),
                            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "hostname": platform.node()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        fam = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
        mod = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        info["cpu_family_model"] = f"{fam.group(1)}/{mod.group(1)}" if fam and mod else None
        info["simd_flags"] = sorted(f for f in (flags.group(1).split() if flags else []) if SIMD_FLAGS.match(f))
        info["hypervisor"] = bool(flags and "hypervisor" in flags.group(1).split())
    except OSError:
        info["cpu"] = platform.processor() or platform.machine()
    try:
        mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        info["mem_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        info["git"] = None
    return info


def machine_line(m: dict[str, Any]) -> str:
    flags = " ".join(m.get("simd_flags") or []) or "unknown"
    vm = " under a hypervisor" if m.get("hypervisor") else ""
    return (f"{m.get('cpu')} (family/model {m.get('cpu_family_model')}){vm}, {m.get('logical_cpus')} logical CPUs, "
            f"{m.get('mem_gib')} GiB; SIMD flags: {flags}; torch {m.get('torch')} (CPU capability "
            f"{m.get('torch_cpu_capability')}), {m.get('threads')} threads, precision auto = {m.get('precision_auto')}; "
            f"commit {m.get('git')}{' + local changes' if m.get('git_dirty') else ''}")


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# ================================================================ running children
class Part:
    """One part's record: the commands it ran, when, under what load, and what they printed."""

    def __init__(self, key: str, title: str, out: Path, sizes: Sizes) -> None:
        self.key, self.title, self.out, self.sizes = key, title, out, sizes
        self.commands: list[str] = []
        self.started = utc_now()
        self.load_before = loadavg()
        self.t0 = time.perf_counter()
        self.record: dict[str, Any] = {}

    def run(self, argv: list[str], log_name: str) -> str:
        """Run one child (argv[0] is a python script or ``-m classbench``), log its output, return its stdout.
        A child past the timeout is killed with every process it started (reference_loop's own children),
        so that none of them runs on into the next part's timings."""
        self.commands.append(shown(argv))
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        log = self.out / "logs" / f"{self.key}-{log_name}.log"
        proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=self.sizes.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child and its children only
            stdout, stderr = proc.communicate()
            atomic_write_text(log, f"$ {self.commands[-1]}\n# killed after {self.sizes.timeout_s} s\n--- stdout\n"
                                   f"{stdout}\n--- stderr\n{stderr}")
            raise RuntimeError(f"{self.commands[-1]} did not finish in {self.sizes.timeout_s} s (log: {log})") from None
        atomic_write_text(log, f"$ {self.commands[-1]}\n# exit status {proc.returncode}\n--- stdout\n{stdout}"
                               f"\n--- stderr\n{stderr}")
        if proc.returncode != 0:
            tail = (stderr.strip() or stdout.strip()).splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"{self.commands[-1]} exited with status {proc.returncode}: {tail[0][:300]} "
                               f"(log: {log})")
        return stdout

    def header(self, m: dict[str, Any]) -> str:
        cmds = "\n".join(self.commands)
        smoke = "\n**SMOKE RUN: tiny sizes, synthetic data; these figures mean nothing.**\n" if self.sizes.smoke else ""
        return (f"## {self.title}\n{smoke}\n```sh\n{cmds}\n```\n\n"
                f"{self.started} to {self.ended} ({self.seconds:.0f} s); load average (1, 5, 15 min) "
                f"{fmt_load(self.load_before)} before, {fmt_load(self.load_after)} after.  \n"
                f"Machine: {machine_line(m)}.\n")

    def finish(self) -> None:
        self.ended = utc_now()
        self.load_after = loadavg()
        self.seconds = time.perf_counter() - self.t0

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "commands": self.commands, "started": self.started, "ended": self.ended,
                "seconds": round(self.seconds, 1), "loadavg_before": self.load_before,
                "loadavg_after": self.load_after, **self.record}


def shown(argv: list[str]) -> str:
    """The command as a reader would type it in the repository root."""
    words = ["classbench", *argv[2:]] if argv[:2] == ["-m", "classbench"] else ["python", *argv]
    return shlex.join(str(Path(w).relative_to(REPO)) if w.startswith(str(REPO) + os.sep) else w for w in words)


def fmt_load(load: list[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in load) if load else "unknown"


def spread(values: list[float], digits: int = 1) -> str:
    """median [min-max] of repeats, or the one value."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(vals):.{digits}f}-{max(vals):.{digits}f}]"


def bench_json(part: Part, args: list[str], log_name: str) -> dict[str, Any]:
    return json.loads(part.run(["-m", "classbench", "bench", *args, "--format", "json"], log_name))


def peak_of(context: dict[str, Any]) -> float | None:
    """The matmul peak from a bench JSON context (its key names the precision and the size)."""
    for k, v in context.items():
        if "matmul" in k:
            return float(str(v).split()[0])
    return None


# ================================================================ a. ResNet-18 against the matmul peak
def part_peak(part: Part) -> str:
    s = part.sizes
    rows = []
    for rep in range(s.repeats):
        res = bench_json(part, ["resnet18", "--mode", "train", *s.peak, "--matmul-peak", "--precision", "auto",
                                *s.matmul], f"rep{rep + 1}")
        row = res["rows"][0]
        if row.get("error"):
            raise RuntimeError(f"bench resnet18: {row['error']}")
        rows.append({"rep": rep + 1, "precision": row["precision"], "peak_gflops": peak_of(res["context"]),
                     "img_per_s": row["img_per_s"], "step_ms": row["step_ms"], "gflops": row["gflops"],
                     "pct_peak": row["pct_matmul"], "loadavg": res["context"].get("loadavg")})
    part.record["rows"] = rows
    pct = statistics.median(r["pct_peak"] for r in rows)
    part.record["median_pct_peak"] = pct
    lines = ["| run | precision | matmul peak GFLOP/s | img/s | step ms | GFLOP/s | % of peak | load at start |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['rep']} | {r['precision']} | {r['peak_gflops']:.1f} | {r['img_per_s']:.1f} | {r['step_ms']:.0f} | "
              f"{r['gflops']:.1f} | {r['pct_peak']:.1f} % | {r['loadavg']} |" for r in rows]
    lines.append(f"| **median [range]** | | {spread([r['peak_gflops'] for r in rows])} | "
                 f"{spread([r['img_per_s'] for r in rows])} | {spread([r['step_ms'] for r in rows], 0)} | "
                 f"{spread([r['gflops'] for r in rows])} | **{spread([r['pct_peak'] for r in rows])} %** | |")
    verdict = "met" if pct >= PEAK_TARGET_PCT else "not met"
    n = s.matmul[s.matmul.index("--matmul-size") + 1] if "--matmul-size" in s.matmul else "2048"
    return ("\n".join(lines) + f"\n\nGFLOP/s = count_flops' forward FLOPs x 3 x img/s; the peak is the best of 5 "
            f"{n}² products at the same precision, in the same process.  Target >= {PEAK_TARGET_PCT:.0f} % "
            f"of peak: **{verdict}** (median {pct:.1f} %).\n")


# ================================================================ b. where the time of a ResNet-18 step goes
# Each op's self time goes to the first category that its outermost categorisable range matches (read
# from the root down: batch norm's own add_ is batch norm, not an add).  Ranges named by torch itself:
# aten:: ops, autograd::engine::evaluate_function: <Op>Backward0, Optimizer.step#SGD.step.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("convolutions", ("convolution", "conv2d", "conv_depthwise")),
    ("batch norm", ("batch_norm", "batchnorm")),
    ("head, pooling and loss", ("linear", "addmm", "aten::mm", "mmbackward", "pool", "log_softmax", "logsoftmax",
                                "nll_loss", "nllloss", "cross_entropy", "aten::mean", "meanbackward")),
    ("ReLU and residual adds", ("relu", "threshold_backward", "aten::add", "addbackward")),
    ("casts and copies", ("aten::to", "_to_copy", "copy_", "clone", "contiguous", "tobackward")),
    ("gradient accumulation", ("accumulategrad",)),
]
LOOP = "Python between ops (the trainer's loop, the profiler)"  # the self time of the step's own range
PHASES = ("data / augment", "forward and loss", "backward", "optimizer", LOOP)


def categorize(chain: list[str]) -> tuple[str, str]:
    """(category, phase) of an op from the names of its ranges below the profiler's step, root first, the op
    itself last; an empty chain is the step's own range."""
    if not chain:
        return LOOP, LOOP
    low = [n.lower() for n in chain]
    if any(n == DATA_MARK for n in chain):
        return "data / augment", "data / augment"
    if any(n.startswith("optimizer.") for n in low):
        return "optimizer (SGD step, zero_grad)", "optimizer"
    phase = "backward" if any(n.startswith("autograd::engine") for n in low) else "forward and loss"
    for n in low:
        for cat, keys in CATEGORIES:
            if any(k in n for k in keys):
                return cat, phase
    return "other", phase


def profile_child(argv: list[str]) -> None:
    """In a fresh process: Trainer.fit on the config with torch.profiler active for ``steps`` steps after
    ``warmup`` + 1 (the profiler's own warm-up); prints a JSON breakdown."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    from classbench.config import load_config
    from classbench.train.trainer import Trainer

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--runs-dir", required=True)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="config overrides after the suite's own")
    a = ap.parse_args(argv)
    total = a.warmup + 1 + a.steps
    # evaluation only at the end, on a few test images: the profile is of training steps
    cfg = load_config(a.config, [f"train.batch_size={a.batch_size}", "train.epochs=0", f"train.steps={total}",
                                 "eval.every=1000000", "eval.splits=[test]", "data.val_size=0",
                                 f"data.test_size={a.batch_size}", f"log.every={total}", "log.progress=never",
                                 f"train.runs_dir={a.runs_dir}", "train.compile=off", *CONSTANT_LR, *a.overrides])
    prof = profile(activities=[ProfilerActivity.CPU],
                   schedule=schedule(skip_first=a.warmup, wait=0, warmup=1, active=a.steps, repeat=1))
    trainer = Trainer(cfg, after_step=lambda t: prof.step())
    make_batches = trainer.train_loader.batches

    def labelled_batches():  # the loader's batch making, as the trainer's loop calls it, under one range
        it = make_batches()
        while True:
            with record_function(DATA_MARK):
                batch = next(it)
            yield batch

    trainer.train_loader.batches = labelled_batches
    with prof:
        run_dir = trainer.fit()
    by_cat: dict[str, float] = {}
    by_phase: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    other_ops: dict[str, float] = {}
    step_us = []
    for ev in prof.events():
        if ev.name.startswith("ProfilerStep"):  # "ProfilerStep#N", or "ProfilerStep*" in newer torch
            step_us.append(ev.cpu_time_total)
        chain, p = [], ev
        while p is not None:
            chain.append(p.name)
            p = p.cpu_parent
        chain.reverse()
        if not chain[0].startswith("ProfilerStep"):
            continue  # outside the profiled steps (evaluation, checkpoint at the end)
        cat, phase = categorize(chain[1:])
        by_cat[cat] = by_cat.get(cat, 0.0) + ev.self_cpu_time_total
        by_phase[phase] += ev.self_cpu_time_total
        if cat == "other":
            other_ops[ev.name] = other_ops.get(ev.name, 0.0) + ev.self_cpu_time_total
    total_us = sum(by_cat.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    print(json.dumps({
        "config": a.config, "model": cfg.model.name, "batch_size": a.batch_size, "steps": a.steps,
        "precision": summary["precision"], "channels_last": summary["channels_last"], "threads": summary["threads"],
        "step_ms_profiled": [round(u / 1e3, 1) for u in step_us],
        "ms_per_step": {k: v / 1e3 / a.steps for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "phase_ms_per_step": {k: v / 1e3 / a.steps for k, v in by_phase.items()},
        "total_ms_per_step": total_us / 1e3 / a.steps,
        "other_top": {k: v / 1e3 / a.steps for k, v in sorted(other_ops.items(), key=lambda kv: -kv[1])[:6]},
        "torch": torch.__version__}))


def part_profile(part: Part) -> str:
    s = part.sizes
    import tempfile

    with tempfile.TemporaryDirectory(prefix="quiet-profile-") as runs:
        out = part.run([str(Path(__file__).resolve()), "--child", "profile", "configs/cifar10/resnet18.yaml",
                        *s.profile, "--runs-dir", runs, "--set", *s.data], "profile")
    r = json.loads(out.strip().splitlines()[-1])
    part.record.update(r)
    total = r["total_ms_per_step"]
    lines = ["| where | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.1f} | {100 * v / total:.1f} % |" for k, v in r["ms_per_step"].items()]
    lines.append(f"| **step (sum of self times)** | **{total:.1f}** | 100 % |")
    phases = ["| phase | ms per step | share |", "|---|---:|---:|"]
    phases += [f"| {k} | {v:.1f} | {100 * v / total:.1f} % |" for k, v in r["phase_ms_per_step"].items()]
    other = ", ".join(f"{k} {v:.1f} ms" for k, v in r["other_top"].items()) or "none"
    return (f"{r['model']} ({r['config']}: its augmentation, SGD; batch {r['batch_size']}), {r['precision']}, "
            f"channels_last={r['channels_last']}, {r['threads']} threads; {r['steps']} profiled steps of "
            f"`Trainer.fit` after {s.profile[s.profile.index('--warmup') + 1]} + 1 unprofiled; profiled step wall "
            f"times {', '.join(f'{x:.0f}' for x in r['step_ms_profiled'])} ms (the profiler adds a little).\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(phases)
            + f"\n\nLargest ops in \"other\": {other}.  Self CPU time of the main thread per op (intra-op worker "
              "threads run inside their op), put in the category of its outermost range: a convolution's "
              "backward, its weight gradient and its reorders all count as convolutions.\n")


# ================================================================ c. trainer against the tutorial loop
def part_loop(part: Part) -> str:
    s = part.sizes
    results = {}
    for model, steps in s.loop.items():
        js = part.out / f"c-reference-loop-{model}.json"
        part.run([str(REPO / "benchmarks" / "reference_loop.py"), "--model", model, *s.loop_common, *steps,
                  "--repeats", str(s.repeats), "--json", str(js)], model)
        results[model] = json.loads(js.read_text())
    part.record["models"] = results
    lines = ["| model | " + " | ".join(f"rep {i + 1}" for i in range(s.repeats)) + " | median | target | met |",
             "|---|" + "---|" * s.repeats + "---:|---:|---|"]
    for model, r in results.items():
        m = r["models"][model]
        cells = [f"{p['reference_img_per_s']:.1f} -> {p['classbench_img_per_s']:.1f} img/s, {p['ratio']:.2f}x"
                 for p in m["pairs"]]
        target = REFERENCE_LOOP_TARGETS.get(model)
        met = "-" if target is None else ("yes" if m["ratio"] >= target else "no")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | **{m['ratio']:.2f}x** | "
                     f"{f'{target:.1f}x' if target else '-'} | {met} |")
    notes = "; ".join(f"{k}: {r['steps']} timed steps after {r['warmup']}, load {r['loadavg_start']:.2f} -> "
                      f"{r['loadavg_end']:.2f}, trainer side {r['models'][k]['precision']}, "
                      f"channels_last={r['models'][k]['channels_last']}" for k, r in results.items())
    return ("\n".join(lines) + f"\n\nbatch {next(iter(results.values()))['batch_size']}, "
            f"{next(iter(results.values()))['data']} data, each side in a fresh process, pairs interleaved "
            f"(reference, trainer, reference, ...); {notes}.\n")


# ================================================================ d. docs/models.md's n/m cells
def part_speeds(part: Part) -> str:
    s = part.sizes
    runs = [bench_json(part, [*s.speed_models, *s.speeds, *s.matmul], f"rep{rep + 1}") for rep in range(s.repeats)]
    part.record["runs"] = runs
    cells: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for row in run["rows"]:
            if row.get("error"):
                raise RuntimeError(f"bench {row['model']} {row['mode']}: {row['error']}")
            cells.setdefault(row["model"], {}).setdefault(row["mode"], []).append(row["img_per_s"])
    prec = {r["precision"] for run in runs for r in run["rows"]}
    peaks = [peak_of(run["context"]) for run in runs]
    part.record["cells"] = {m: {k: statistics.median(v) for k, v in modes.items()} for m, modes in cells.items()}
    paste = ["| name | train img/s | infer img/s |", "|---|---:|---:|"]
    paste += [f"| {m} | {statistics.median(c['train']):.1f} | {statistics.median(c['infer']):.1f} |"
              for m, c in cells.items()]
    detail = ["| name | train img/s, median [range] | infer img/s, median [range] |", "|---|---:|---:|"]
    detail += [f"| {m} | {spread(c['train'])} | {spread(c['infer'])} |" for m, c in cells.items()]
    return ("Cells for docs/models.md (median of the runs; the same rounding as its table):\n\n" + "\n".join(paste)
            + f"\n\nSpread over {len(runs)} fresh process(es); precision {', '.join(sorted(prec))}; "
              f"matmul peak per run {', '.join(f'{p:.1f}' for p in peaks if p)} GFLOP/s:\n\n" + "\n".join(detail)
            + "\n\nThe other rows of docs/models.md were measured on 2026-11-23 on another machine (2-core AMD EPYC "
              "Zen 4, AVX-512, fp32, load ~4); compare these cells with them only after re-measuring one of those "
              "rows here (e.g. `classbench bench resnet20 " + " ".join(MODELS_MD_BENCH) + "`).\n")


# ================================================================ e. the fast recipe's throughput
def part_fast(part: Part) -> str:
    import tempfile

    s = part.sizes
    # evaluation runs at eval.batch_size 1000, but inference img/s hardly depends on the batch here: one process
    rows = [bench_json(part, ["airbench_net", "--mode", "both", *s.fast_bench, "--matmul-peak", *s.matmul],
                       f"rep{rep + 1}")["rows"] for rep in range(s.repeats)]
    train = [r for run in rows for r in run if r["mode"] == "train"]
    infer = [r for run in rows for r in run if r["mode"] == "infer"]
    with tempfile.TemporaryDirectory(prefix="quiet-fast-") as runs:
        out = part.run(["-m", "classbench", "train", "configs/cifar10/fast.yaml", "train.epochs=0", *s.fast_run,
                        *CONSTANT_LR,
                        f"train.runs_dir={runs}", "log.progress=never", "data.download=false", *s.data], "trainer")
        summaries = list(Path(runs).rglob("summary.json"))
        if len(summaries) != 1:
            raise RuntimeError(f"expected one finished run under {runs}, found {len(summaries)}:\n{out[-500:]}")
        summ = json.loads(summaries[0].read_text())
    from classbench.config import load_config

    cfg = load_config(REPO / "configs" / "cifar10" / "fast.yaml", [])
    train_images = 50000 - cfg.data.val_size
    steps_per_epoch = train_images // cfg.train.batch_size
    eval_images = cfg.data.val_size * (2 if cfg.eval.tta else 1)  # flip TTA: two forward passes per image
    t_ips = statistics.median(r["img_per_s"] for r in train)
    i_ips = statistics.median(r["img_per_s"] for r in infer)
    trainer_ips = summ["train_img_per_s"]
    epoch_s = steps_per_epoch * cfg.train.batch_size / trainer_ips + eval_images / i_ips
    epochs = FAST_BUDGET_S / epoch_s
    part.record.update({"bench_train": train, "bench_infer": infer, "trainer_summary": summ,
                        "epoch_s": epoch_s, "epochs_in_budget": epochs})
    return (f"| measure | img/s | note |\n|---|---:|---|\n"
            f"| bench train, batch {train[0]['batch']} | {spread([r['img_per_s'] for r in train])} | "
            f"{train[0]['precision']}, {spread([r['pct_matmul'] for r in train])} % of the matmul peak |\n"
            f"| bench infer, batch {infer[0]['batch']} | {spread([r['img_per_s'] for r in infer])} | |\n"
            f"| trainer, {summ['steps']} steps of fast.yaml | {trainer_ips:.1f} | train_img_per_s; wall "
            f"{summ['wall_time_s']:.1f} s incl. setup and the final evaluation; precision {summ['precision']}, "
            f"compile {summ['compile']} |\n\n"
            f"One epoch of fast.yaml = {steps_per_epoch} steps x {cfg.train.batch_size} images at the trainer's "
            f"{trainer_ips:.1f} img/s + {eval_images:,} evaluation forwards ({cfg.data.val_size:,} val images"
            f"{', flip TTA' if cfg.eval.tta else ''}) at {i_ips:.1f} img/s = **{epoch_s:.0f} s**, so "
            f"{FAST_BUDGET_S // 60} minutes hold **{epochs:.1f} epochs** (before data loading, the whitening "
            f"init and the final test; fast.yaml runs {cfg.train.epochs}, airbench94 runs 10 with its extras).\n")


# ================================================================ f. seed 002's runs: cost per config
def cost_child(argv: list[str]) -> None:
    """In a fresh process: train and infer img/s of each config's own model (its model.args), at its precision."""
    import torch

    from classbench.config import load_config
    from classbench.drivers.bench import setup_process
    from classbench.models import create_model
    from classbench.models.registry import uses_channels_last
    from classbench.train.speed import time_steps

    ap = argparse.ArgumentParser()
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    a = ap.parse_args(argv)
    _, precision, threads = setup_process("cpu")  # as the trainer and `classbench bench` set the process up
    rows = []
    for path in a.configs:
        cfg = load_config(path)
        classes = {"cifar10": 10, "cifar100": 100}.get(cfg.data.name, 10)
        torch.manual_seed(0)
        model = create_model(cfg.model.name, num_classes=classes, **cfg.model.args)
        cl = uses_channels_last(cfg.model.name, cfg.model.channels_last)
        row = {"config": path, "model": cfg.model.name, "steps": cfg.train.steps, "batch": cfg.train.batch_size,
               "eval_every": cfg.eval.every, "eval_splits": list(cfg.eval.splits),
               "train_subset": cfg.data.train_subset_size}
        for mode in ("train", "infer"):  # inference at the training batch too: img/s hardly depends on it here
            r = time_steps(model, mode, a.batch_size, a.steps, cl, a.warmup, num_classes=classes, device="cpu",
                           precision=precision)
            row[f"{mode}_img_per_s"] = a.batch_size / statistics.median(r["times"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"precision": precision, "threads": threads, "rows": rows}))


def seed002_configs() -> list[str]:
    """Seed 002's suite on CIFAR-10: every config of configs/cifar10 whose header names its source."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "configs" / "cifar10").glob("*.yaml")
                  if "enhuiz/image-classification" in p.read_text())


def part_cost(part: Part) -> str:
    s = part.sizes
    configs = seed002_configs()
    if s.cost_configs is not None:
        configs = [c for c in configs if Path(c).stem in s.cost_configs]
    out = part.run([str(Path(__file__).resolve()), "--child", "cost", *configs, *s.cost], "cost")
    r = json.loads(out.strip().splitlines()[-1])
    test_images = 10000  # the official CIFAR test split, which a full run evaluates
    lines = ["| config | model | train img/s | eval img/s | training min | evaluations min | one run, min |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        train_min = row["steps"] * row["batch"] / row["train_img_per_s"] / 60
        evals = row["steps"] // row["eval_every"] if row["eval_every"] else 1
        per_eval = (test_images if "test" in row["eval_splits"] else 0) + \
                   (row["train_subset"] if "train_subset" in row["eval_splits"] else 0)
        eval_min = evals * per_eval / row["infer_img_per_s"] / 60
        row.update({"train_min": train_min, "eval_min": eval_min, "run_min": train_min + eval_min})
        lines.append(f"| {Path(row['config']).stem} | {row['model']} | {row['train_img_per_s']:.1f} | "
                     f"{row['infer_img_per_s']:.0f} | {train_min:.0f} | {eval_min:.0f} | **{train_min + eval_min:.0f}** |")
    total_h = sum(row["run_min"] for row in r["rows"]) / 60
    part.record.update(r)
    part.record["suite_hours"] = total_h
    return ("\n".join(lines) + f"\n\n{r['precision']}, {r['threads']} threads; training = the config's steps x "
            f"batch at the measured train img/s (batch {s.cost[s.cost.index('--batch-size') + 1]}); evaluations = "
            f"one every eval.every steps over the {test_images:,} official test images + the train subset, at "
            f"the eval img/s.  One seed of the whole suite: **{total_h:.1f} h** on this machine.\n")


# ================================================================ the suite
PARTS: dict[str, tuple[str, Callable[[Part], str]]] = {
    "a-peak": ("ResNet-18 training against the matmul peak (issue #19, goal 2)", part_peak),
    "b-profile": ("Where a ResNet-18 training step's time goes (issue #19, goal 2)", part_profile),
    "c-reference-loop": ("classbench's trainer against the tutorial loop (issue #19, goal 3)", part_loop),
    "d-model-speeds": ("The n/m speed cells of docs/models.md (issue #16)", part_speeds),
    "e-fast-recipe": ("fast.yaml's throughput: the 10-minute budget in epochs (issue #19, goal 1)", part_fast),
    "f-seed002-cost": ("What one run of seed 002's budget costs here (issues #16, #21)", part_cost),
}


def pick_parts(only: list[str] | None) -> list[str]:
    if not only:
        return list(PARTS)
    chosen = []
    for want in only:
        match = [k for k in PARTS if k == want or k.split("-", 1)[0] == want or k.split("-", 1)[1] == want]
        if not match:
            raise SystemExit(f"quiet_suite: unknown part {want!r}; parts: {', '.join(PARTS)} (or their letters)")
        chosen += [k for k in match if k not in chosen]
    return [k for k in PARTS if k in chosen]


def check_real_data() -> str | None:
    """None when real CIFAR-10 loads without downloading (from $CLASSBENCH_DATA, else ./data); else why not."""
    from classbench.data import resolve_root
    from classbench.data.cifar import load_cifar
    from classbench.errors import ClassbenchError

    try:
        load_cifar("cifar10", resolve_root(None)[0], download=False)
    except ClassbenchError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        {"profile": profile_child, "cost": cost_child}[argv[1]](argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the results (created; files are replaced)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on synthetic data: checks the plumbing, < 1 min")
    ap.add_argument("--only", nargs="+", metavar="PART", help=f"run only these parts ({', '.join(PARTS)}, or a..f)")
    ap.add_argument("--repeats", type=int, help="fresh-process repeats of each timed part (default 3; smoke 1)")
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error(f"--repeats must be at least 1; got {args.repeats}")
    parts = pick_parts(args.only)
    sizes = Sizes.for_mode(args.smoke, args.repeats)
    if not args.smoke and {"b-profile", "c-reference-loop", "e-fast-recipe"} & set(parts):
        problem = check_real_data()
        if problem:
            print(f"quiet_suite: parts b, c and e need real CIFAR-10 (set CLASSBENCH_DATA): {problem}", file=sys.stderr)
            return 2
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    m = machine()
    suite: dict[str, Any] = {"smoke": args.smoke, "machine": m, "started": utc_now(), "loadavg_before": loadavg(),
                             "parts": {}}
    print(f"quiet_suite: {', '.join(parts)} -> {args.out}\nmachine: {machine_line(m)}\n"
          f"load average now: {fmt_load(suite['loadavg_before'])}", flush=True)
    if suite["loadavg_before"] and suite["loadavg_before"][0] > 0.5 and not args.smoke:
        print("quiet_suite: WARNING: the machine is not quiet (1-min load average above 0.5); the figures will "
              "say so", flush=True)
    md_parts, failed = [], []
    for key in parts:
        title, fn = PARTS[key]
        part = Part(key, title, args.out, sizes)
        print(f"\n=== {key}: {title} ({part.started}, load {fmt_load(part.load_before)})", flush=True)
        try:
            body = fn(part)
            part.finish()
            md = part.header(m) + "\n" + body
            part.record["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - one part's failure (a child's error, a parse error) is reported; the rest runs
            part.finish()
            failed.append(key)
            part.record["status"] = "failed"
            part.record["error"] = f"{type(e).__name__}: {e}"
            md = part.header(m) + f"\n**FAILED**: {part.record['error']}\n"
        print(md, flush=True)
        atomic_write_text(args.out / f"{key}.md", md)
        atomic_write_json(args.out / f"{key}.json", part.as_dict())
        suite["parts"][key] = part.as_dict()
        md_parts.append(md)
    suite.update({"ended": utc_now(), "loadavg_after": loadavg(), "failed": failed})
    atomic_write_json(args.out / "suite.json", suite)
    head = (f"# Quiet-machine suite{' (SMOKE)' if args.smoke else ''}\n\n{suite['started']} to {suite['ended']}; load "
            f"average {fmt_load(suite['loadavg_before'])} before, {fmt_load(suite['loadavg_after'])} after.  \n"
            f"Machine: {machine_line(m)}.\n\n")
    atomic_write_text(args.out / "summary.md", head + "\n".join(md_parts))
    print(f"\nquiet_suite: wrote {args.out}/summary.md" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
