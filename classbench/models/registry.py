"""The model registry: every architecture is a factory registered by name.

    @register_model
    def resnet18(num_classes: int = 10, **kwargs) -> nn.Module: ...

    model = create_model("resnet18", num_classes=100)

The family of a model is the name of the module that registers it
(``classbench.models.resnet`` -> ``resnet``), so one file holds one family.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    # Conv nets run faster in channels_last on CPU and GPU; transformers gain nothing.
    channels_last: bool = True
    # Key options of a preset, shown by `classbench models`.
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, channels_last: bool = True, **options: Any):
    """Register a model factory under its function name.

    Used bare (``@register_model``) or with arguments
    (``@register_model(channels_last=False, patch=4, dim=48)``); the extra keyword
    arguments are descriptive options listed by ``classbench models``.
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        family = f.__module__.rsplit(".", 1)[-1]
        _REGISTRY[name] = ModelEntry(name, f, family, channels_last, dict(options))
        return f

    return wrap(fn) if fn is not None else wrap


def _load_all() -> None:
    # Importing the package imports every family module, which fills the registry.
    importlib.import_module(__package__)


def list_models(pattern: str | None = None) -> list[str]:
    """The registered names, sorted; with ``pattern``, those in which that regex is found.  A pattern that
    is not a regex raises a ConfigError that names it as ``--filter``, the option every caller takes it from."""
    import re

    _load_all()
    names = sorted(_REGISTRY)
    if pattern:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"--filter {pattern!r} is not a valid regular expression: {e}") from None
        names = [n for n in names if rx.search(n)]
    return names


def get_entry(name: str) -> ModelEntry:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown model {name!r}.{hint} Run `classbench models` to list all {len(_REGISTRY)} registered models."
        ) from None


def create_model(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build a registered model. Unknown names or options raise a ConfigError."""
    entry = get_entry(name)
    sig = inspect.signature(entry.factory)
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var_kw:
        unknown = [k for k in kwargs if k not in sig.parameters]
        if unknown:
            valid = [p for p in sig.parameters if p != "num_classes"]
            raise ConfigError(
                f"Model {name!r} has no option {', '.join(map(repr, unknown))}. "
                f"Its options are: {', '.join(valid) or '(none)'}. Set them as model.args.<option>=<value>."
            )
    try:
        return entry.factory(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Cannot build model {name!r} with options {kwargs}: {e}") from e


def uses_channels_last(name: str, override: bool | None = None) -> bool:
    """The memory format a model runs in: ``model.channels_last`` when set, else the registry's choice."""
    return get_entry(name).channels_last if override is None else bool(override)


def logits_of(output: Any) -> "torch.Tensor":
    """A model with auxiliary heads returns ``{"logits", "aux"}`` in training mode; everything else wants the logits."""
    return output["logits"] if isinstance(output, dict) else output
