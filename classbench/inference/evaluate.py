"""Evaluate a saved checkpoint exactly as the trainer did: same data, normalisation and batch size."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import from_yaml_text
from ..data import build_data
from ..data.loader import DeviceLoader, Normalize
from ..errors import ClassbenchError
from ..models import get_entry
from ..train.checkpoint import build_model_from_checkpoint, load_checkpoint, resolve_checkpoint
from ..train.evaluate import evaluate
from ..train.precision import resolve_device, resolve_precision


def evaluate_checkpoint(target: str | Path, *, split: str = "test", kind: str = "best", device: str = "auto",
                        with_predictions: bool = False) -> dict:
    path = resolve_checkpoint(target, kind)
    ckpt = load_checkpoint(path)
    cfg = from_yaml_text(ckpt["config"])
    data = build_data(cfg.data)
    if split not in data.splits:
        raise ClassbenchError(f"This run has no {split!r} split (data.val_size=0?); choose another --split.")
    dev = resolve_device(device)
    model = build_model_from_checkpoint(ckpt, str(path)).to(dev)
    entry = get_entry(cfg.model.name)
    channels_last = entry.channels_last if cfg.model.channels_last is None else cfg.model.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inp = ckpt["input"]
    loader = DeviceLoader(data.splits[split], cfg.eval.batch_size, train=False, device=dev,
                          normalize=Normalize(inp["mean"], inp["std"]), channels_last=channels_last)
    m = evaluate(model, loader, precision=resolve_precision(cfg.train.precision, dev), tta=cfg.eval.tta,
                 with_predictions=with_predictions)
    m.update(checkpoint=str(path), step=ckpt["step"], classes=ckpt["classes"])
    return m
