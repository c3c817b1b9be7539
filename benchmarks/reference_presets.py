"""Parameters, forward FLOPs and (optionally) training speed of every reference preset in configs/references.yaml.

`classbench models` and `classbench bench` take registry names only, and several reference presets are a
registered model plus options (``resnet18`` with ``stem=imagenet``, ``vgg16`` with ``classifier=mlp``, ...).
This builds each config's own model and measures it with the same code: ``count_params``/``count_flops``
(``classbench models``) and ``classbench.train.speed.time_steps`` (``classbench bench``).

    python benchmarks/reference_presets.py                       # params and FLOPs (no compute: meta device)
    python benchmarks/reference_presets.py --bench --batch-size 128 --steps 5 --only s002-resnet18
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classbench.config import load_config  # noqa: E402
from classbench.models import create_model  # noqa: E402
from classbench.models.profile import count_flops, count_params  # noqa: E402
from classbench.models.registry import uses_channels_last  # noqa: E402
from classbench.train.speed import time_steps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", action="store_true", help="also time the training step (fp32, CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", nargs="*", default=None, help="reference ids to include (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    refs = yaml.safe_load((REPO / "configs" / "references.yaml").read_text())
    print("| reference | config | original params | ours | FLOPs/img |" + (" train img/s |" if args.bench else ""))
    print("|---|---|---:|---:|---:|" + ("---:|" if args.bench else ""))
    for ref in refs:
        if args.only and ref["reference"] not in args.only:
            continue
        cfg = load_config(REPO / ref["config"])
        classes = {"cifar10": 10, "cifar100": 100}[cfg.data.name]
        with torch.device("meta"):
            meta = create_model(cfg.model.name, num_classes=classes, **cfg.model.args)
        row = (f"| {ref['reference']} | {ref['config']} | {ref['params']:,} | {count_params(meta):,} | "
               f"{count_flops(meta) / 1e6:,.1f}M |")
        if args.bench:
            torch.manual_seed(0)
            model = create_model(cfg.model.name, num_classes=classes, **cfg.model.args)
            r = time_steps(model, "train", args.batch_size, args.steps, uses_channels_last(cfg.model.name, None),
                           args.warmup, num_classes=classes, device="cpu", precision="fp32")
            row += f" {args.batch_size / statistics.median(r['times']):.1f} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
