"""Build small CIFAR archives in the exact official layout, for tests.

Reach it as ``from support.data import ...`` (tests/helpers_data.py re-exports it for older imports).

The official ``cifar-10-python.tar.gz`` unpacks to ``cifar-10-batches-py/``
with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta``;
``cifar-100-python.tar.gz`` unpacks to ``cifar-100-python/`` with ``train``,
``test`` and ``meta``.  Each file is a pickled dict.  The official files were
written by Python 2; loaded with ``encoding="latin1"`` their keys are ``str``,
with ``encoding="bytes"`` they are ``bytes`` (and so are the string values).
``key_type="bytes"`` writes that second form.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_FINE = [f"fine_{i:02d}" for i in range(100)]
CIFAR100_COARSE = [f"coarse_{i:02d}" for i in range(20)]


def fine_to_coarse(fine: np.ndarray) -> np.ndarray:
    """The superclass of each fine label in the archives written here (5 fine classes per superclass)."""
    return np.asarray(fine) // 5


def md5_of(path: str | os.PathLike) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _k(key: str, key_type: str) -> Any:
    if key_type == "str":
        return key
    if key_type == "bytes":
        return key.encode("latin1")
    raise ValueError(f"key_type must be 'str' or 'bytes', got {key_type!r}")


def encode_dict(d: dict[str, Any], key_type: str) -> dict:
    """Keys (and str values, and str items of lists) as ``bytes`` when key_type='bytes'."""
    if key_type == "str":
        return dict(d)
    out = {}
    for key, v in d.items():
        if isinstance(v, str):
            v = v.encode("latin1")
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            v = [x.encode("latin1") for x in v]
        out[_k(key, key_type)] = v
    return out


def write_pickle(path: str | os.PathLike, obj: Any, protocol: int = 4) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def write_batch(path: str | os.PathLike, d: dict[str, Any], key_type: str = "str", protocol: int = 4) -> Path:
    """Write one CIFAR-style dict (given with str keys) as the official files do."""
    return write_pickle(path, encode_dict(d, key_type), protocol=protocol)


def random_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) official rows -> (N, 3, 32, 32), computed pixel by pixel (independent of the loader)."""
    n = rows.shape[0]
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, c, y, :] = rows[:, c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
    return out


def make_tar_gz(src_folder: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Pack ``src_folder`` into ``archive`` with the folder as the top-level member, like the official archives."""
    src_folder, archive = Path(src_folder), Path(archive)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src_folder, arcname=src_folder.name)
    return archive


def _finish(root: Path, folder: Path, archive_name: str, archive: bool, keep_folder: bool) -> dict:
    info: dict[str, Any] = {"folder": folder, "archive": None, "md5": None}
    if archive:
        path = make_tar_gz(folder, root / archive_name)
        info["archive"] = path
        info["md5"] = md5_of(path)
        if not keep_folder:
            shutil.rmtree(folder)
    return info


def write_cifar10(
    root: str | os.PathLike,
    n_train_per_batch: int = 20,
    n_test: int = 30,
    key_type: str = "str",
    seed: int = 0,
    *,
    archive: bool = False,
    keep_folder: bool = False,
    protocol: int = 4,
) -> dict[str, Any]:
    """Write a small CIFAR-10 in the official layout under ``root``.

    ``archive=False`` writes ``root/cifar-10-batches-py/``; ``archive=True``
    writes ``root/cifar-10-python.tar.gz`` (and removes the folder unless
    ``keep_folder``).  Returns a dict with ``train_data``/``test_data`` (the
    (N, 3072) uint8 rows written), ``train_labels``/``test_labels`` (int64),
    ``train_images``/``test_images`` ((N, 3, 32, 32) uint8), ``classes``,
    ``folder``, ``archive`` and ``md5`` (the archive's, or None).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_rows, train_labels = [], []
    for b in range(1, 6):
        rows = random_rows(n_train_per_batch, rng)
        labels = rng.integers(0, 10, size=n_train_per_batch)
        write_batch(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [int(x) for x in labels],
                "data": rows,
                "filenames": [f"img_{b}_{i}.png" for i in range(n_train_per_batch)],
            },
            key_type,
            protocol,
        )
        train_rows.append(rows)
        train_labels.append(labels)
    test_rows = random_rows(n_test, rng)
    test_labels = rng.integers(0, 10, size=n_test)
    write_batch(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [int(x) for x in test_labels],
            "data": test_rows,
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
        key_type,
        protocol,
    )
    write_batch(
        folder / "batches.meta",
        {"num_cases_per_batch": n_train_per_batch, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072},
        key_type,
        protocol,
    )
    train_data = np.concatenate(train_rows)
    out = {
        "train_data": train_data,
        "train_labels": np.concatenate(train_labels).astype(np.int64),
        "train_images": rows_to_images(train_data),
        "test_data": test_rows,
        "test_labels": test_labels.astype(np.int64),
        "test_images": rows_to_images(test_rows),
        "classes": list(CIFAR10_CLASSES),
    }
    out.update(_finish(root, folder, "cifar-10-python.tar.gz", archive, keep_folder))
    return out


def write_cifar100(
    root: str | os.PathLike,
    n_train: int = 60,
    n_test: int = 30,
    key_type: str = "str",
    seed: int = 0,
    *,
    archive: bool = False,
    keep_folder: bool = False,
    protocol: int = 4,
) -> dict[str, Any]:
    """Write a small CIFAR-100 in the official layout under ``root``.

    ``archive=False`` writes ``root/cifar-100-python/``; ``archive=True``
    writes ``root/cifar-100-python.tar.gz``.  Returns a dict like
    :func:`write_cifar10` with ``train_fine``/``train_coarse``/``test_fine``/
    ``test_coarse`` labels and ``fine_classes``/``coarse_classes``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"fine_classes": list(CIFAR100_FINE), "coarse_classes": list(CIFAR100_COARSE)}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = random_rows(n, rng)
        fine = rng.integers(0, 100, size=n)
        coarse = fine_to_coarse(fine)
        write_batch(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(n)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": [int(x) for x in fine],
                "coarse_labels": [int(x) for x in coarse],
                "data": rows,
            },
            key_type,
            protocol,
        )
        out[f"{split}_data"] = rows
        out[f"{split}_images"] = rows_to_images(rows)
        out[f"{split}_fine"] = fine.astype(np.int64)
        out[f"{split}_coarse"] = coarse.astype(np.int64)
    write_batch(
        folder / "meta",
        {"fine_label_names": list(CIFAR100_FINE), "coarse_label_names": list(CIFAR100_COARSE)},
        key_type,
        protocol,
    )
    out.update(_finish(root, folder, "cifar-100-python.tar.gz", archive, keep_folder))
    return out


def write_tar_gz_members(archive: str | os.PathLike, members: dict[str, bytes]) -> Path:
    """Write a .tar.gz whose members have exactly the given names (for path-traversal tests)."""
    archive = Path(archive)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return archive


class _Payload:
    """Unpickling this calls ``func(*args)``: how a malicious pickle runs code."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def write_malicious_pickle(path: str | os.PathLike, marker: str | os.PathLike, kind: str = "os.system") -> Path:
    """Write a pickle that, if loaded with plain ``pickle.load``, creates ``marker``.

    ``kind``: ``os.system`` (runs ``touch marker``), ``open`` (``builtins.open(marker, 'w')``),
    ``eval``, ``exec``, ``subprocess`` or ``nested`` (the payload hidden as the ``data``
    value of an otherwise normal batch dict).
    """
    import builtins
    import subprocess

    marker = str(marker)
    payloads = {
        "os.system": _Payload(os.system, (f"touch '{marker}'",)),
        "open": _Payload(builtins.open, (marker, "w")),
        "eval": _Payload(builtins.eval, (f"open({marker!r}, 'w').close()",)),
        "exec": _Payload(builtins.exec, (f"open({marker!r}, 'w').close()",)),
        "subprocess": _Payload(subprocess.call, (["touch", marker],)),
    }
    if kind == "nested":
        obj = {"batch_label": "x", "labels": [0], "data": _Payload(os.system, (f"touch '{marker}'",))}
    else:
        obj = payloads[kind]
    return write_pickle(path, obj, protocol=2)
