"""DDP on CPU: two gloo processes on 127.0.0.1 against one process.

The ranks are forked from the test process (torch is already imported, so a
rank starts in milliseconds); each gets the environment torchrun would give
it.  One test goes through the real command line: `classbench train --nproc 2`
(torchrun, `python -m classbench`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from classbench.errors import ClassbenchError
from classbench.train.checkpoint import load_checkpoint
from classbench.train.precision import default_threads
from classbench.train.trainer import Trainer, resume, train

from conftest import REPO, TINY
from support.runs import metrics_without_timing
from support.stops import at_step

BASE = [o for o in TINY if not o.startswith("model.")]
# A BatchNorm-free ResNet-20: DDP with batch B/2 per rank then equals one process with batch B.
DDP = [*BASE, "model.name=resnet20", "model.args={norm: none}", "optim.name=sgd", "optim.lr=0.005",
       "optim.weight_decay=5e-4", "data.val_size=63", "train.batch_size=32", "train.steps=8", "train.epochs=0",
       "eval.every=3", "log.every=2"]
# BN and MixStyle: randomness from the global RNG of each rank, for the resume test.
MIXSTYLE = [*BASE, "model.name=resnet20", "model.args={mixstyle_stages: [1, 2]}", "train.steps=8",
            "train.epochs=0", "eval.every=3", "log.every=3", "train.checkpoint_every=5"]
RANK_TIMEOUT = 90

pytestmark = [
    pytest.mark.slow,  # every test here starts processes (one per rank)
    pytest.mark.skipif(not torch.distributed.is_available() or sys.platform != "linux",
                       reason="needs torch.distributed (gloo) and fork"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, fn, args, q, dist_timeout):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), CLASSBENCH_DIST_TIMEOUT=str(dist_timeout))
    torch.set_num_threads(1)
    try:
        q.put((rank, "ok", fn(rank, *args)))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        q.put((rank, type(e).__name__, f"{e}\n{traceback.format_exc() if not isinstance(e, ClassbenchError) else ''}"))


def run_ranks(fn, *args, world=2, dist_timeout=30, timeout=RANK_TIMEOUT):
    """Run fn(rank, *args) in `world` forked ranks; returns {rank: (outcome, value)} and the exit codes."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, fn, args, q, dist_timeout)) for r in range(world)]
    for p in procs:
        p.start()
    results, deadline = {}, time.monotonic() + timeout
    try:
        while len(results) < world and time.monotonic() < deadline:
            try:
                rank, outcome, value = q.get(timeout=0.5)
                results[rank] = (outcome, value)
            except Exception:  # noqa: BLE001 - queue.Empty: check for ranks that died silently
                if all(not p.is_alive() for p in procs) and q.empty():
                    break
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert time.monotonic() < deadline, f"ranks hung: {results}"
    return results, [p.exitcode for p in procs]


def ok(results, world=2):
    for rank in range(world):
        assert rank in results, f"rank {rank} reported nothing: {results}"
        assert results[rank][0] == "ok", f"rank {rank}: {results[rank]}"
    return [results[r][1] for r in range(world)]


def tiny(runs_dir, *overrides):
    from classbench.config import load_config

    return load_config(None, [*overrides, f"train.runs_dir={runs_dir}"])


def _train_rank(rank, runs_dir, overrides):
    return str(train(tiny(runs_dir, *overrides)))


@pytest.fixture(scope="module")
def mixstyle_reference(tmp_path_factory):
    """An uninterrupted 2-process run of the MixStyle config."""
    results, _ = run_ranks(_train_rank, tmp_path_factory.mktemp("ddp_ref"), MIXSTYLE)
    a, b = ok(results)
    assert a == b
    return Path(a)


# ---------------------------------------------------------------- same result as one process
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = train(tiny(tmp_path / "one", *DDP))
    results, _ = run_ranks(_train_rank, tmp_path / "two", DDP)
    dirs = ok(results)
    assert dirs[0] == dirs[1]  # every rank knows the run folder
    ddp = Path(dirs[0])
    # only rank 0 writes: one run folder, with everything in it
    assert [p.name for p in (tmp_path / "two" / "synthetic" / "unnamed").iterdir()] == [ddp.name]
    for f in ("config.yaml", "env.json", "metrics.jsonl", "status.json", "summary.json",
              "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (ddp / f).is_file(), f

    a, b = load_checkpoint(single / "checkpoints/last.pt"), load_checkpoint(ddp / "checkpoints/last.pt")
    assert a["step"] == b["step"] == 8 and b["world_size"] == 2 and len(b["ranks"]) == 2
    # Two ranks sum the gradient in another order than one process, so the weights drift apart by
    # float rounding: up to 4.4e-5 after 8 steps on a 2-core AMD EPYC (AVX2). A wrong shard or a
    # missing all-reduce moves them by 1e-2 or more.
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-3, atol=2e-4, msg=lambda m: f"{k}: {m}")

    s1 = json.loads((single / "summary.json").read_text())
    s2 = json.loads((ddp / "summary.json").read_text())
    assert s2["world_size"] == 2 and s2["batch_size"] == 32 and s2["steps"] == 8
    assert s2["test_top1"] == pytest.approx(s1["test_top1"], abs=0.02)
    # test predictions: the ranks' shards gathered back into test-split order
    from classbench.runfolder import read_test_outcomes

    p1, p2 = read_test_outcomes(single), read_test_outcomes(ddp)
    assert p1["labels_sha256"] == p2["labels_sha256"] and p2["correct"].mean() == pytest.approx(s2["test_top1"])
    m1, m2 = metrics_without_timing(single), metrics_without_timing(ddp)
    assert [(r["step"], r["split"]) for r in m1] == [(r["step"], r["split"]) for r in m2]
    for r1, r2 in zip(m1, m2):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4), (r1, r2)


def _eval_rank(rank, n, batch_size):
    from classbench.data.loader import DeviceLoader, Normalize
    from classbench.data.types import Split
    from classbench.models import create_model
    from classbench.train import distributed
    from classbench.train.evaluate import evaluate

    info = distributed.setup("cpu") if rank is not None else distributed.DistInfo()
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                  torch.randint(0, 10, (n,), generator=g))
    torch.manual_seed(0)
    model = create_model("toy_dilated", num_classes=10, width=8)
    loader = DeviceLoader(split, batch_size, train=False, normalize=Normalize(None, None),
                          rank=info.rank, world_size=info.world_size)
    m = evaluate(model, loader)
    return {"count": m["count"], "c1": round(m["top1"] * m["count"]), "c5": round(m["top5"] * m["count"]),
            "loss": m["loss"], "local_images": sum(len(y) for _, y in loader)}


def test_distributed_eval_counts_each_image_once():
    n = 77  # odd, and not a multiple of the eval batch: the shards have 39 and 38 images
    single = _eval_rank(None, n, 16)
    results, _ = run_ranks(_eval_rank, n, 16)
    per_rank = ok(results)
    assert [r["local_images"] for r in per_rank] == [39, 38]
    for r in per_rank:  # every rank gets the same, whole-split numbers
        assert (r["count"], r["c1"], r["c5"]) == (single["count"], single["c1"], single["c5"]) == (n, single["c1"], single["c5"])
        assert r["loss"] == pytest.approx(single["loss"], rel=1e-6)


# ---------------------------------------------------------------- resume
def _interrupted_rank(rank, runs_dir, overrides):
    # only rank 1 is "signalled", after its 3rd step
    trainer = Trainer(tiny(runs_dir, *overrides), stop_after=3 if rank == 1 else None)
    try:
        trainer.fit()
    except ClassbenchError as e:
        return {"error": type(e).__name__, "message": str(e), "run_dir": str(trainer.run_dir), "step": trainer.step}
    return {"error": None, "step": trainer.step}


def _resume_rank(rank, run_dir):
    return str(resume(run_dir))


def test_resume_under_ddp_continues_exactly(tmp_path, mixstyle_reference):
    results, _ = run_ranks(_interrupted_rank, tmp_path, MIXSTYLE)
    r0, r1 = ok(results)
    # the ranks agree on one stop step, one step after the signalled rank saw it
    assert r0["error"] == r1["error"] == "TrainingInterrupted", (r0, r1)
    assert r0["step"] == r1["step"] == 4 and "at step 4 of 8" in r0["message"]
    run_dir = Path(r0["run_dir"])
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"

    results, _ = run_ranks(_resume_rank, run_dir)
    assert ok(results) == [str(run_dir)] * 2
    ref = mixstyle_reference
    assert metrics_without_timing(run_dir) == metrics_without_timing(ref)
    a, b = load_checkpoint(ref / "checkpoints/last.pt"), load_checkpoint(run_dir / "checkpoints/last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for key in ("best_val_top1", "best_val_step", "test_top1", "test_top5", "steps"):
        assert json.loads((ref / "summary.json").read_text())[key] == json.loads((run_dir / "summary.json").read_text())[key]


def test_resume_with_another_number_of_processes_is_refused(tmp_path, mixstyle_reference):
    with pytest.raises(ClassbenchError, match=r"saved by a run on 2 process\(es\), but this run has 1"):
        resume(mixstyle_reference)
    single = train(tiny(tmp_path, *TINY, "train.steps=2", "train.epochs=0"))
    results, _ = run_ranks(_resume_rank, single)
    for rank in (0, 1):
        assert results[rank][0] == "ClassbenchError"
        assert "saved by a run on 1 process(es), but this run has 2" in results[rank][1]


# ---------------------------------------------------------------- failures
def _dying_rank(rank, runs_dir, overrides):
    die = at_step(2, lambda trainer: os._exit(3)) if rank == 1 else None  # a crash that leaves no message
    trainer = Trainer(tiny(runs_dir, *overrides), after_step=die)
    t0 = time.monotonic()
    from classbench.train import distributed

    try:
        with distributed.explain_errors():
            trainer.fit()
    except ClassbenchError as e:
        return {"message": str(e), "seconds": time.monotonic() - t0}
    return {"message": None}


def test_a_dead_rank_makes_the_others_fail_clearly_not_hang(tmp_path):
    results, codes = run_ranks(_dying_rank, tmp_path, DDP, dist_timeout=20)
    assert codes[1] == 3 and 1 not in results
    outcome, value = results[0]
    assert outcome == "ok" and value["message"], results
    assert "rank 0 of 2" in value["message"] and "Another process probably died" in value["message"]
    assert value["seconds"] < 20


def _bad_setup_rank(rank, runs_dir):
    out = {}
    for name, overrides in {"batch": ["train.batch_size=33"], "sync_bn": ["model.sync_bn=true"]}.items():
        try:
            Trainer(tiny(runs_dir, *TINY, *overrides))
            out[name] = None
        except ClassbenchError as e:
            out[name] = str(e)
    return out


def test_indivisible_batch_and_sync_bn_on_cpu_are_clear_errors(tmp_path):
    for r in ok(run_ranks(_bad_setup_rank, tmp_path)[0]):
        assert "train.batch_size=33 must be divisible by the world size 2" in r["batch"]
        assert "model.sync_bn=true needs GPUs" in r["sync_bn"]


# ---------------------------------------------------------------- the command line
def test_cli_nproc_runs_torchrun_and_python_m_classbench(tmp_path):
    env = dict(os.environ, CLASSBENCH_DIST_TIMEOUT="60", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "classbench", "train", "--nproc", "2", str(REPO / "configs/cifar10/resnet20.yaml"),
           *[o for o in DDP if not o.startswith("model.name")], "train.steps=4", f"train.runs_dir={tmp_path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = (tmp_path / "synthetic" / "resnet20").iterdir()
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["world_size"] == 2 and s["steps"] == 4
    assert s["threads"] == max(1, default_threads() // 2)  # the cores are shared by the two processes
    assert "test      top-1" in p.stdout

    # a user error in the workers comes back as their exit status (2) and message, not a torchrun traceback
    p = subprocess.run([*cmd[:6], "--resume", str(run_dir), "train.batch_size=31"], capture_output=True,
                       text=True, timeout=240, env=env, cwd=REPO)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "must be divisible by the world size 2" in p.stderr
    assert "ChildFailedError" not in p.stderr
