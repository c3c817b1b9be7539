"""The public Python API, re-exported at the package top: ``classbench.load_config``, ``classbench.train``...

It sits in the top layer (it reaches every other one), and each function
imports what it needs when called, so that ``import classbench`` and reading
``classbench.load_config`` stay cheap.  ``docs/api.md`` has a worked example.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .compare.runs import Run
    from .config import Config
    from .inference.predict import Predictor

__all__ = ["load_config", "train", "resume", "load_run", "load_runs", "create_model", "list_models",
           "load_model", "evaluate", "configs"]


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> "Config":
    """The resolved, validated config: defaults <- YAML <- ``key=value`` overrides.

    ``path`` is a YAML file, or the name of a packaged config such as
    ``"cifar10/resnet20"`` (see :func:`configs`); None starts from the defaults
    (then give a budget, e.g. ``["train.epochs=1"]``).  Bad input raises
    :class:`classbench.errors.ConfigError` with a one-line explanation.
    """
    from .config import load_config as _load

    return _load(path, list(overrides))


class _Train:
    """``classbench.train(cfg)`` trains; ``classbench.train.<module>`` is still a module of the ``classbench.train`` package."""

    def __call__(self, cfg: "Config") -> Path:
        """Train one run from a config (see :func:`load_config`); returns its run folder.

        The folder is ``<train.runs_dir>/<dataset>/<name>/<time>/`` and holds the
        metrics, checkpoints and summary.json (``docs/design.md``).  Ctrl-C
        saves a resumable checkpoint and raises
        :class:`classbench.errors.TrainingInterrupted`; continue with :func:`resume`.
        """
        from .train.trainer import train as _train

        return _train(cfg)

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("classbench.train"), name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(importlib.import_module("classbench.train"))) | {"__call__"})

    def __repr__(self) -> str:
        return "<function classbench.train(cfg) -> run folder>"

    __doc__ = __call__.__doc__


train = _Train()


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Continue a run from its ``checkpoints/last.pt``, optionally with overrides (e.g. a new budget).

    A new budget with a schedule that depends on it asks for
    ``train.resume_schedule=continue|replan`` (``docs/design.md``, resuming).
    """
    from .train.trainer import resume as _resume

    return _resume(run_dir, list(overrides))


def load_run(path: str | Path) -> "Run":
    """One run folder as a :class:`classbench.compare.runs.Run`: ``.metrics`` (metrics.jsonl records),
    ``.summary`` (summary.json, None while running), ``.config`` (plain dicts), ``.status``, ``.name``.
    A damaged run loads with ``.warnings`` instead of raising."""
    from .compare.runs import load_run as _load_run

    return _load_run(path)


def load_runs(runs_dir: str | Path = "runs", *, filter: str | None = None, group: str | None = None) -> list["Run"]:  # noqa: A002
    """Every run folder under ``runs_dir`` (as :func:`load_run`), labelled as ``classbench summary`` labels them.

    ``filter`` is a regex searched in each run's path; ``group`` a group of
    ``configs/groups.yaml``.  Finding no run raises a ClassbenchError.
    """
    from .compare.runs import load_runs as _load_runs

    return _load_runs(runs_dir, filter=filter, group=group)


def create_model(name: str, num_classes: int = 10, **options: Any):
    """An untrained model of the zoo (``classbench models`` lists the names and options), as a ``torch.nn.Module``.

    It takes normalised float images (B, 3, H, W); for a trained model that
    normalises its own input use :func:`load_model`.
    """
    from .models import create_model as _create

    return _create(name, num_classes=num_classes, **options)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered models, optionally those matching a glob ``pattern``."""
    from .models import list_models as _list

    return _list(pattern)


def load_model(run_dir: str | Path, which: str = "best", *, device: str = "cpu") -> "Predictor":
    """A trained model ready for inference: a :class:`classbench.inference.predict.Predictor`.

    ``run_dir`` is a run folder (``which`` picks ``checkpoints/best.pt`` or
    ``last.pt``) or a checkpoint file.  ``.model(x)`` takes float images
    (B, C, H, W) in [0, 1] and applies the training normalisation itself
    (``.normalize`` holds its mean/std); ``.probabilities(x)`` gives softmax
    probabilities; ``.classes`` the class names; ``.input_size`` (C, H, W).
    The model is in eval mode on ``device``.
    """
    from .inference.predict import load_predictor

    return load_predictor(run_dir, device=device, which=which)


def evaluate(run_dir: str | Path, split: str = "test", which: str = "best", *, device: str = "auto") -> dict:
    """Evaluate a run's checkpoint exactly as training did: ``{"top1", "top5", "loss", "count", ...}``."""
    from .inference.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(run_dir, split=split, kind=which, device=device)


def configs() -> list[str]:
    """Names of the packaged configs, e.g. ``"cifar10/resnet20"``: each works wherever a config path does."""
    from .config import packaged_configs

    return list(packaged_configs())
