"""classbench's trainer against the training loop most tutorials write, side by side in one run.

The reference loop is the plain PyTorch recipe of the CIFAR tutorials and of many
reference projects: a ``torch.utils.data.Dataset`` that returns one image at a
time with per-sample transforms (random crop with 4 px zero padding, horizontal
flip, normalise; written in torch, as torchvision is not used here), a
``DataLoader`` with ``shuffle=True`` and worker processes, NCHW tensors, eager
fp32, ``optimizer.zero_grad()`` and ``loss.item()`` every step.

classbench's side is ``classbench.train.trainer.Trainer`` on the same data, the
same model, batch and number of steps (its own fast path: device-resident uint8
data with one batched gather per batch, channels_last where the registry says so,
foreach SGD, no per-step host sync, its CPU allocator setting, bf16 autocast where
the CPU has bf16 units).  Each side runs in a fresh interpreter, since the trainer's
allocator setting and the thread pools are process-wide; with ``--repeats`` the pairs
are interleaved (reference, classbench, reference, ...) so that a change in machine
load hits both sides alike, and the median ratio is reported.

Both img/s figures are (images of the timed steps) / (their wall time), after
``--warmup`` untimed steps; the trainer's come from its metrics.jsonl windows
(its clock stops for logging, evaluation and checkpoints).

    python benchmarks/reference_loop.py --model resnet18 resnet20 mcvit_tiny --batch-size 256 --steps 10 \
        --repeats 3 --data real --json ratios.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from classbench.config import load_config  # noqa: E402
from classbench.data import build_data  # noqa: E402
from classbench.io import atomic_write_json, read_jsonl  # noqa: E402
from classbench.models import create_model  # noqa: E402
from classbench.train.precision import default_threads, setup_threads  # noqa: E402


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


def measure(side: str, model: str, args: argparse.Namespace) -> dict:
    """One side (``reference`` or ``classbench``) for one model, in this process."""
    threads = setup_threads(args.threads)
    total = args.warmup + args.steps
    if args.data == "synthetic":
        data_over = ["data.name=synthetic", "data.image_size=32", "data.num_classes=10",
                     f"data.synthetic_size={args.batch_size * total}", "data.val_size=0",
                     f"data.test_size={args.batch_size}"]
    else:
        data_over = ["data.name=cifar10", "data.val_size=0", f"data.test_size={args.batch_size}"]
    common = [*data_over, f"model.name={model}", f"train.batch_size={args.batch_size}",
              f"train.threads={threads}", "optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9",
              "optim.weight_decay=5e-4", "sched.name=constant", "eval.splits=[test]", "train.device=cpu"]
    if side == "reference":
        data = build_data(load_config(None, [*common, "train.steps=1"]).data)
        return reference_loop(model, data, args.batch_size, args.steps, args.warmup, args.workers)
    return classbench_loop(common, args.batch_size, args.steps, args.warmup)


def measure_in_child(side: str, model: str, argv: list[str]) -> dict:
    """``measure`` in a fresh interpreter: the trainer's allocator setting and thread pools are process-wide,
    so each side starts from the same clean process, whichever ran before."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--model", model]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} loop for {model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["resnet18"], help="one or more registered models")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each loop")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=1,
                    help="reference/classbench pairs per model, interleaved; the ratio reported is the median")
    ap.add_argument("--data", choices=("real", "synthetic"), default="synthetic",
                    help="real: CIFAR-10 from $CLASSBENCH_DATA (or data.root); synthetic: generated images")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference (tutorials: 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both (default: physical cores)")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--side", choices=("reference", "classbench"), help=argparse.SUPPRESS)  # a child's one job
    args = ap.parse_args(argv)
    if args.side:
        print(json.dumps(measure(args.side, args.model[0], args)))
        return {}

    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1; got {args.repeats}")
    shared = child_argv(args)
    out: dict = {"batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "data": args.data,
                 "threads": args.threads or default_threads(), "workers": args.workers, "repeats": args.repeats,
                 "loadavg_start": os.getloadavg()[0], "models": {}}
    for model in args.model:
        pairs = []
        for rep in range(args.repeats):
            ref = measure_in_child("reference", model, shared)
            cb = measure_in_child("classbench", model, shared)
            pairs.append({"reference_img_per_s": ref["img_per_s"], "classbench_img_per_s": cb["img_per_s"],
                          "ratio": cb["img_per_s"] / ref["img_per_s"]})
            print(f"{model:12s} rep {rep + 1}: reference {ref['img_per_s']:8.1f} img/s  classbench "
                  f"{cb['img_per_s']:8.1f} img/s  ({cb['precision']}, channels_last={cb['channels_last']}, "
                  f"threads={cb['threads']})  ratio {pairs[-1]['ratio']:.2f}x", flush=True)
        ratios = [p["ratio"] for p in pairs]
        out["models"][model] = {"ratio": statistics.median(ratios), "ratio_min": min(ratios),
                                "ratio_max": max(ratios), "precision": cb["precision"],
                                "channels_last": cb["channels_last"], "pairs": pairs}
    out["loadavg_end"] = os.getloadavg()[0]
    print(f"\nbatch {args.batch_size}, {args.steps} timed steps after {args.warmup}, {args.data} data, "
          f"{args.repeats} interleaved pair(s) per model, load average {out['loadavg_start']:.2f} -> "
          f"{out['loadavg_end']:.2f}")
    print(f"{'model':12s} {'trainer/reference':>18s}  {'range':>11s}")
    for model, r in out["models"].items():
        print(f"{model:12s} {r['ratio']:17.2f}x  {r['ratio_min']:.2f}-{r['ratio_max']:.2f}")
    if args.json:
        atomic_write_json(args.json, out)
    return out


def child_argv(args: argparse.Namespace) -> list[str]:
    """The options every child shares; each child is then told its side and its one model."""
    return ["--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--data", args.data, "--workers", str(args.workers), "--threads", str(args.threads)]


if __name__ == "__main__":
    main()
