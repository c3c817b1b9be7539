"""Image-folder datasets: ``root/train/<class>/*`` and ``root/test/<class>/*``.

Images (PNG, JPEG or anything else Pillow reads) are decoded to RGB by a pool of
threads (Pillow releases the GIL while decoding) straight into one
preallocated uint8 array of shape (N, 3, H, W).  Files are opened through
``images.read_image`` (regular files only, bounded sizes), and the array's size
is checked against the available memory before it is allocated.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from .images import image_size as header_size
from .images import is_image_candidate, read_image
from .memory import check_fits
from .types import Split

_CHUNK = 256  # images per task handed to a thread


def _workers() -> int:
    # Decoding large images releases the GIL and scales with cores; for tiny
    # images (32x32) the per-file Python work dominates and more threads than
    # cores only add contention.
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    # Not only regular files: a FIFO or a device among the images is refused by name when read, not skipped.
    return sorted(Path(e.path) for e in os.scandir(folder) if is_image_candidate(e))


def _list_split(split_dir: Path, classes: list[str], limit_per_class: int | None) -> tuple[list[Path], np.ndarray]:
    paths: list[Path] = []
    labels: list[int] = []
    for idx, cls in enumerate(classes):
        folder = split_dir / cls
        try:
            files = _files(folder)
        except OSError as e:
            raise DataError(f"{folder}: cannot list the folder ({e.strerror or e}).") from e
        if not files:
            raise DataError(
                f"{folder}: the class folder holds no images. Put images of class {cls!r} there or "
                "remove the folder (from both train/ and test/)."
            )
        if limit_per_class is not None:
            files = files[:limit_per_class]
        paths.extend(files)
        labels.extend([idx] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def _open_rgb(path: Path, image_size: int | None) -> Image.Image:
    img = read_image(path, "RGB", draft=image_size)  # a JPEG is decoded at a cheap reduced scale
    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)  # antialiased when shrinking
    return img


def _decode_into(
    out: np.ndarray, paths: list[Path], start: int, stop: int, image_size: int | None, ref: Path
) -> None:
    h, w = out.shape[2], out.shape[3]
    for i in range(start, stop):
        img = _open_rgb(paths[i], image_size)
        if img.size != (w, h):
            raise DataError(
                f"{paths[i]}: the image is {img.size[0]}x{img.size[1]} but {ref} is {w}x{h}; all "
                "images must have one size. Set data.image_size=N (e.g. data.image_size="
                f"{max(w, h)}) to resize every image to NxN."
            )
        out[i] = np.asarray(img).transpose(2, 0, 1)


def _decode_all(
    paths: list[Path], image_size: int | None, size: tuple[int, int], ref: Path, pool: ThreadPoolExecutor
) -> np.ndarray:
    w, h = size
    out = np.empty((len(paths), 3, h, w), dtype=np.uint8)
    futures = [
        pool.submit(_decode_into, out, paths, s, min(s + _CHUNK, len(paths)), image_size, ref)
        for s in range(0, len(paths), _CHUNK)
    ]
    try:
        for f in futures:
            f.result()
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return out


def load_imagefolder(
    root: str | os.PathLike,
    *,
    image_size: int | None = None,
    limit_per_class: int | None = None,
) -> tuple[Split, Split, list[str]]:
    """Read ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Classes are the sorted sub-folder names of ``train/``; ``test/`` must have
    the same ones.  Without ``image_size`` every image must have the same size;
    with it, every image is resized (bilinear, antialiased) to
    ``image_size`` x ``image_size``.  ``limit_per_class`` keeps only the first
    (by file name) images of each class in each split, for quick loads.
    Hidden files (``.*``) are ignored; any other file must be a readable image.
    """
    root = Path(os.path.expanduser(os.fspath(root)))
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"data.image_size must be a positive int, got {image_size!r}.")
    if limit_per_class is not None and (not isinstance(limit_per_class, int) or limit_per_class < 1):
        raise DataError(f"limit_per_class must be a positive int or None, got {limit_per_class!r}.")
    if not root.is_dir():
        raise DataError(
            f"{root}: the image-folder dataset root does not exist. It must hold train/<class>/ and "
            "test/<class>/ folders of images; set data.root to it."
        )
    train_dir, test_dir = root / "train", root / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise DataError(
                f"{d}: missing. An image-folder dataset needs {train_dir}/<class>/ and "
                f"{test_dir}/<class>/ folders of images."
            )
    classes = _subdirs(train_dir)
    if not classes:
        raise DataError(f"{train_dir}: holds no class folders; expected one sub-folder of images per class.")
    test_classes = _subdirs(test_dir)
    if test_classes != classes:
        missing = sorted(set(classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(classes))
        parts = []
        if missing:
            parts.append(f"missing in test/: {missing}")
        if extra:
            parts.append(f"not in train/: {extra}")
        raise DataError(
            f"{test_dir}: its class folders differ from those of {train_dir} ({'; '.join(parts)}). "
            "Both must hold the same class folders."
        )

    train_paths, train_labels = _list_split(train_dir, classes, limit_per_class)
    test_paths, test_labels = _list_split(test_dir, classes, limit_per_class)

    if image_size is not None:
        size = (image_size, image_size)
    else:
        size = header_size(train_paths[0])  # the header only: the pixels are decoded once, below
    n = len(train_paths) + len(test_paths)
    # The splits (val hold-out, subsets) copy the training images once more while they are made.
    check_fits(
        (2 * len(train_paths) + len(test_paths)) * 3 * size[0] * size[1],
        f"Loading {root}: {n} images of {size[0]}x{size[1]} RGB"
        + (" (data.image_size)" if image_size is not None else f" (the size of {train_paths[0]})"),
        "Set data.image_size=N to resize every image to NxN, or use fewer images.",
    )
    with ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="classbench-decode") as pool:
        train_images = _decode_all(train_paths, image_size, size, train_paths[0], pool)
        test_images = _decode_all(test_paths, image_size, size, train_paths[0], pool)
    train = Split(torch.from_numpy(train_images), torch.from_numpy(train_labels))
    test = Split(torch.from_numpy(test_images), torch.from_numpy(test_labels))
    return train, test, classes
