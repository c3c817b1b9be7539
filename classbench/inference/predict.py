"""Classify image files with a trained checkpoint.

The checkpoint records how its model expects its input (``input.size``,
``input.mean``, ``input.std``); :class:`InferenceModel` wraps the model so it
takes float NCHW images in [0, 1] and applies that normalisation itself.  The
same wrapper is what ``classbench export`` writes out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import ClassbenchError


class InferenceModel(nn.Module):
    """``model`` with the checkpoint's normalisation baked in: input float (B, 3, H, W) in [0, 1], output logits."""

    def __init__(self, model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None):
        super().__init__()
        self.model = model
        channels = len(mean) if mean is not None else (len(std) if std is not None else 3)
        m = torch.tensor(list(mean) if mean is not None else [0.0] * channels, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(list(std) if std is not None else [1.0] * channels, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", m)
        self.register_buffer("inv_std", 1.0 / s)
        self.normalize = mean is not None or std is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mean) * self.inv_std
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out


@dataclass
class Predictor:
    """A loaded checkpoint ready for inference."""

    model: InferenceModel
    classes: list[str]
    input_size: tuple[int, int, int]  # (C, H, W)
    checkpoint: Path
    ckpt: dict

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities of a float batch in [0, 1]."""
        return self.model(x).float().softmax(dim=1)


def load_predictor(path: str | os.PathLike, *, device: str = "cpu") -> Predictor:
    """A run folder (its checkpoints/best.pt) or a checkpoint file -> :class:`Predictor` in eval mode."""
    from ..train.checkpoint import build_model_from_checkpoint, load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(path, "best")
    ckpt = load_checkpoint(ckpt_path)
    model = build_model_from_checkpoint(ckpt, str(ckpt_path))
    inp = ckpt.get("input") or {}
    size = inp.get("size") or [3, 32, 32]
    if len(size) != 3:
        raise ClassbenchError(f"{ckpt_path}: input.size should be [C, H, W], got {size}.")
    wrapped = InferenceModel(model, inp.get("mean"), inp.get("std")).to(device).eval()
    num_classes = int(ckpt.get("num_classes") or 0)
    classes = [str(c) for c in (ckpt.get("classes") or [])]
    if num_classes and len(classes) != num_classes:
        classes = [f"class {i}" for i in range(num_classes)]
    return Predictor(wrapped, classes, (int(size[0]), int(size[1]), int(size[2])), Path(ckpt_path), ckpt)


def load_image(path: str | os.PathLike, size: tuple[int, int, int]) -> torch.Tensor:
    """A PNG/JPEG (or any Pillow-readable) file -> float tensor (C, H, W) in [0, 1] at ``size``.

    An image of another shape is centre-cropped to the model's aspect ratio,
    then resized with an antialiasing bicubic filter.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = size
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB" if c == 3 else "L")
    except FileNotFoundError:
        raise ClassbenchError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ClassbenchError(f"Cannot read image {path}: {e}. Give PNG or JPEG files.") from None
    if im.size != (w, h):
        iw, ih = im.size
        target = w / h
        if abs(iw / ih - target) > 1e-3:  # crop the centre to the model's aspect ratio
            if iw / ih > target:
                nw = round(ih * target)
                left = (iw - nw) // 2
                im = im.crop((left, 0, left + nw, ih))
            else:
                nh = round(iw / target)
                top = (ih - nh) // 2
                im = im.crop((0, top, iw, top + nh))
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    import numpy as np

    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def predict_files(predictor: Predictor, paths: Sequence[str | os.PathLike], *, topk: int = 5, batch_size: int = 64) -> list[dict]:
    """``[{"path": ..., "predictions": [(class, probability), ...]}]``, top-``topk`` per file, most likely first."""
    if topk < 1:
        raise ClassbenchError(f"--topk must be at least 1, got {topk}.")
    device = predictor.model.mean.device
    k = min(topk, len(predictor.classes) or topk)
    results = []
    for i in range(0, len(paths), batch_size):
        chunk = list(paths[i : i + batch_size])
        x = torch.stack([load_image(p, predictor.input_size) for p in chunk]).to(device)
        probs = predictor.probabilities(x)
        k = min(k, probs.shape[1])
        top = probs.topk(k, dim=1)
        for p, vals, idx in zip(chunk, top.values.tolist(), top.indices.tolist()):
            names = [predictor.classes[j] if j < len(predictor.classes) else f"class {j}" for j in idx]
            results.append({"path": str(p), "predictions": list(zip(names, vals))})
    return results


def format_predictions(results: list[dict]) -> str:
    lines = []
    width = max((len(c) for r in results for c, _ in r["predictions"]), default=5)
    for r in results:
        lines.append(str(r["path"]))
        for rank, (name, prob) in enumerate(r["predictions"], start=1):
            lines.append(f"  {rank:>2}. {name:<{width}}  {100 * prob:6.2f}%")
    return "\n".join(lines) + "\n"
