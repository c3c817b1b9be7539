"""Train-step throughput of one model under fp32 and bf16 autocast on this CPU.

Decides what `train.precision=auto` should pick on CPUs: run it on a machine
and compare.  Usage: python benchmarks/precision_cpu.py [MODEL] [--batch-size N] [--steps N]
"""

import argparse
import statistics
import time

import torch

from classbench.models import create_model
from classbench.train.precision import autocast, cpu_has_native_bf16, setup_threads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="resnet20")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    setup_threads(0)
    dev = torch.device("cpu")
    flags = open("/proc/cpuinfo").read().split("flags", 2)[1].split("\n")[0].split()
    print(f"cpu flags: avx512_bf16={'avx512_bf16' in flags} amx_bf16={'amx_bf16' in flags}; "
          f"native bf16 detected: {cpu_has_native_bf16()}; threads {torch.get_num_threads()}")
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=10).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch_size,))
        times = []
        for i in range(args.steps + 2):
            t = time.perf_counter()
            with autocast(precision, dev):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        print(f"{args.model} {precision}: {args.batch_size / statistics.median(times):.1f} train img/s (batch {args.batch_size})")


if __name__ == "__main__":
    main()
