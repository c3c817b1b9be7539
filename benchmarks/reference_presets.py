"""Parameters, forward FLOPs and (optionally) training speed of every reference preset in configs/references.yaml.

Several reference presets are a registered model plus options (``resnet18`` with ``stem=imagenet``,
``vgg16`` with ``classifier=mlp``, ...).  This builds each config's own model (``model.args``,
``model.channels_last``) and measures it with the code of ``classbench models`` (``count_params``/``count_flops``)
and of ``classbench bench`` (``bench_model``, in a process set up by its ``setup_process``): a row's img/s is
what ``classbench bench MODEL --mode train --precision fp32 --model-arg KEY=VALUE ...`` reports.

    python benchmarks/reference_presets.py                       # params and FLOPs (no compute: meta device)
    python benchmarks/reference_presets.py --bench --batch-size 128 --steps 5 --only s002-resnet18
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from classbench.config import load_config  # noqa: E402
from classbench.drivers.bench import bench_model, setup_process  # noqa: E402
from classbench.models import create_model  # noqa: E402
from classbench.models.profile import count_flops, count_params  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", action="store_true", help="also time the training step (fp32, CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", nargs="*", default=None, help="reference ids to include (default: all)")
    args = p.parse_args(argv)
    setup_process("cpu", "fp32", args.threads)
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
            (r,) = bench_model(cfg.model.name, ("train",), batch_size=args.batch_size, steps=args.steps,
                               warmup=args.warmup, channels_last=cfg.model.channels_last, precision="fp32",
                               device="cpu", num_classes=classes, model_args=dict(cfg.model.args))
            row += f" {r['img_per_s']:.1f} |" if "img_per_s" in r else f" failed: {r['error']} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
