"""CIFAR-10 and CIFAR-100 from the official python archives.

``load_cifar(name, root)`` looks, in order, for the unpacked folder in
``root`` (``cifar-10-batches-py/`` or ``cifar-100-python/``), then for the
official ``.tar.gz`` in ``root`` (md5-checked, then unpacked), then downloads
the archive (when ``download`` is true).  Every file is checked; anything
wrong raises :class:`DataError` naming the file and what is wrong.

Writes are crash-safe: the download goes to a temporary name and is renamed
only once its md5 is right, and the archive is unpacked into a temporary
folder that is renamed into place once complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .safe_pickle import safe_load_pickle
from .types import Split

# Module-level so tests (and mirrors) can point them elsewhere.
URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
MD5 = {
    "cifar10": "c58f30108f718f92721af3b95e74349a",
    "cifar100": "eb9058c3a382ffc7106e4002c42a8d85",
}
# Seconds to wait for the server to answer (and between chunks).  Short, so an
# offline machine fails fast instead of hanging.
DOWNLOAD_TIMEOUT_S = 15.0

_IMAGE_BYTES = 3 * 32 * 32
_TMP_PREFIX = ".classbench-tmp-"


@dataclass(frozen=True)
class _Spec:
    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str


_SPECS = {
    "cifar10": _Spec(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
    ),
    "cifar100": _Spec(
        title="CIFAR-100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
    ),
}


def load_cifar(
    name: str,
    root: str | os.PathLike,
    *,
    labels: str = "fine",
    download: bool = True,
) -> tuple[Split, Split, list[str]]:
    """Load CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``).

    ``labels`` chooses CIFAR-100's 100 fine classes (``"fine"``, the default) or
    its 20 superclasses (``"coarse"``); CIFAR-10 has only ``"fine"``.
    Returns ``(train, test, class_names)`` with uint8 images of shape
    (N, 3, 32, 32).
    """
    if name not in _SPECS:
        raise DataError(f"Unknown CIFAR dataset {name!r}; expected one of {sorted(_SPECS)}.")
    if labels not in ("fine", "coarse"):
        raise DataError(f"data.labels must be 'fine' or 'coarse', got {labels!r}.")
    if name == "cifar10" and labels != "fine":
        raise DataError(
            "data.labels='coarse' exists only for cifar100 (its 20 superclasses); CIFAR-10 has only "
            "its 10 classes. Set data.labels=fine."
        )
    spec = _SPECS[name]
    root = Path(os.path.expanduser(os.fspath(root)))
    folder = _find_or_fetch(name, spec, root, download)
    return _read_folder(name, spec, folder, labels)


# ---------------------------------------------------------------------------
# Finding, downloading and unpacking


def _find_or_fetch(name: str, spec: _Spec, root: Path, download: bool) -> Path:
    folder = root / spec.folder
    archive = root / spec.archive
    if folder.is_dir():
        return folder
    if archive.is_file():
        _check_md5(archive, MD5[name], spec)
        _extract(archive, root, spec)
        return folder
    url = URLS[name]
    looked = (
        f"Looked for {spec.title} in {root}: the unpacked folder {folder}/ (not there) and the "
        f"official archive {archive} (not there)."
    )
    how = (
        f"To fix: set data.root=/path/to/folder (or the environment variable "
        f"CLASSBENCH_DATA=/path/to/folder) to a folder that holds {spec.folder}/ or {spec.archive}, "
        f"or place {spec.archive} (from {url}, md5 {MD5[name]}) in {root}."
    )
    if not download:
        raise DataError(f"{looked} Downloading is off (download=False). {how}")
    created_root = not root.exists()
    try:
        _download(url, archive, MD5[name], spec)
    except (_DownloadFailed, DataError) as e:
        if created_root:  # leave no empty folder behind
            try:
                root.rmdir()
            except OSError:
                pass
        if isinstance(e, DataError):
            raise
        raise DataError(f"{looked} Downloading {url} failed: {e}. {how}") from None
    _extract(archive, root, spec)
    return folder


class _DownloadFailed(Exception):
    pass


def _md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_md5(archive: Path, expected: str, spec: _Spec) -> None:
    try:
        got = _md5_of(archive)
    except OSError as e:
        raise DataError(f"{archive}: cannot be read ({e.strerror or e}).") from e
    if got != expected:
        raise DataError(
            f"{archive}: md5 is {got}, but the official {spec.archive} has md5 {expected}; the file is "
            "incomplete or not the official archive. Delete it and download it again (classbench "
            "downloads it when it is absent and the machine is online)."
        )


def _download(url: str, archive: Path, expected_md5: str, spec: _Spec) -> None:
    try:
        archive.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _DownloadFailed(f"cannot create the folder {archive.parent} ({e.strerror or e})") from e
    print(f"classbench: downloading {url} to {archive} ...", file=sys.stderr, flush=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=_TMP_PREFIX + archive.name + ".", suffix=".part")
    except OSError as e:
        raise _DownloadFailed(f"cannot write in {archive.parent} ({e.strerror or e})") from e
    h = hashlib.md5(usedforsecurity=False)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.URLError as e:
            raise _DownloadFailed(str(e.reason) if getattr(e, "reason", None) else str(e)) from e
        except (OSError, ValueError) as e:  # timeouts, resets, bad URL
            raise _DownloadFailed(f"{type(e).__name__}: {e}") from e
        got = h.hexdigest()
        if got != expected_md5:
            raise DataError(
                f"Downloaded {url}, but its md5 is {got}, not the official {expected_md5}; the download "
                f"is corrupt or the server sent something else. Nothing was kept in {archive.parent}. "
                "Try again, or download the archive by hand and place it there."
            )
        os.replace(tmp, archive)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    print(f"classbench: downloaded {archive}", file=sys.stderr, flush=True)


def _check_member(archive: Path, m: tarfile.TarInfo) -> None:
    p = PurePosixPath(m.name)
    if m.name.startswith(("/", "\\")) or p.is_absolute() or (len(m.name) > 1 and m.name[1] == ":"):
        raise DataError(f"{archive}: refused to unpack the member {m.name!r}, which has an absolute path.")
    if ".." in p.parts:
        raise DataError(f"{archive}: refused to unpack the member {m.name!r}, whose path contains '..'.")
    if not (m.isfile() or m.isdir()):
        raise DataError(
            f"{archive}: refused to unpack the member {m.name!r}: only plain files and folders are "
            "allowed (links and devices are not)."
        )


def _extract(archive: Path, root: Path, spec: _Spec) -> None:
    """Unpack ``archive`` into ``root/spec.folder`` via a temporary folder."""
    target = root / spec.folder
    try:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=_TMP_PREFIX + spec.folder + "."))
    except OSError as e:
        raise DataError(
            f"Cannot unpack {archive}: cannot create a folder in {root} ({e.strerror or e}). Make {root} "
            f"writable, or unpack the archive yourself so that {target}/ exists."
        ) from e
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    _check_member(archive, m)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(tmp, members=members)
        except DataError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            # zlib.error is not an OSError subclass everywhere; checked below.
            raise DataError(
                f"{archive}: cannot be unpacked ({type(e).__name__}: {e}); the archive is truncated or "
                "corrupt. Delete it and download it again."
            ) from e
        except Exception as e:
            if type(e).__module__ == "zlib":
                raise DataError(
                    f"{archive}: cannot be unpacked (corrupt gzip data: {e}). Delete it and download it again."
                ) from e
            raise
        unpacked = tmp / spec.folder
        if not unpacked.is_dir():
            raise DataError(
                f"{archive}: the archive does not contain the folder {spec.folder}/; it is not the "
                f"official {spec.archive}. Delete it and download it again."
            )
        try:
            os.rename(unpacked, target)
        except OSError:
            if not target.is_dir():  # another process may have won the race; that is fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Reading and checking the batches


def _load_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(
            f"{path}: missing. The folder {path.parent} is incomplete; delete it and unpack or "
            "download the official archive again."
        )
    obj = safe_load_pickle(path, encoding="latin1")
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}; not a CIFAR file.")
    return obj


def _get(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise DataError(f"{path}: has no {key!r} entry (entries: {sorted(map(str, d))}); not a valid CIFAR file.")
    return d[key]


def _names(d: dict[str, Any], key: str, path: Path) -> list[str]:
    raw = _get(d, key, path)
    if not isinstance(raw, (list, tuple)) or not raw:
        raise DataError(f"{path}: {key!r} must be a non-empty list of class names, found {type(raw).__name__}.")
    names = []
    for n in raw:
        if isinstance(n, bytes):
            n = n.decode("latin1")
        if not isinstance(n, str):
            raise DataError(f"{path}: {key!r} must hold strings, found {type(n).__name__}.")
        names.append(n)
    return names


def _labels(d: dict[str, Any], key: str, path: Path, n: int, num_classes: int) -> np.ndarray:
    raw = _get(d, key, path)
    try:
        arr = np.asarray(raw)
    except Exception as e:
        raise DataError(f"{path}: {key!r} cannot be read as an array of ints ({e}).") from e
    if arr.ndim != 1:
        raise DataError(f"{path}: {key!r} must be a flat list of ints, found shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: {key!r} must hold ints, found {arr.dtype}.")
    if len(arr) != n:
        raise DataError(f"{path}: 'data' has {n} images but {key!r} has {len(arr)} labels; they must match.")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            bad = int(np.flatnonzero((arr < 0) | (arr >= num_classes))[0])
            raise DataError(
                f"{path}: {key!r} holds {int(arr[bad])} (at index {bad}), outside 0..{num_classes - 1} "
                f"({num_classes} classes in the meta file)."
            )
    return arr.astype(np.int64)


def _data(d: dict[str, Any], path: Path) -> np.ndarray:
    data = _get(d, "data", path)
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' must be a numpy array, found {type(data).__name__}.")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' must be uint8, found {data.dtype}.")
    if data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        raise DataError(
            f"{path}: 'data' must have shape (N, {_IMAGE_BYTES}) (32x32 RGB rows), found {data.shape}."
        )
    return data


def _read_split(files: tuple[str, ...], folder: Path, label_key: str, num_classes: int) -> Split:
    datas, labs = [], []
    for fname in files:
        path = folder / fname
        d = _load_dict(path)
        data = _data(d, path)
        labs.append(_labels(d, label_key, path, len(data), num_classes))
        datas.append(data)
        del d
    images = np.concatenate(datas) if len(datas) > 1 else np.array(datas[0], copy=True)
    del datas
    labels = np.concatenate(labs)
    # Each row is 1024 R, 1024 G, 1024 B values, each plane row-major: a plain reshape.
    return Split(torch.from_numpy(images.reshape(len(images), 3, 32, 32)), torch.from_numpy(labels))


def _read_folder(name: str, spec: _Spec, folder: Path, labels: str) -> tuple[Split, Split, list[str]]:
    meta_path = folder / spec.meta_file
    meta = _load_dict(meta_path)
    if name == "cifar10":
        classes = _names(meta, "label_names", meta_path)
        label_key = "labels"
    else:
        classes = _names(meta, f"{labels}_label_names", meta_path)
        label_key = f"{labels}_labels"
    for fname in spec.train_files + spec.test_files:  # report a missing file before reading 150 MB
        if not (folder / fname).is_file():
            _load_dict(folder / fname)
    train = _read_split(spec.train_files, folder, label_key, len(classes))
    test = _read_split(spec.test_files, folder, label_key, len(classes))
    return train, test, classes
