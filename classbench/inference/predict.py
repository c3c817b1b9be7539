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

from ..data.loader import Normalize
from ..errors import ClassbenchError
from ..models.registry import logits_of
from .evaluate import load_model


class InferenceModel(nn.Module):
    """``model`` with the checkpoint's normalisation baked in: input float (B, 3, H, W) in [0, 1], output logits.

    The normalisation is the training loader's (:class:`~classbench.data.loader.Normalize`), taken for inputs
    already divided by 255.
    """

    def __init__(self, model: nn.Module, normalize: Normalize):
        super().__init__()
        self.model = model
        scale, shift = normalize.affine(torch.device("cpu"))  # for uint8 pixels: x * scale + shift
        self.register_buffer("scale", scale * 255.0)
        self.register_buffer("shift", shift)
        self.normalize = normalize.mean is not None and normalize.std is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = torch.addcmul(self.shift, x, self.scale)
        return logits_of(self.model(x))


@dataclass
class Predictor:
    """A loaded checkpoint ready for inference."""

    model: InferenceModel
    classes: list[str]
    input_size: tuple[int, int, int]  # (C, H, W)
    checkpoint: Path
    ckpt: dict
    normalize: Normalize  # what ``model`` applies to [0, 1] input (mean/std None: the model normalises itself)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities of a float batch in [0, 1]."""
        return self.model(x).float().softmax(dim=1)


def load_predictor(path: str | os.PathLike, *, device: str = "cpu", which: str = "best") -> Predictor:
    """A run folder (its checkpoints/<which>.pt) or a checkpoint file -> :class:`Predictor` in eval mode."""
    loaded = load_model(path, which)
    ckpt_path, ckpt = loaded.path, loaded.ckpt
    inp = ckpt.get("input") or {}
    size = inp.get("size") or [3, 32, 32]
    if len(size) != 3:
        raise ClassbenchError(f"{ckpt_path}: input.size should be [C, H, W], got {size}.")
    wrapped = InferenceModel(loaded.model, loaded.normalize).to(device).eval()
    num_classes = int(ckpt.get("num_classes") or 0)
    classes = [str(c) for c in (ckpt.get("classes") or [])]
    if num_classes and len(classes) != num_classes:
        classes = [f"class {i}" for i in range(num_classes)]
    return Predictor(wrapped, classes, (int(size[0]), int(size[1]), int(size[2])), Path(ckpt_path), ckpt,
                     loaded.normalize)


def load_image(path: str | os.PathLike, size: tuple[int, int, int]) -> torch.Tensor:
    """A PNG/JPEG (or any Pillow-readable) file -> float tensor (C, H, W) in [0, 1] at ``size``.

    An image of another shape is centre-cropped to the model's aspect ratio,
    then resized with an antialiasing bicubic filter.
    """
    from PIL import Image

    from ..data.images import read_image

    c, h, w = size
    im = read_image(path, "RGB" if c == 3 else "L")  # regular files only, bounded size: else a one-line DataError
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


#: What ``predict`` takes from a folder (other files there, e.g. a README, are skipped).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_paths(targets: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their image files (by suffix, searched recursively, sorted).

    A folder without any image file is an error, so that a typo never
    classifies nothing silently.
    """
    out: list[Path] = []
    for t in targets:
        path = Path(t)
        if not path.is_dir():
            out.append(path)  # a missing or unreadable file is reported, naming it, when it is read
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not found:
            raise ClassbenchError(f"{path} is a folder without image files ({', '.join(IMAGE_SUFFIXES)}).")
        out.extend(found)
    return out


def predict_files(predictor: Predictor, paths: Sequence[str | os.PathLike], *, topk: int = 5, batch_size: int = 64) -> list[dict]:
    """``[{"path": ..., "predictions": [(class, probability), ...]}]``, top-``topk`` per file, most likely first."""
    if topk < 1:
        raise ClassbenchError(f"--topk must be at least 1, got {topk}.")
    device = predictor.model.scale.device
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


def predictions_csv(results: list[dict]) -> str:
    """CSV, one row per image and rank: ``path,rank,class,probability`` (rank 1 is the most likely)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "rank", "class", "probability"])
    for r in results:
        for rank, (name, prob) in enumerate(r["predictions"], start=1):
            w.writerow([r["path"], rank, name, f"{prob:.6f}"])
    return buf.getvalue()


def format_predictions(results: list[dict]) -> str:
    lines = []
    width = max((len(c) for r in results for c, _ in r["predictions"]), default=5)
    for r in results:
        lines.append(str(r["path"]))
        for rank, (name, prob) in enumerate(r["predictions"], start=1):
            lines.append(f"  {rank:>2}. {name:<{width}}  {100 * prob:6.2f}%")
    return "\n".join(lines) + "\n"
