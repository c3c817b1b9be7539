"""Training throughput of one process against N DDP processes (torchrun, gloo on CPU / NCCL on GPUs).

Both runs train the same config for the same number of steps with the same
global batch; the figure is ``train_img_per_s`` from each run's summary.json
(training steps only: evaluation, checkpoints and start-up are not counted).

    python benchmarks/ddp_throughput.py                       # resnet20, real CIFAR-10 if found, else synthetic
    python benchmarks/ddp_throughput.py --model mcvit_tiny --config configs/cifar10/mcvit-tiny.yaml --steps 30
    python benchmarks/ddp_throughput.py --nproc 4 --data synthetic

The single process uses all physical cores (train.threads=0); each of the N
processes gets cores // N (see classbench/train/launch.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cifar_root() -> str | None:
    for root in (os.environ.get("CLASSBENCH_DATA"), str(REPO.parent / "shared" / "datasets")):
        if root and (Path(root) / "cifar-10-batches-py").is_dir():
            return root
    return None


def run(nproc: int, config: str, overrides: list[str], runs_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "classbench", "train", config, *overrides, f"train.runs_dir={runs_dir}"]
    if nproc > 1:
        cmd[4:4] = ["--nproc", str(nproc)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    (summary,) = runs_dir.glob("*/*/*/summary.json")
    s = json.loads(summary.read_text())
    s["command_wall_s"] = wall
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/cifar10/resnet20.yaml")
    ap.add_argument("--model", default=None, help="model.name override (default: the config's)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128, help="the global batch of both runs")
    ap.add_argument("--data", choices=("auto", "cifar10", "synthetic"), default="auto")
    args = ap.parse_args()

    root = cifar_root() if args.data in ("auto", "cifar10") else None
    if args.data == "cifar10" and root is None:
        sys.exit("real CIFAR-10 not found: set CLASSBENCH_DATA or use --data synthetic")
    data = ([f"data.root={root}", "data.name=cifar10", "data.val_size=0", "data.test_size=1000"] if root else
            ["data.name=synthetic", "data.num_classes=10", "data.synthetic_size=8192", "data.image_size=32",
             "data.val_size=0"])
    overrides = [*data, f"train.steps={args.steps}", "train.epochs=0", f"train.batch_size={args.batch_size}",
                 "eval.splits=[test]", f"eval.every={args.steps}", f"log.every={max(1, args.steps // 4)}",
                 "log.progress=never", "train.precision=fp32"]
    if args.model:
        overrides.append(f"model.name={args.model}")

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"config {args.config} {' '.join(overrides)}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, args.nproc):
            s = run(n, args.config, overrides, Path(tmp) / f"n{n}")
            results[n] = s
            print(f"{n} process(es) x {s['threads']} thread(s), {s['device']}: "
                  f"{s['train_img_per_s']:.1f} train img/s ({s['steps']} steps of global batch {s['batch_size']}, "
                  f"train {s['train_time_s']:.1f} s, command {s['command_wall_s']:.1f} s wall)")
    one, many = results[1]["train_img_per_s"], results[args.nproc]["train_img_per_s"]
    print(f"speed-up of {args.nproc} processes over 1: {many / one:.2f}x; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
