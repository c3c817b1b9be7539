"""``train.compile``: on, off, or ``auto`` -- compile where it was measured to pay off.

``auto`` compiles only when both hold:

* compiling was *measured* faster for this model on this kind of hardware at this precision
  (:data:`MEASURED`; a model/hardware/precision that was never measured is not compiled), and
* the run is long enough for the measured gain to repay the compile time: ``steps x eager step time
  x (1 - 1/speedup) > compile seconds``, and at least :data:`MIN_STEPS` steps (so never for a smoke run
  or a test).

The table is per model, not per family: in one family the gain can change sign.  On a 2-core Xeon
with AMX (2026-12-03, bf16), compiling made the 48-wide mcvit_tiny about 1.3x faster and the 256-wide,
12-layer vitn_12x256_p8 about 15 % slower.

It is also per kind of hardware (:func:`hardware`), detected, not assumed: a CPU row holds for the
instruction set that runs the model's matmuls at that precision (AMX or AVX-512 BF16 in bf16; AVX-512
or AVX2 in fp32), so a gain measured with AMX is not taken for a CPU without it.

The decision and its reason go into summary.json (``compile``, ``compile_choice``), with the seconds
the compilation took (``compile_time_s``).  Compiled graphs are kept in the inductor cache under the
runs folder (:func:`use_shared_inductor_cache`), so the runs of a sweep compile a model once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..host import cpu_bf16_unit, cpu_flags


@dataclass(frozen=True)
class CompileGain:
    speedup: float  # eager step time / compiled step time, training
    compile_s: float  # one-off cost of the first compiled step
    eager_img_per_s: float  # eager training img/s of the measured model (gives the step time of a batch)
    source: str  # what was measured, where, when


def hardware(device_type: str, precision: str, flags: frozenset[str] | None = None) -> str:
    """The kind of hardware a compile gain holds for: ``cpu:<ISA>`` on a CPU, by the instruction set that
    runs matmuls at ``precision`` (from /proc/cpuinfo's flags, or ``flags``); the device type otherwise."""
    if device_type != "cpu":
        return device_type
    flags = cpu_flags() if flags is None else flags
    if precision == "bf16":
        isa = cpu_bf16_unit(flags) or "no-bf16"
    else:  # fp32 (no row was measured at another precision on a CPU)
        isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "no-avx2"
    return f"cpu:{isa}"


#: (model name, hardware, precision) -> what compiling was measured to give; hardware is :func:`hardware`'s.
#: Add a row only from a measurement (``classbench bench MODEL --compile`` against the same without;
#: benchmarks/gpu_check.sh on a GPU) and cite it.
MEASURED: dict[tuple[str, str, str], CompileGain] = {
    ("mcvit_tiny", "cpu:amx", "bf16"): CompileGain(
        2550 / 1930, 26.6, 1930.0,
        "mcvit_tiny batch 256: 1,930 img/s eager, 2,550 compiled (issue #19, 2-core Xeon with AMX-BF16, "
        "2026-12-02); compile time from docs/perf-measurements.md 1b"),
    ("cvit_tiny", "cpu:amx", "bf16"): CompileGain(
        (1442 + 1258) / (1347 + 1017), 33.6, 1182.0,
        "cvit_tiny batch 256, 2 threads: 1,347 and 1,017 img/s eager, 1,442 and 1,258 compiled, interleaved "
        "(2-core Xeon with AMX-BF16, 2026-12-03; compile 33.6 s with a cold cache)"),
    ("vitn_12x256_p8", "cpu:amx", "bf16"): CompileGain(
        (135 + 124) / (145 + 161), 6.1, 153.0,
        "vitn_12x256_p8 batch 128, 2 threads: 145 and 161 img/s eager, 135 and 124 compiled, interleaved "
        "(2-core Xeon with AMX-BF16, 2026-12-03)"),
    # fp32 on the AVX-512 EPYC of docs/perf-measurements.md (Zen 4, family 25 model 17; no AMX)
    ("mcvit_tiny", "cpu:avx512", "fp32"): CompileGain(
        768 / 754, 26.6, 754.0, "mcvit_tiny batch 256, AVX-512 EPYC (Zen 4): 754 vs 768 img/s (docs/perf-measurements.md 1b)"),
    ("resnet20", "cpu:avx512", "fp32"): CompileGain(
        374.8 / 374.6, 25.1, 374.6, "resnet20 batch 128, AVX-512 EPYC (Zen 4): 374.6 vs 374.8 img/s (docs/perf-measurements.md 1b)"),
    ("airbench_net", "cpu:avx512", "fp32"): CompileGain(
        207 / 217, 41.0, 217.0, "airbench_net batch 512, AVX-512 EPYC (Zen 4): 217 vs 207 img/s (docs/perf-measurements.md 1b)"),
}
#: Below this speed-up a measured gain is within run-to-run noise: not worth a compile.
MIN_SPEEDUP = 1.05
#: Never compile a run shorter than this (smoke runs, tests).
MIN_STEPS = 200


def decide(setting: str, *, model: str, kind: str, precision: str, steps: int,
           batch_size: int) -> tuple[bool, str]:
    """(compile?, the reason in words) for ``train.compile=setting`` and a run of ``steps`` steps on
    hardware of ``kind`` (:func:`hardware`'s name for the run's device)."""
    if setting in ("on", "off"):
        return setting == "on", f"train.compile={setting}"
    where = f"{model} on {kind} in {precision}"
    gain = MEASURED.get((model, kind, precision))
    if gain is None:
        return False, f"auto: compiling {where} was not measured"
    if gain.speedup < MIN_SPEEDUP:
        return False, f"auto: compiling {where} was measured no faster ({gain.speedup:.2f}x)"
    step_s = batch_size / gain.eager_img_per_s
    saved = steps * step_s * (1 - 1 / gain.speedup)
    if steps < MIN_STEPS or saved <= gain.compile_s:
        return False, (f"auto: {steps} steps are too few: {gain.speedup:.2f}x on {where} would save "
                       f"~{saved:.0f} s for ~{gain.compile_s:.0f} s of compiling")
    return True, f"auto: {gain.speedup:.2f}x on {where} saves ~{saved:.0f} s for ~{gain.compile_s:.0f} s of compiling"


def use_shared_inductor_cache(runs_dir: str | Path) -> Path:
    """Point torch's inductor cache at ``<runs_dir>/.cache/inductor`` (unless TORCHINDUCTOR_CACHE_DIR is
    set): every run of a sweep writes to one runs folder, so the second run of a model loads the first
    one's compiled graphs instead of compiling again -- also across the nodes of a cluster, where torch's
    default (/tmp) is per node."""
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(runs_dir).resolve() / ".cache" / "inductor")))
    return path
