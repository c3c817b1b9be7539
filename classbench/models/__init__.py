"""Model zoo. Each family lives in its own module and registers its models.

Every module in this package other than the helpers below is imported here, so
adding a family is adding a file.
"""

import importlib
import pkgutil

from .registry import ModelEntry, create_model, get_entry, list_models, register_model

_HELPERS = {"registry", "profile"}

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _HELPERS and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
