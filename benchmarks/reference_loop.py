"""classbench's trainer against the training loop most tutorials write, in ONE process.

The reference loop is the plain PyTorch recipe of the CIFAR tutorials and of many
reference projects: a ``torch.utils.data.Dataset`` that returns one image at a
time with per-sample transforms (random crop with 4 px zero padding, horizontal
flip, normalise; written in torch, as torchvision is not used here), a
``DataLoader`` with ``shuffle=True`` and worker processes, NCHW tensors, eager
fp32, ``optimizer.zero_grad()`` and ``loss.item()`` every step.

classbench's side is ``classbench.train.trainer.Trainer`` on the same data, the
same model, batch and number of steps (its own fast path: device-resident uint8
data with one batched gather per batch, channels_last where the registry says so,
foreach SGD, no per-step host sync, its CPU allocator setting).  The reference runs
first, because the trainer's allocator setting is process-wide.

Both img/s figures are (images of the timed steps) / (their wall time), after
``--warmup`` untimed steps; the trainer's come from its metrics.jsonl windows
(its clock stops for logging, evaluation and checkpoints).

    python benchmarks/reference_loop.py --model resnet18 --batch-size 256 --steps 10 --data real
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from classbench.config import load_config  # noqa: E402
from classbench.data import build_data  # noqa: E402
from classbench.io import read_jsonl  # noqa: E402
from classbench.models import create_model  # noqa: E402
from classbench.train.precision import setup_threads  # noqa: E402


class PerSampleCifar(torch.utils.data.Dataset):
    """One (image, label) at a time, transformed per sample as torchvision's
    RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize would."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, pad: int = 4) -> None:
        self.images, self.labels, self.pad = images, labels, pad
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]  # uint8 (3, H, W)
        h, w = img.shape[1:]
        padded = F.pad(img, (self.pad,) * 4)
        top = int(torch.randint(0, 2 * self.pad + 1, (1,)))
        left = int(torch.randint(0, 2 * self.pad + 1, (1,)))
        img = padded[:, top : top + h, left : left + w]
        if torch.rand(1) < 0.5:
            img = img.flip(-1)
        img = img.float().div(255)
        img = (img - self.mean) / self.std
        return img, int(self.labels[i])


def reference_loop(model_name: str, data, batch_size: int, steps: int, warmup: int, workers: int,
                   lr: float = 0.1, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    train = data.splits["train"]
    ds = PerSampleCifar(train.images, train.labels, data.mean, data.std)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    model = create_model(model_name, num_classes=data.num_classes)
    model.train()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    times, running_loss, done = [], 0.0, 0
    while done < warmup + steps:
        it = iter(loader)
        while done < warmup + steps:
            t0 = time.perf_counter()
            try:
                inputs, targets = next(it)
            except StopIteration:
                break
            optimizer.zero_grad()
            outputs = model(inputs)
            outputs = outputs["logits"] if isinstance(outputs, dict) else outputs
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            times.append(time.perf_counter() - t0)
            done += 1
        del it
    timed = times[warmup:]
    return {"img_per_s": batch_size * len(timed) / sum(timed), "step_ms": [round(t * 1e3, 1) for t in times],
            "loss": running_loss / len(times)}


def classbench_loop(overrides: list[str], batch_size: int, steps: int, warmup: int) -> dict:
    from classbench.train.trainer import Trainer

    runs = tempfile.mkdtemp(prefix="refloop-")
    try:
        cfg = load_config(None, [*overrides, f"train.steps={warmup + steps}", f"log.every={max(warmup, 1)}",
                                 "eval.every=1000000", f"train.runs_dir={runs}", "log.progress=never"])
        run_dir = Trainer(cfg).fit()
        lines = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["split"] == "train"]
        summary = json.loads((run_dir / "summary.json").read_text())
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    images = seconds = 0.0
    prev = 0
    for r in lines:
        n = (r["step"] - prev) * batch_size
        if r["step"] > warmup:  # windows after the warm-up window
            images += n
            seconds += n / r["img_per_s"]
        prev = r["step"]
    return {"img_per_s": images / seconds, "channels_last": summary["channels_last"],
            "precision": summary["precision"], "threads": summary["threads"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each loop")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--data", choices=("real", "synthetic"), default="synthetic",
                    help="real: CIFAR-10 from $CLASSBENCH_DATA (or data.root); synthetic: generated images")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference (tutorials: 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both (default: physical cores)")
    ap.add_argument("--skip-reference", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    threads = setup_threads(args.threads)
    total = args.warmup + args.steps
    if args.data == "synthetic":
        data_over = ["data.name=synthetic", "data.image_size=32", "data.num_classes=10",
                     f"data.synthetic_size={args.batch_size * total}", "data.val_size=0",
                     f"data.test_size={args.batch_size}"]
    else:
        data_over = ["data.name=cifar10", "data.val_size=0", f"data.test_size={args.batch_size}"]
    common = [*data_over, f"model.name={args.model}", f"train.batch_size={args.batch_size}",
              f"train.threads={threads}", "optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9",
              "optim.weight_decay=5e-4", "sched.name=constant", "eval.splits=[test]", "train.device=cpu"]
    cfg = load_config(None, [*common, "train.steps=1"])
    data = build_data(cfg.data)

    out: dict = {"model": args.model, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
                 "data": args.data, "threads": threads, "workers": args.workers}
    if not args.skip_reference:
        ref = reference_loop(args.model, data, args.batch_size, args.steps, args.warmup, args.workers)
        out["reference_img_per_s"] = ref["img_per_s"]
        print(f"reference loop : {ref['img_per_s']:8.1f} img/s  (NCHW, DataLoader workers={args.workers}, "
              f"per-sample transforms, loss.item() each step; steps ms {ref['step_ms']})", flush=True)
    cb = classbench_loop(common, args.batch_size, args.steps, args.warmup)
    out["classbench_img_per_s"] = cb["img_per_s"]
    print(f"classbench     : {cb['img_per_s']:8.1f} img/s  (Trainer: channels_last={cb['channels_last']}, "
          f"precision={cb['precision']}, threads={cb['threads']})")
    if "reference_img_per_s" in out:
        out["ratio"] = out["classbench_img_per_s"] / out["reference_img_per_s"]
        print(f"ratio          : {out['ratio']:.2f}x  ({args.model}, batch {args.batch_size}, {args.steps} timed "
              f"steps after {args.warmup}, {args.data} data)")
    return out


if __name__ == "__main__":
    main()
