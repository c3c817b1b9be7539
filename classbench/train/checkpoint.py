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

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict) -> None:
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)


def resolve_checkpoint(path: str | Path, kind: str = "best") -> Path:
    """A checkpoint file, or a run folder's checkpoints/<kind>.pt."""
    p = Path(path)
    if p.is_dir():
        cand = p / "checkpoints" / f"{kind}.pt"
        if not cand.exists():
            raise CheckpointError(
                f"{p} is a folder but holds no checkpoints/{kind}.pt; give a run folder of a run that "
                "saved a checkpoint, or the .pt file itself."
            )
        return cand
    if not p.exists():
        raise CheckpointError(f"Checkpoint {p} does not exist.")
    return p


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
    lacking = [k for k in ("model_name", "num_classes", "model", "config", "input", "step") if k not in ckpt]
    if lacking or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"{p} is not a complete classbench checkpoint (it lacks {', '.join(lacking) or 'model weights'}).")
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
def rng_state() -> dict[str, Any]:
    """Every global RNG, in forms that weights_only loading accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, key, *rest = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    # random.setstate needs tuples; a save/load round trip may turn them into lists.
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
