"""Load dataset pickles without running code from them.

The official CIFAR archives are pickles, and ``pickle.load`` will call any
function a pickle names.  :class:`SafeUnpickler` admits only the handful of
globals that rebuilding numpy arrays needs plus plain builtin containers; any
other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is
refused with a :class:`DataError` *before* it is looked up, so it never runs.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

from ..errors import DataError

# (module, name) pairs that may be looked up, with numpy's private module
# spelled the numpy 2 way (``numpy._core``); ``numpy.core`` (numpy 1 and
# Python 2 pickles) is mapped onto it by :func:`_canonical`.
_NUMPY_ALLOWED = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)
_BUILTINS_ALLOWED = frozenset(
    {"list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float", "complex", "bool"}
)
# Python 3 pickles of ``bytes`` at protocol < 3 go through ``_codecs.encode``
# (a pure str -> bytes conversion).
_OTHER_ALLOWED = frozenset({("_codecs", "encode")})

# Python 2 module names (what ``fix_imports`` would map).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _canonical(module: str, name: str) -> tuple[str, str]:
    module = _PY2_MODULES.get(module, module)
    if module == "numpy.core" or module.startswith("numpy.core."):
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


def _import_numpy_module(module: str):
    # numpy >= 2 has numpy._core; numpy 1.x only numpy.core.
    try:
        return importlib.import_module(module)
    except ImportError:
        if module.startswith("numpy._core"):
            return importlib.import_module("numpy.core" + module[len("numpy._core") :])
        raise


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays and builtin containers."""

    def __init__(self, file, *, path: str | os.PathLike = "<pickle>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding, fix_imports=True)
        self._path = str(path)

    def find_class(self, module: str, name: str) -> Any:
        cmod, cname = _canonical(module, name)
        if (cmod, cname) in _NUMPY_ALLOWED:
            return getattr(_import_numpy_module(cmod), cname)
        if cmod == "builtins" and cname in _BUILTINS_ALLOWED:
            return getattr(__import__("builtins"), cname)
        if (cmod, cname) in _OTHER_ALLOWED:
            return getattr(importlib.import_module(cmod), cname)
        raise DataError(
            f"{self._path}: the pickle asks for the global '{module}.{name}', which a dataset file "
            "has no reason to use; refused and not run. The file is not a genuine dataset file "
            "(it may be malicious). Delete it and get the data again from the official source."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: the pickle uses persistent ids, which dataset files never do; refused.")


def _str_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def safe_load_pickle(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`.

    ``encoding`` is passed to the unpickler for Python 2 strings: ``"latin1"``
    (official CIFAR files then give ``str`` keys) or ``"bytes"`` (they give
    ``bytes`` keys).  If the result is a dict, its ``bytes`` keys are decoded
    (latin1) so callers always see ``str`` keys.  Values are left as they are.

    Raises :class:`DataError`, naming the file, when it is missing, empty,
    truncated or corrupt, or asks for a global outside the allow-list.
    """
    if encoding not in ("latin1", "bytes"):
        raise ValueError(f"encoding must be 'latin1' or 'bytes', got {encoding!r}")
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e}).") from e
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError:
            size = -1
        if size == 0:
            raise DataError(f"{path}: the file is empty (0 bytes); it is truncated. Delete it and get the data again.")
        try:
            obj = SafeUnpickler(f, path=path, encoding=encoding).load()
        except DataError:
            raise
        except EOFError as e:
            raise DataError(
                f"{path}: the pickle ends early; the file is truncated. Delete it and get the data again."
            ) from e
        except MemoryError as e:
            raise DataError(f"{path}: unpickling ran out of memory; the file is corrupt or too large.") from e
        except Exception as e:  # UnpicklingError, ValueError, TypeError, struct.error, ...
            raise DataError(
                f"{path}: cannot be unpickled ({type(e).__name__}: {e}); the file is corrupt or not a "
                "dataset pickle. Delete it and get the data again."
            ) from e
    return _str_keys(obj)
