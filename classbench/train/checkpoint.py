"""Checkpoints: plain dicts of tensors and builtins, loaded with ``weights_only=True``.

A checkpoint never holds pickled classes or functions, so loading a stranger's
file cannot run a stranger's code.  See docs/design.md for the keys.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ClassbenchError
from ..io import atomic_torch_save
from ..runfolder import check_checkpoint_record
from .distributed import to_cpu

FORMAT_VERSION = 1

# ---------------------------------------------------------------- the schema (docs/design.md, Checkpoints)
#: What every checkpoint (last.pt and best.pt) must hold to rebuild and describe its model.
MODEL_KEYS = ("model_name", "num_classes", "model", "config", "input", "step")
#: The training state that only last.pt holds: exactly what the trainer saves and a resume needs.
#: Each key names an object with ``state_dict()``/``load_state_dict()`` (see :func:`train_state`).
TRAIN_STATE_KEYS = ("optimizer", "scheduler", "scaler", "rng", "loader", "trainer")


class GlobalRNG:
    """Python's, numpy's and torch's global generators, and the CUDA generator of the run's own device
    (``device``; none on CPU), as one state_dict-like object."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None

    def state_dict(self) -> dict[str, Any]:
        return rng_state(self.device)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(to_cpu(state), self.device)  # map_location may have put the RNG states on the GPU


def train_state(parts: dict[str, Any]) -> dict[str, Any]:
    """``{key: parts[key].state_dict()}`` for every key of :data:`TRAIN_STATE_KEYS`."""
    assert set(parts) == set(TRAIN_STATE_KEYS), sorted(set(parts) ^ set(TRAIN_STATE_KEYS))
    return {k: parts[k].state_dict() for k in TRAIN_STATE_KEYS}


def lacking_train_state(ckpt: dict) -> list[str]:
    """The keys of :data:`TRAIN_STATE_KEYS` that ``ckpt`` lacks (a best.pt lacks them all)."""
    return [k for k in TRAIN_STATE_KEYS if k not in ckpt]


def load_train_state(ckpt: dict, parts: dict[str, Any]) -> None:
    """Restore every part from ``ckpt``; the global RNG last, so nothing else draws from it afterwards."""
    assert set(parts) == set(TRAIN_STATE_KEYS), sorted(set(parts) ^ set(TRAIN_STATE_KEYS))
    for k in sorted(TRAIN_STATE_KEYS, key=lambda k: k == "rng"):
        parts[k].load_state_dict(ckpt[k])


def model_record(kind: str, model: torch.nn.Module, cfg, data, normalize, step: int, metrics: dict | None = None,
                 *, config_yaml: str) -> dict:
    """What last.pt and best.pt both hold: :data:`MODEL_KEYS` and their descriptions (kind, model_args,
    classes, the eval metrics at save time).  ``data`` is the run's Data, ``normalize`` its loader's Normalize."""
    return {
        "kind": kind, "model_name": cfg.model.name, "model_args": dict(cfg.model.args),
        "num_classes": data.num_classes, "classes": data.classes,
        "input": {"size": [3, *data.image_size],
                  "mean": list(normalize.mean) if normalize.mean else None,
                  "std": list(normalize.std) if normalize.std else None},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "metrics": {s: {k: v for k, v in m.items() if k in ("loss", "top1", "top5")} for s, m in (metrics or {}).items()},
        "config": config_yaml,
    }


def save_checkpoint(path: str | Path, state: dict) -> None:
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a classbench checkpoint safely, refusing unknown or newer formats."""
    p = Path(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {p} does not exist.") from None
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"Refused to load {p}: it holds objects other than tensors and plain data ({str(e).splitlines()[0]}). "
            "classbench loads checkpoints with weights_only=True so a checkpoint cannot run code; "
            "only load files you trust with other tools."
        ) from None
    except Exception as e:  # RuntimeError, EOFError, BadZipFile, OSError, ...; junk bytes reach the legacy
        # unpickler, which fails in arbitrary ways (IndexError, KeyError, struct.error, ...)
        raise CheckpointError(
            f"Cannot read checkpoint {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}. "
            "The file is truncated or not a PyTorch checkpoint."
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{p} is not a classbench checkpoint (no format_version/model keys).")
    version = ckpt["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format version {version}, newer than this classbench understands "
            f"({FORMAT_VERSION}). Upgrade classbench to load it."
        )
    lacking = [k for k in MODEL_KEYS if k not in ckpt]
    if lacking or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{p} is not a complete classbench checkpoint (it lacks {', '.join(lacking) or 'model weights'}).")
    check_checkpoint_record(ckpt, p)  # sizes, classes, normalisation: a shared file may claim anything
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """load_state_dict(strict) with the mismatch explained in plain words."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} tensors differ in shape ({'; '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''})")
        if missing:
            parts.append(f"{len(missing)} weights of the model are missing from it ({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''})")
        if unexpected:
            parts.append(f"it holds {len(unexpected)} weights the model does not have ({', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''})")
        raise CheckpointError(
            f"Checkpoint {source} does not fit this model: " + "; ".join(parts) + ". "
            "It was probably saved from another model or class count; check model.name and the dataset."
        )
    model.load_state_dict(state)


def build_model_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> torch.nn.Module:
    from ..models import create_model

    try:
        model = create_model(ckpt["model_name"], num_classes=ckpt["num_classes"], **dict(ckpt.get("model_args") or {}))
    except ClassbenchError as e:
        raise CheckpointError(f"Cannot rebuild the model of {source}: {e}") from None
    except RuntimeError as e:  # model_args that torch refuses, e.g. a negative width
        raise CheckpointError(f"Cannot rebuild the model of {source}: {str(e).splitlines()[0]}") from None
    load_model_state(model, ckpt["model"], source)
    model.eval()
    return model


# ---------------------------------------------------------------- RNG state
def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every global RNG, in forms that weights_only loading accepts.  On CUDA only ``device``'s generator
    (``cuda_device``): the state of every visible GPU would tie a resume to the same number of visible
    GPUs (a sweep's CUDA_VISIBLE_DEVICES shows each job one)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    random.setstate(_tuples(state["python"]))
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if device is None or device.type != "cuda":
        return
    if "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)
    elif "cuda" in state:  # checkpoints before 2026-12: one state per GPU visible then, by index
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index < len(state["cuda"]):
            torch.cuda.set_rng_state(state["cuda"][index], device)


def _tuples(x: Any) -> Any:
    # random.setstate needs tuples; a save/load round trip may turn them into lists.
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
