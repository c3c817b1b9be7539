"""Augmentation throughput on this CPU against resnet20's training step (issue #18).

Times, at batch 512 on 32x32 images: every policy operation applied to the whole batch, each
augmentation stage as the training loader runs it (`DeviceLoader` batches, the per-epoch
parameter draw included), Mixup/CutMix, the full stack, and one resnet20 training step (forward,
backward, SGD) for scale.  Stages are timed interleaved, `--repeats` times; the report gives the
median of the repeats with their range, and each stage's cost as a share of the resnet20 step.

Usage: python benchmarks/augment_throughput.py [--batch-size 512] [--repeats 3] [--batches 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from classbench.data.augment import OP, OPS, Augment, apply_ops, magnitude_table
from classbench.data.loader import DeviceLoader, Normalize
from classbench.data.types import Split
from classbench.models import create_model
from classbench.train.mixing import Mixer
from classbench.train.precision import setup_threads

# The loader stages: (name, Augment or None for today's pad-crop + flip, mixer alphas).
STAGES = [
    ("pad-crop + flip (today)", None, None),
    ("randaugment n=2 m=9", Augment(policy="randaugment"), None),
    ("trivialaugment", Augment(policy="trivialaugment"), None),
    ("autoaugment (cifar10)", Augment(policy="autoaugment"), None),
    ("resized crop + flip", Augment(crop="resized"), None),
    ("rotate 15", Augment(rotate=15), None),
    ("cutout 16", Augment(cutout=16), None),
    ("mixup 0.8 / cutmix 1.0", None, (0.8, 1.0)),
    ("full stack", Augment(policy="randaugment", crop="resized", rotate=15, cutout=16), (0.8, 1.0)),
]


def cpu_description() -> str:
    model, flags = platform.processor() or "?", []
    try:
        info = open("/proc/cpuinfo").read()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line for line in info.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        pass
    simd = [f for f in flags if f.startswith(("avx", "amx"))]
    return f"{model}, {os.cpu_count()} logical CPUs, SIMD flags: {' '.join(simd) or 'unknown'}"


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def loader_seconds_per_batch(split: Split, batch: int, augment: Augment | None, alphas, batches: int) -> float:
    """Seconds per batch of whole epochs of the training loader (the epoch's parameter draw included)."""
    loader = DeviceLoader(split, batch, train=True, normalize=Normalize((0.5,) * 3, (0.25,) * 3), pad=4, flip=True,
                          augment=augment, channels_last=True)
    mixer = Mixer(*alphas, seed=0) if alphas else None
    assert len(loader) == batches

    def epoch():
        for x, y in loader:
            if mixer is not None:
                mixer(x, y)

    return median_time(epoch, 1) / batches


def resnet20_step_seconds(batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return median_time(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8, help="batches per timed loader epoch")
    ap.add_argument("--steps", type=int, default=4, help="timed resnet20 steps per repeat")
    args = ap.parse_args()
    setup_threads(0)
    b = args.batch_size
    print(f"cpu: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (b * args.batches, 3, 32, 32), generator=g, dtype=torch.uint8),
                  torch.arange(b * args.batches) % 10)
    x = split.images[:b].float()
    table = magnitude_table("randaugment", 32, 32)

    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        results.setdefault("resnet20 train step", []).append(resnet20_step_seconds(b, args.steps))
        for name in OPS[1:]:  # each operation on every image of the batch, magnitude bin 9, random signs
            op = torch.full((b,), OP[name])
            sign = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
            value = table[op, 9] * (sign if name not in ("posterize", "solarize") else 1.0)
            results.setdefault(f"op {name}", []).append(median_time(lambda: apply_ops(x.clone(), op, value, op), 5))
        for name, augment, alphas in STAGES:
            results.setdefault(f"loader: {name}", []).append(
                loader_seconds_per_batch(split, b, augment, alphas, args.batches))

    step = statistics.median(results["resnet20 train step"])
    base = statistics.median(results["loader: pad-crop + flip (today)"])
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"\nbatch {b}, 32x32; median of {args.repeats} repeats [min-max]; extra = loader time minus today's "
          "pad-crop + flip; % = share of one resnet20 training step\n")
    print(f"| what | ms/batch [range] | images/s | extra ms | extra % of step |\n|---|---:|---:|---:|---:|")
    for name, times in results.items():
        med = statistics.median(times)
        extra = med - base if name.startswith("loader: ") else (med if name.startswith("op ") else None)
        share = "" if extra is None else f"{100 * extra / step:.1f}"
        print(f"| {name} | {1000 * med:.1f} [{1000 * min(times):.1f}-{1000 * max(times):.1f}] | {b / med:,.0f} | "
              f"{'' if extra is None else f'{1000 * extra:.1f}'} | {share} |")


if __name__ == "__main__":
    main()
