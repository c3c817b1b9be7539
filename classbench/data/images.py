"""Opening image files safely: image folders and ``predict`` both decode through here.

A path names untrusted input.  Before anything is decoded:

- only a regular file is opened, and opening never blocks: a FIFO, a socket or
  a device is refused at once (``open()`` on a FIFO would wait forever for a
  writer);
- the size in the file's header is checked: an image of more than
  :data:`MAX_PIXELS` pixels (what Pillow itself calls a decompression bomb) is
  refused with one line, and a large one only when its decoded pixels fit in
  the memory available now.

Every problem becomes a one-line :class:`~classbench.errors.DataError` that
names the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator

from PIL import Image

from ..errors import DataError
from .memory import check_fits, human_bytes

# Files that operating systems drop into folders; never images, never errors.
_JUNK = frozenset({"thumbs.db", "desktop.ini"})
# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; so do we, with our own message.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
# Below this many pixels (~50 MiB as RGB) decoding one image is never worth a memory check.
_CHECK_MEMORY_ABOVE = 1 << 24
# Decoding may hold the file's own mode (up to 4 bytes a pixel) and the converted copy at once.
_DECODE_BYTES_PER_PIXEL = 8

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _refuse_size(path: str, width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise DataError(
            f"{path}: the image is {width}x{height} ({pixels / 1e6:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels for one image (decoding it would need about "
            f"{human_bytes(pixels * 3)}); shrink it or remove it."
        )
    if pixels > _CHECK_MEMORY_ABOVE:
        check_fits(pixels * _DECODE_BYTES_PER_PIXEL, f"{path}: decoding this {width}x{height} image",
                   "Shrink the image or free memory.")


@contextlib.contextmanager
def _opened(path: str | os.PathLike, max_pixels: int) -> Iterator[Image.Image]:
    """The image with only its header read, after the file-kind and size checks."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        gone = "is a link to a file that does not exist" if os.path.islink(name) else "does not exist"
        raise DataError(f"{name}: {gone}.") from None
    except OSError as e:
        raise DataError(f"{name}: cannot be opened ({e.strerror or e}).") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise DataError(f"{name}: is {kind}, not an image file; give a PNG or JPEG file.")
        f = os.fdopen(fd, "rb")  # a regular file: O_NONBLOCK changes nothing from here on
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            img = Image.open(f)
        except Image.DecompressionBombError as e:
            found = re.search(r"\((\d+) pixels\)", str(e))
            size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
            raise DataError(
                f"{name}: the image is too large to decode safely{size}, over the limit of "
                f"{max(max_pixels, MAX_PIXELS) / 1e6:.0f} megapixels for one image; shrink it or remove it."
            ) from None
        except Exception as e:  # UnidentifiedImageError, truncated headers, ...
            raise DataError(
                f"{name}: cannot be read as an image ({type(e).__name__}: {e}). Remove or replace the file."
            ) from None
        with img:
            _refuse_size(name, img.size[0], img.size[1], max_pixels)
            yield img


def image_size(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    with _opened(path, max_pixels) as img:
        return img.size


def read_image(
    path: str | os.PathLike, mode: str = "RGB", *, draft: int | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """Decode one image file fully into ``mode`` ("RGB" or "L").

    ``draft``: a JPEG may be decoded at a reduced scale, never below ``draft``
    pixels a side (cheap when the image is resized to that size afterwards).
    """
    with _opened(path, max_pixels) as img:
        try:
            if draft is not None and img.format == "JPEG":
                img.draft(mode, (draft, draft))
            return img.convert(mode)  # a full decode while the file is open
        except Exception as e:  # truncated data, corrupt streams, ...
            raise DataError(
                f"{os.fspath(path)}: cannot be read as an image ({type(e).__name__}: {e}). "
                "Remove or replace the file."
            ) from None


def is_image_candidate(entry: os.DirEntry) -> bool:
    """A folder entry that an image folder must read: anything but folders, hidden files and OS clutter."""
    name = entry.name
    return not name.startswith(".") and name.lower() not in _JUNK and not entry.is_dir()

