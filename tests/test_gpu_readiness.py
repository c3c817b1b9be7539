"""GPU readiness (issue #14) and compile=auto (issue #19), proven on a CPU-only machine.

No CUDA line can run here, so each test stands in for the GPU where the bug was about it:
tensors that say they live on cuda:0 (what ``torch.load(map_location="cuda")`` returns), a faked
compute capability, a faked set of visible GPUs for the RNG states, and torch's own CPU behaviour
where that is the same as on CUDA (GradScaler state, dynamo's recompile limit, the TF32 switches).
benchmarks/gpu_check.sh is the check that runs on a real GPU.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from classbench import runfolder
from classbench.errors import ClassbenchError, ConfigError, TrainingInterrupted
from conftest import REPO


# ---------------------------------------------------------------- stand-ins for CUDA
class OnGPU(torch.Tensor):
    """A CPU tensor that stands for one that ``torch.load(map_location="cuda")`` put on a GPU: it says so
    (``.device`` is cuda:0, ``.is_cuda``) and only ``.cpu()`` / ``.to("cpu")`` give a plain CPU tensor back.
    Everything else keeps the tag, so a consumer that forgets to move it keeps a "GPU" tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.device.__get__:
            return torch.device("cuda", 0)
        if func is torch.Tensor.is_cuda.__get__:
            return True
        if func is torch.Tensor.cpu or (func is torch.Tensor.to and _targets_cpu(args[1:], kwargs)):
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs).as_subclass(torch.Tensor).clone()
        return super().__torch_function__(func, types, args, kwargs)


def _targets_cpu(args, kwargs) -> bool:
    for a in (*args, kwargs.get("device")):
        if isinstance(a, (str, torch.device)) and torch.device(a).type == "cpu":
            return True
    return False


def tag_on_gpu(obj):
    """``obj`` with every tensor in it tagged as on cuda:0."""
    if isinstance(obj, torch.Tensor):
        return obj.as_subclass(OnGPU)
    if isinstance(obj, dict):
        return {k: tag_on_gpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tag_on_gpu(v) for v in obj)
    return obj


def fake_gpus(monkeypatch, count: int, capability=(8, 0)):
    """Make torch.cuda report ``count`` GPUs, each with its own RNG state; returns the set_rng_state calls."""
    states = {i: torch.full((16,), i + 1, dtype=torch.uint8) for i in range(8)}
    calls = []

    def index(device):
        if device is None or device == "cuda":
            return 0
        d = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        return d.index or 0

    def get_rng_state(device="cuda"):
        i = index(device)
        if i >= count:
            raise IndexError(f"fake: no GPU {i}")
        return states[i].clone()

    def set_rng_state(state, device="cuda"):
        i = index(device)
        if i >= count:  # as torch does for a GPU that is not visible
            raise IndexError(f"fake: no GPU {i}")
        calls.append((i, state.clone()))

    for mod in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(mod, "get_rng_state", get_rng_state)
        monkeypatch.setattr(mod, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return states, calls


# ---------------------------------------------------------------- 1. resume with map_location on the GPU
def test_resume_survives_a_checkpoint_loaded_onto_the_gpu(tiny_cfg, monkeypatch):
    """Finding 1: last.pt loaded with map_location=cuda put the loader's generator state on the GPU and
    every resume crashed.  Here every tensor of last.pt comes back tagged as on cuda:0."""
    from classbench.train import trainer as trainer_mod
    from classbench.train.trainer import Trainer

    cfg = tiny_cfg("train.epochs=0", "train.steps=6")
    first = Trainer(cfg, stop_after=3)
    with pytest.raises(TrainingInterrupted):
        first.fit()
    real_load = trainer_mod.load_checkpoint
    monkeypatch.setattr(trainer_mod, "load_checkpoint", lambda *a, **k: tag_on_gpu(real_load(*a, **k)))
    resumed = Trainer(cfg, resume_dir=first.run_dir)
    # the CPU generator got a plain CPU state (torch.Generator.set_state refuses a CUDA tensor)
    assert type(resumed.train_loader._epoch_start_state) is torch.Tensor
    assert resumed.step == 3
    resumed.fit()
    assert runfolder.read_summary(first.run_dir)["steps"] == 6


# ---------------------------------------------------------------- 2. precision=auto by compute capability
@pytest.mark.parametrize("capability, expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    """Finding 2: is_bf16_supported() counts emulation, so a V100/T4 got a slow emulated bf16."""
    from classbench.train.precision import resolve_precision

    fake_gpus(monkeypatch, 1, capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected


# ---------------------------------------------------------------- 3. CUDA RNG of the run's own device
def test_cuda_rng_restores_with_fewer_visible_gpus(monkeypatch):
    """Finding 3: the states of all visible GPUs were saved and restored by index; a resume that sees
    fewer GPUs (a sweep's CUDA_VISIBLE_DEVICES) raised IndexError."""
    from classbench.train.checkpoint import GlobalRNG

    states, _ = fake_gpus(monkeypatch, 2)
    saved = GlobalRNG(torch.device("cuda", 1)).state_dict()  # a run on the 2nd of 2 GPUs
    _, calls = fake_gpus(monkeypatch, 1)  # resumed where that GPU is the only one visible: cuda:0
    GlobalRNG(torch.device("cuda", 0)).load_state_dict(saved)
    assert len(calls) == 1 and calls[0][0] == 0 and torch.equal(calls[0][1], states[1])
    # an old checkpoint (one state per GPU visible then) restores the run's own device's entry
    calls.clear()
    old_format = {k: v for k, v in saved.items() if k != "cuda_device"} | {"cuda": [states[0], states[1]]}
    GlobalRNG(torch.device("cuda", 0)).load_state_dict(old_format)
    assert len(calls) == 1 and calls[0][0] == 0 and torch.equal(calls[0][1], states[0])
    # a CPU run saves no CUDA state at all
    assert "cuda_device" not in GlobalRNG(torch.device("cpu")).state_dict()


# ---------------------------------------------------------------- 4. precision kept across a resume
@pytest.mark.slow
def test_a_resume_keeps_the_precision_the_run_was_trained_in(tiny_cfg):
    """Finding 4: precision was resolved again on resume; bf16 -> fp16 crashed in GradScaler.load_state_dict."""
    from classbench.train.trainer import Trainer, resume

    cfg = tiny_cfg("train.epochs=0", "train.steps=4", "model.args={width: 4}", "train.precision=bf16")
    first = Trainer(cfg, stop_after=2)
    with pytest.raises(TrainingInterrupted):
        first.fit()
    with pytest.raises(ClassbenchError) as e:
        resume(first.run_dir, ["train.precision=fp16"])
    assert "bf16" in str(e.value) and "\n" not in str(e.value)
    run_dir = resume(first.run_dir, ["train.precision=auto"])  # auto would pick fp32 on this CPU
    assert runfolder.read_summary(run_dir)["precision"] == "bf16"


# ---------------------------------------------------------------- 6, 10, 13: device settings
def test_setup_device_on_cuda_sets_the_device_cudnn_benchmark_and_tf32(monkeypatch):
    from classbench.train.precision import setup_device

    fake_gpus(monkeypatch, 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(torch.device(d)))
    old = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
           torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    try:
        got = setup_device(torch.device("cuda", 1), tf32=True)
        assert chosen == [torch.device("cuda", 1)]  # a single process too
        assert torch.backends.cudnn.benchmark is True
        assert got == {"deterministic": False, "tf32": "tf32", "cudnn_benchmark": True}
        assert torch.backends.cuda.matmul.fp32_precision == "tf32" == torch.backends.cudnn.conv.fp32_precision
        got = setup_device(torch.device("cuda", 1), deterministic=True, tf32=False)
        assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert got == {"deterministic": True, "tf32": "ieee", "cudnn_benchmark": False}
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    finally:
        torch.use_deterministic_algorithms(False)
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) = old


def test_the_tf32_policy_and_the_matmul_peak_do_not_mix_torch_apis():
    """Finding 10: bench used the old allow_tf32 switch, which raises once the new fp32_precision setting
    is used in the same process (as the trainer's TF32 policy does)."""
    from classbench.drivers.bench import matmul_peak_gflops
    from classbench.train.precision import tf32_setting

    with tf32_setting(True):
        assert matmul_peak_gflops(64, repeats=1, precision="fp32") > 0
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # the peak left the policy alone
    with tf32_setting(False):
        assert matmul_peak_gflops(64, repeats=1) > 0
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_matmul_peak_runs_at_the_benchmarked_precision(monkeypatch, precision, dtype):
    """Issue #19: `bench --matmul-peak` compares bf16 models against a bf16 peak, not an fp32 one."""
    from classbench.drivers.bench import matmul_peak_gflops

    seen = []
    real_mm = torch.mm

    def mm(a, b, out):  # records the dtype; computes in fp32 (a CPU without bf16 units is slow at it)
        seen.append(a.dtype)
        return out.copy_(real_mm(a.float(), b.float()))

    monkeypatch.setattr(torch, "mm", mm)
    matmul_peak_gflops(32, repeats=1, precision=precision)
    assert seen and set(seen) == {dtype}


def test_a_gpu_index_beyond_the_visible_gpus_is_refused(monkeypatch):
    from classbench.train.precision import resolve_device

    fake_gpus(monkeypatch, 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"cuda:2 but only 2 GPUs are visible"):
        resolve_device("cuda:2")


def test_a_bare_cuda_or_auto_device_gets_the_current_gpus_index(monkeypatch):
    """Found on the first real GPU (H200, torch 2.11, 2026-12-04): train.device=cuda (and auto) resolved to
    an index-less device, which torch.cuda.set_device refuses, so every single-GPU run crashed at start."""
    from classbench.train.precision import resolve_device, setup_device

    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    chosen = []

    def set_device(d):  # as strict as torch's: a device needs its index
        if isinstance(d, torch.device) and d.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{d}")
        chosen.append(torch.device(d))

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    old = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision,
           torch.backends.cudnn.conv.fp32_precision)
    try:
        for name in ("cuda", "auto"):
            device = resolve_device(name)
            assert device == torch.device("cuda", 1)
            setup_device(device)
        assert chosen == [torch.device("cuda", 1)] * 2
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.fp32_precision,
         torch.backends.cudnn.conv.fp32_precision) = old


def test_the_cpu_run_records_its_device_settings_and_deterministic_run_repeats(tiny_cfg):
    """Finding 7: train.deterministic, recorded in summary.json; two deterministic runs agree exactly."""
    from classbench.train.trainer import train

    try:
        runs = [train(tiny_cfg("train.epochs=0", "train.steps=4", "train.deterministic=true")) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = (runfolder.read_summary(r) for r in runs)
    assert a["deterministic"] is True and a["tf32"] is None and a["cudnn_benchmark"] is None
    assert a["test_loss"] == b["test_loss"] and a["best_val_top1"] == b["best_val_top1"]


# ---------------------------------------------------------------- 11, 12, 13: DDP
def test_a_batch_the_processes_do_not_divide_says_what_would():
    from classbench.train.distributed import DistInfo, check_batch

    check_batch(96, DistInfo(world_size=3))
    with pytest.raises(ConfigError) as e:
        check_batch(100, DistInfo(world_size=3))
    assert "train.batch_size=99 or 102" in str(e.value)


def test_ddp_wrap_uses_bucket_views_and_skips_the_buffer_broadcast_only_with_sync_bn(monkeypatch):
    from classbench.train import distributed

    seen = []
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **kw: seen.append(kw) or model)
    info = distributed.DistInfo(rank=0, world_size=2, device=torch.device("cpu"))
    distributed.wrap(torch.nn.Linear(2, 2), info)
    distributed.wrap(torch.nn.Linear(2, 2), info, sync_bn=True)
    assert [kw["gradient_as_bucket_view"] for kw in seen] == [True, True]
    assert [kw["broadcast_buffers"] for kw in seen] == [True, False]


def test_nccl_errors_become_exceptions_and_a_clear_message(monkeypatch):
    """Finding 12: torch's default NCCL error handling aborts the process (SIGABRT); with
    TORCH_NCCL_ASYNC_ERROR_HANDLING=2 the failed collective raises, and explain_errors words it."""
    from classbench.train import distributed

    monkeypatch.delenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", raising=False)
    distributed.nccl_error_handling()
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "2"
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # the user's own choice wins
    distributed.nccl_error_handling()
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(distributed, "_BROKEN", False)
    with pytest.raises(ClassbenchError, match="rank 1 of 2: a collective operation"):
        with distributed.explain_errors():
            raise torch.distributed.DistBackendError(
                "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE)")


def test_sync_bn_is_refused_for_a_model_without_torch_batchnorm():
    """Finding 13: model.sync_bn=true did nothing for airbench_net (its norm is its own module)."""
    from classbench.models import create_model
    from classbench.train.distributed import convert_sync_bn

    with pytest.raises(ConfigError, match="does nothing for airbench_net"):
        convert_sync_bn(create_model("airbench_net", num_classes=10), torch.device("cpu"), "airbench_net")
    with pytest.raises(ConfigError, match="needs GPUs"):  # a BatchNorm model gets the CPU message
        convert_sync_bn(create_model("resnet20", num_classes=10), torch.device("cpu"), "resnet20")


# ---------------------------------------------------------------- 8. compile fallback detection
@pytest.fixture
def cheap_compile(monkeypatch):
    """torch.compile through dynamo with the eager backend: dynamo's graphs and recompile limit, no inductor."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1):
        yield
    torch._dynamo.reset()


def _toy(width):
    from classbench.models import create_model

    torch.manual_seed(0)
    return create_model("toy_dilated", num_classes=4, width=width)


@pytest.mark.slow  # three torch.compile runs
def test_bench_compiles_each_model_afresh(cheap_compile):
    """Finding 8: after dynamo's recompile limit, later models of a family ran eager, labelled compiled."""
    from classbench.train.speed import time_steps

    for width in (4, 6, 8):  # one code object, new shapes: past the (lowered) recompile limit
        r = time_steps(_toy(width), "train", 8, steps=1, warmup=0, input_size=(3, 8, 8), compile=True)
        assert r["compile_fallback"] is False and r["compile_graphs"] > 0, width


@pytest.mark.slow  # over a second on 2 quiet cores (2026-12-02); the quick loop keeps the cheaper tests
def test_bench_reports_a_fallback_to_eager_as_such(cheap_compile, monkeypatch):
    from classbench.drivers.bench import format_bench
    from classbench.train.speed import time_steps

    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)  # as before the fix: no reset between models
    time_steps(_toy(4), "train", 8, steps=1, warmup=0, input_size=(3, 8, 8), compile=True)
    r = time_steps(_toy(6), "train", 8, steps=1, warmup=0, input_size=(3, 8, 8), compile=True)
    assert r["compile_fallback"] is True and r["compile_graphs"] == 0
    row = {"model": "toy_dilated", "mode": "train", "compile": "fallback", "compile_s": r["compile_s"]}
    assert "fallback" in format_bench([row])


# ---------------------------------------------------------------- 9. the clocks
def test_the_first_cuda_step_is_warm_up_and_wall_img_per_s_counts_it(monkeypatch):
    from classbench.train.meter import Meter

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    m = Meter(torch.device("cuda", 0))
    m.start()
    m.count(10)
    time.sleep(0.05)  # CUDA start-up in the first step
    m.exclude_first_step(compiled=False)
    m.count(10)
    time.sleep(0.01)
    m.pause()
    assert m.warmup_time >= 0.05 and m.compile_time == 0 and m.train_images == 10 and m.train_time < 0.05
    assert m.wall_img_per_s() == pytest.approx(20 / m.wall(), rel=0.05)
    restored = Meter(torch.device("cpu"))
    restored.load_state_dict(m.state_dict())
    assert restored.warmup_time == m.warmup_time and restored.excluded_images == 10


def test_the_accuracy_clock_leaves_checkpoint_writes_out(tiny_cfg, monkeypatch):
    from classbench.train import recorder
    from classbench.train.trainer import train

    real = recorder.save_checkpoint
    monkeypatch.setattr(recorder, "save_checkpoint", lambda *a, **k: (time.sleep(0.2), real(*a, **k)))
    run_dir = train(tiny_cfg("train.epochs=0", "train.steps=4", "eval.every=2", "eval.splits=[val]"))
    evals = [r for r in runfolder.read_metrics(run_dir) if r["split"] == "val"]
    # the 2nd evaluation comes after best.pt and last.pt of the 1st: >= 0.4 s of writes
    assert evals[1]["time"] - evals[1]["time_no_ckpt"] >= 0.4
    s = runfolder.read_summary(run_dir)
    assert s["checkpoint_time_s"] >= 0.6 and s["warmup_time_s"] == 0  # no warm-up rule on CPU without compile
    assert 0 < s["wall_img_per_s"] < s["train_img_per_s"]


# ---------------------------------------------------------------- issue #19: compile=auto
def test_compile_auto_decision_rule():
    from classbench.train.compile_choice import MEASURED, MIN_STEPS, decide

    kw = dict(model="mcvit_tiny", kind="cpu:amx", precision="bf16", batch_size=256)
    gain = MEASURED[("mcvit_tiny", "cpu:amx", "bf16")]
    # break-even: steps x step time x (1 - 1/speedup) = compile time
    even = gain.compile_s / ((256 / gain.eager_img_per_s) * (1 - 1 / gain.speedup))
    assert decide("auto", steps=int(even * 0.9), **kw)[0] is False
    on, why = decide("auto", steps=int(even * 1.1) + MIN_STEPS, **kw)
    assert on is True and why.startswith("auto:")
    assert decide("auto", steps=MIN_STEPS - 1, **{**kw, "batch_size": 10**6})[0] is False
    assert decide("auto", steps=10**6, **{**kw, "kind": "cuda"}) == \
        (False, "auto: compiling mcvit_tiny on cuda in bf16 was not measured")
    # a gain measured with AMX does not hold on a CPU with AVX-512 BF16 alone
    assert decide("auto", steps=10**6, **{**kw, "kind": "cpu:avx512_bf16"}) == \
        (False, "auto: compiling mcvit_tiny on cpu:avx512_bf16 in bf16 was not measured")
    assert decide("auto", steps=10**6, model="airbench_net", kind="cpu:avx512", precision="fp32", batch_size=512)[0] is False
    # per model, not per family: a wider ViT of the same family was measured slower compiled, and an
    # unmeasured one is not compiled on its family's word
    on, why = decide("auto", steps=10**6, model="vitn_12x256_p8", kind="cpu:amx", precision="bf16", batch_size=128)
    assert on is False and "measured no faster" in why
    assert decide("auto", steps=10**6, model="vitn_12x256_p8_ra", kind="cpu:amx", precision="bf16",
                  batch_size=128) == (False, "auto: compiling vitn_12x256_p8_ra on cpu:amx in bf16 was not measured")
    # every row names a registered model and a kind of hardware that hardware() can return, so a renamed
    # model or kind cannot leave a row that never matches
    from classbench.models import list_models
    from classbench.train.compile_choice import hardware
    assert {name for name, _, _ in MEASURED} <= set(list_models())
    kinds = {hardware("cpu", p, frozenset(f)) for p in ("bf16", "fp32")
             for f in ({"amx_bf16", "avx512_bf16", "avx512f", "avx2"}, {"avx512_bf16", "avx512f", "avx2"}, {"avx2"}, set())}
    assert {kind for _, kind, _ in MEASURED} <= kinds | {"cuda"}
    assert decide("on", steps=1, **kw) == (True, "train.compile=on")
    assert decide("off", steps=10**6, **kw) == (False, "train.compile=off")


def test_compile_hardware_is_detected_from_the_cpu_flags():
    from classbench.train.compile_choice import hardware

    xeon_amx = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    zen4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
    zen1 = frozenset({"avx2", "fma"})  # the AMD EPYC family 23 model 1 of 2026-12-03
    assert [hardware("cpu", "bf16", f) for f in (xeon_amx, zen4, zen1)] == ["cpu:amx", "cpu:avx512_bf16", "cpu:no-bf16"]
    # fp32 matmuls never use AMX: the Xeon and Zen 4 are one kind in fp32
    assert [hardware("cpu", "fp32", f) for f in (xeon_amx, zen4, zen1, frozenset())] == \
        ["cpu:avx512", "cpu:avx512", "cpu:avx2", "cpu:no-avx2"]
    assert hardware("cuda", "bf16") == "cuda"
    assert hardware("cpu", "fp32").startswith("cpu:")  # this machine's own flags


def test_compile_auto_is_the_default_and_never_compiles_a_short_run(tiny_cfg, monkeypatch):
    from classbench.config import load_config
    from classbench.train.trainer import train

    assert load_config(None, ["train.steps=1"]).train.compile == "auto"
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("a short run must not compile"))
    s = runfolder.read_summary(train(tiny_cfg("train.epochs=0", "train.steps=3")))
    assert s["compile"] is False and s["compile_choice"].startswith("auto:") and s["compile_time_s"] == 0


def test_compiled_runs_share_the_inductor_cache_under_the_runs_folder(tmp_path, monkeypatch):
    from classbench.train.compile_choice import use_shared_inductor_cache

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    path = use_shared_inductor_cache(tmp_path / "runs")
    assert path == (tmp_path / "runs").resolve() / ".cache" / "inductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(path)
    assert use_shared_inductor_cache(tmp_path / "other") == path  # a second run of the sweep: the same cache
    (tmp_path / "runs").mkdir(exist_ok=True)
    assert runfolder.discover(tmp_path / "runs") == []  # the cache is not a run


# ---------------------------------------------------------------- benchmarks/gpu_check.sh
@pytest.mark.slow
def test_gpu_check_script_passes_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    env.pop("CLASSBENCH_DATA", None)  # the fast recipe is skipped with a message
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert "torch" in (out / "versions.txt").read_text()
    resume = json.loads((out / "resume_check.json").read_text())
    assert resume["single"]["equal"] is True
    bench = json.loads((out / "bench.json").read_text())
    assert {r["model"] for r in bench["rows"] if not r.get("compile")} == {"airbench_net", "resnet18", "mcvit_tiny"}
    assert [r["compile"] for r in bench["rows"] if r.get("compile")] == [True]  # compiled, no fallback
    assert "skipped" in (out / "fast_recipe.txt").read_text()
