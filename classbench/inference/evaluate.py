"""Checkpoint evaluation: the one path behind ``classbench eval``, the report's best run, predict and export.

A checkpoint is evaluated exactly as the trainer evaluated it: the same data
(rebuilt from the config stored in the checkpoint), the checkpoint's own input
normalisation (``input.mean``/``input.std``), the model's memory format, the
eval batch size, autocast at the run's precision and ``eval.tta``.  So the test
top-1 of a run folder's best.pt here equals summary.json's ``test_top1``.

    m = evaluate_checkpoint("runs/cifar10/resnet20/20261201-101500")   # best.pt on test
    m["top1"], m["top5"], m["loss"], m["count"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, from_yaml_text
from ..data.loader import Normalize
from ..errors import ClassbenchError
from ..models.registry import uses_channels_last
from ..runfolder import data_config_for_reader, resolve_checkpoint
from ..train.checkpoint import build_model_from_checkpoint, load_checkpoint


@dataclass
class LoadedCheckpoint:
    path: Path
    ckpt: dict[str, Any]
    model: torch.nn.Module  # eval mode, weights loaded, on the CPU until moved

    @property
    def normalize(self) -> Normalize:
        """The pixel normalisation the model was trained with (none when the model normalises itself)."""
        inp = self.ckpt.get("input") or {}
        return Normalize(inp.get("mean"), inp.get("std"))

    @property
    def config(self) -> Config:
        return from_yaml_text(self.ckpt.get("config") or "", f"The config stored in {self.path}")

    @property
    def channels_last(self) -> bool:
        return uses_channels_last(self.ckpt["model_name"], self.config.model.channels_last)


def load_model(target: str | Path, kind: str = "best") -> LoadedCheckpoint:
    """A run folder (its checkpoints/<kind>.pt) or a checkpoint file -> the rebuilt model in eval mode."""
    path = resolve_checkpoint(target, kind)
    ckpt = load_checkpoint(path)
    return LoadedCheckpoint(path, ckpt, build_model_from_checkpoint(ckpt, str(path)))


def evaluate_checkpoint(target: str | Path, *, split: str = "test", kind: str = "best", device: str = "auto",
                        with_predictions: bool = False, limit: int | None = None, tta: bool | None = None) -> dict:
    """loss, top1, top5 and count of a checkpoint on ``split``; with ``with_predictions`` also ``pred`` and
    ``target`` (CPU tensors, in split order).  ``limit``: only the first ``limit`` images of the split.
    ``tta``: override the run's ``eval.tta`` (the report shows a TTA run's plain accuracy too)."""
    from ..data import build_data
    from ..data.loader import DeviceLoader
    from ..data.types import Split
    from ..train.evaluate import evaluate
    from ..train.precision import resolve_device, resolve_precision

    loaded = load_model(target, kind)
    cfg = loaded.config
    data = build_data(data_config_for_reader(cfg.data, loaded.path))  # never create or download where the run says
    if split not in data.splits:
        raise ClassbenchError(f"This run has no {split!r} split (data.val_size=0?); choose another --split.")
    images = data.splits[split]
    if limit is not None and limit < len(images.labels):
        images = Split(images.images[:limit], images.labels[:limit])
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    channels_last = loaded.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(images, cfg.eval.batch_size, train=False, device=dev, normalize=loaded.normalize,
                          channels_last=channels_last)
    m = evaluate(model, loader, precision=resolve_precision(cfg.train.precision, dev), tta=cfg.eval.tta if tta is None else tta,
                 with_predictions=with_predictions)
    m.update(checkpoint=str(loaded.path), step=loaded.ckpt["step"], classes=loaded.ckpt["classes"],
             num_classes=int(loaded.ckpt["num_classes"]), split_size=len(data.splits[split].labels))
    return m
