"""Attention kernels on this device: ``F.scaled_dot_product_attention`` against explicit
``softmax(q k^T) v``, forward + backward, per (batch, heads, tokens, head dim) and dtype.

The figures behind :func:`classbench.layers.attention.sdpa_is_faster`, which picks the
kernel at run time (docs/perf-measurements.md, "Attention kernels").

    python benchmarks/attention_kernels.py [--threads N] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (batch, heads, tokens, head dim): classbench's ViTs on 32x32 images (17, 65, 257 tokens) and the crossovers.
SHAPES = [(256, 4, 17, 64), (256, 4, 65, 12), (256, 4, 65, 64), (256, 4, 97, 64), (256, 4, 129, 64),
          (128, 4, 193, 64), (128, 4, 257, 64), (256, 4, 129, 12), (128, 4, 257, 12), (64, 4, 1025, 64)]


def time_attention(shape, dtype, kernel: str, repeats: int) -> float:
    """Median ms of one forward + backward."""
    b, h, n, d = shape
    q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(b, h, n, d, dtype=dtype)

    def run():
        if kernel == "explicit":
            out = ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out.backward(grad)

    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: physical cores)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    from classbench.train.precision import setup_threads

    threads = setup_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} threads, cpu capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'shape (B, h, N, d)':22s} {'dtype':9s} {'sdpa ms':>9s} {'explicit ms':>12s} {'sdpa/explicit':>14s}")
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            sdpa = time_attention(shape, dtype, "sdpa", args.repeats)
            explicit = time_attention(shape, dtype, "explicit", args.repeats)
            print(f"{str(shape):22s} {str(dtype)[6:]:9s} {sdpa:9.1f} {explicit:12.1f} {sdpa / explicit:14.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
