"""classbench: train many image classifiers under one recipe, then compare them.

The public Python API (``docs/api.md`` has a worked example)::

    import classbench

    cfg = classbench.load_config("cifar10/resnet20", ["train.epochs=1"])  # a packaged name or a YAML path
    run_dir = classbench.train(cfg)                  # -> Path of the new run folder
    run = classbench.load_run(run_dir)               # metrics, summary, config of one run
    runs = classbench.load_runs("runs")              # every run under a folder
    model = classbench.load_model(run_dir)           # best.pt, normalisation built in, eval mode
    probs = model.probabilities(images)              # float (B, 3, H, W) in [0, 1] -> (B, classes)
    net = classbench.create_model("resnet20", num_classes=10)   # an untrained model of the zoo

The functions live in :mod:`classbench.api` and load on first use, as do the
sub-packages (``classbench.models``...): ``import classbench`` imports neither
torch nor any model code, and neither does ``import classbench.config``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_API = ("load_config", "train", "resume", "load_run", "load_runs", "create_model", "list_models",
        "load_model", "evaluate", "configs")
__all__ = [*_API, "__version__"]

_SUBPACKAGES = {"api", "cli", "commands", "compare", "config", "data", "drivers", "errors", "inference", "io",
                "layers", "models", "runfolder"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    if name in _SUBPACKAGES:  # `classbench.models.list_models()` without importing it first
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBPACKAGES})


class _Package(types.ModuleType):
    """The package module, with one name taken twice: ``classbench.train`` is the API's ``train(cfg)``.

    Importing the ``classbench.train`` sub-package would bind the attribute to the
    package; the setter keeps the function, which forwards attribute access to the
    sub-package (``classbench.train.trainer``), and ``from classbench.train import x``
    reads ``sys.modules`` anyway.
    """

    @property
    def train(self) -> Any:
        return importlib.import_module(f"{__name__}.api").train

    @train.setter
    def train(self, module: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
