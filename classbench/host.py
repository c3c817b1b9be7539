"""The CPU this process runs on, from /proc/cpuinfo: its model and the SIMD flags that decide speed.

Figures differ several-fold between the machines classbench runs on (AVX2 only; AVX-512 BF16; AMX), so
every run records them (env.json), ``train.precision=auto`` reads the bf16 flags, and ``classbench bench``
prints the model.  Empty where /proc/cpuinfo is missing (not Linux)."""

from __future__ import annotations

from functools import lru_cache

#: The flags that change what classbench measures: vector width, fused multiply-add, bf16/fp16 units.
SPEED_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
               "amx_bf16", "amx_fp16", "amx_int8", "amx_tile")


@lru_cache(maxsize=None)
def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model() -> str | None:
    """e.g. "AMD EPYC 7B13", or None."""
    return _cpuinfo().get("model name") or None


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_bf16_unit(flags: frozenset[str] | None = None) -> str | None:
    """The CPU's bf16 matmul hardware from /proc/cpuinfo's flags (or ``flags``): "amx" (AMX-BF16),
    "avx512_bf16", or None where bf16 is only emulated."""
    flags = cpu_flags() if flags is None else flags
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def cpu_summary() -> dict:
    """What env.json records: model name, family/model numbers and the speed-relevant flags present."""
    info = _cpuinfo()
    flags = cpu_flags()
    return {"model": cpu_model(), "family": info.get("cpu family"), "model_number": info.get("model"),
            "flags": [f for f in SPEED_FLAGS if f in flags]}


def timing_setups(env: dict) -> list[str]:
    """Each set-up an env.json's run was timed on, once, in the order first used: the first attempt's and
    those of its resumes (env.json's ``resumes``); more than one means its img/s is a mix.  A set-up is the
    GPU's name on CUDA; on the CPU its model, family/model numbers (one model name can cover several
    generations), bf16 unit and thread count.  Empty where env.json does not say (runs from before it
    recorded the CPU)."""
    from .runfolder import attempt_environments  # lazily: runfolder imports torch, which this module does without

    attempts = attempt_environments(env)
    setups = list(dict.fromkeys(s for e in attempts if (s := _one_setup(e))))  # in order, once each
    return ["an unknown set-up", *setups] if setups and attempts[0] is None else setups


def _one_setup(env) -> str | None:
    """The set-up of one attempt's environment, or None."""
    if not isinstance(env, dict):
        return None
    device = str(env.get("device") or "")
    if device.startswith("cuda"):
        return str(env["device_name"]) if env.get("device_name") else None
    cpu = env.get("cpu")
    if device != "cpu" or not isinstance(cpu, dict) or not cpu.get("model"):
        return None
    flags = cpu.get("flags")
    unit = cpu_bf16_unit(frozenset(flags)) if isinstance(flags, list) else None
    parts = [f"family {cpu.get('family')} model {cpu.get('model_number')}", unit or "no bf16 unit"]
    if env.get("threads"):
        parts.append(f"{env['threads']} thread{'' if env['threads'] == 1 else 's'}")
    return f"{cpu['model']} ({', '.join(parts)})"
