"""Crash-safe file writes and tolerant reads.

Every file classbench writes goes to a temporary file in the same folder, is
flushed and fsynced, then renamed over the target.  A crash at any moment
leaves either the previous good file or the new one, never a half-written one.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import ClassbenchError


def _atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ClassbenchError(
            f"Cannot write {path}: {e.strerror}. Check that the folder exists, is writable and "
            "has free space; the previous file, if any, is untouched."
        ) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        # torch.save reports a full disk as a RuntimeError ("unexpected pos ...") raised while handling the OSError
        os_error = e if isinstance(e, OSError) else e.__context__ if isinstance(e, RuntimeError) else None
        if isinstance(os_error, OSError):
            raise ClassbenchError(
                f"Writing {path} failed: {os_error.strerror or os_error}. The disk may be full or read-only; "
                "the previous file, if any, is untouched."
            ) from e
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_output(path: str | os.PathLike | None, text: str, what: str) -> None:
    """A command's ``-o FILE``: ``text`` to FILE atomically, with ``wrote FILE (what)`` on stderr; to stdout
    when ``path`` is None, so that the output can be piped."""
    if path:
        atomic_write_text(path, text)
        print(f"wrote {path} ({what})", file=sys.stderr)
    else:
        sys.stdout.write(text)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    _atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line. A crash can leave only the last line partial."""
    line = json.dumps(record, default=float) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
    except OSError as e:
        raise ClassbenchError(f"Cannot append to {path}: {e.strerror}. Is the disk full or read-only? "
                              "The lines written before are untouched.") from e


def read_jsonl(path: str | os.PathLike, *, warn: bool = True) -> list[dict]:
    """Read a JSON-lines file, skipping (with a warning) lines that do not parse.

    A run killed mid-write leaves a partial last line; a run being written right
    now may too.  Neither may break a reader.
    """
    records: list[dict] = []
    path = Path(path)
    if not path.exists():
        return records
    with open(path, "rb") as f:
        raw = f.read()
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            if warn:
                warnings.warn(f"{path}:{lineno}: skipping a line that is not valid JSON (partial write?)", stacklevel=2)
            continue
        records.append(rec)
    return records
