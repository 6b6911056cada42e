"""IDX files (MNIST's format) checked by header and size before they are used.

An IDX file is a big-endian header, ``0x00 0x00 <type> <ndim>`` then ``ndim`` 4-byte sizes,
followed by the values: for MNIST, unsigned bytes (type ``0x08``), images ``[N, 28, 28]``
(magic ``0x00000803``) and labels ``[N]`` (magic ``0x00000801``). The offline subset has no
published checksum, so :func:`check_mnist_files` checks what can be checked without one:
the magic number, the dimensions, that the file holds exactly the bytes its header promises,
that labels are digits, and that there is one label per image. A truncated, empty or foreign
file then gets an error that names it and says what to do, instead of torchvision's
``shape '[5000, 28, 28]' is invalid for input of size 984`` or
``invalid literal for int() with base 16``.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from .data import ENV_VAR, RAW_FILES, MNISTNotFoundError

UINT8 = 0x08
TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
TYPE_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
MNIST_IMAGE_SHAPE = (28, 28)
FIX = (
    "Delete it and call again with download=True (torchvision fetches and checks the archives), "
    f"or recreate the book's offline copy with `python tools/offline_mnist.py DIR` (in the book's "
    f"repository) and set {ENV_VAR}=DIR."
)


class IDXError(ValueError):
    """An IDX file that is empty, truncated, too long or not an IDX file of the expected kind."""


class MNISTFileError(MNISTNotFoundError, IDXError):
    """An MNIST file is on disk but unusable (caught by ``except MNISTNotFoundError`` too)."""


def _sniff(head: bytes) -> str:
    """What a non-IDX file looks like, from its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return "; it is a gzip archive: unpack it (gunzip) and keep the unpacked file under this name"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml")):
        return "; it is an HTML/XML page (a failed download?)"
    if head[:4] == b"PK\x03\x04":
        return "; it is a zip archive"
    return ""


def read_header(path: str | os.PathLike, error: type[IDXError] = IDXError) -> tuple[int, tuple[int, ...]]:
    """``(type code, dims)`` of the IDX file at ``path``; raises ``error`` when it is not one
    or its size is not what the header says."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise error(f"{path} is empty (0 bytes), not an IDX file. {FIX}")
    with path.open("rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in TYPE_NAMES or head[3] == 0:
            raise error(
                f"{path} is not an IDX file: it starts with bytes {head.hex(' ')} "
                f"instead of 00 00 <type> <ndim>{_sniff(head + f.read(60))}. {FIX}"
            )
        code, ndim = head[2], head[3]
        raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise error(f"{path} is truncated: {size} bytes, shorter than its own {4 + 4 * ndim}-byte header. {FIX}")
    dims = struct.unpack(f">{ndim}I", raw)
    expected = 4 + 4 * ndim + math.prod(dims) * TYPE_SIZES[code]
    if size != expected:
        shape = " x ".join(str(d) for d in dims)
        what = "truncated" if size < expected else "longer than its header says"
        raise error(
            f"{path} is {what}: its header promises {shape} {TYPE_NAMES[code]} values "
            f"({expected:,} bytes in all) but the file has {size:,} bytes. {FIX}"
        )
    return code, dims


def check_idx(
    path: str | os.PathLike,
    ndim: int,
    shape: tuple[int | None, ...] | None = None,
    kind: str = "values",
    error: type[IDXError] = IDXError,
) -> tuple[int, ...]:
    """Check that ``path`` is a complete uint8 IDX file with ``ndim`` dimensions (and ``shape``,
    ``None`` meaning any size); returns its dims."""
    path = Path(path)
    code, dims = read_header(path, error)
    magic = (code << 8) | len(dims)
    if code != UINT8 or len(dims) != ndim:
        raise error(
            f"{path} is an IDX file of {len(dims)}-d {TYPE_NAMES[code]} (magic 0x{magic:08x}), not "
            f"MNIST {kind} ({ndim}-d uint8, magic 0x{(UINT8 << 8) | ndim:08x}): is it another file "
            f"under this name? {FIX}"
        )
    if shape is not None and any(want is not None and want != got for want, got in zip(shape, dims)):
        want = " x ".join("N" if d is None else str(d) for d in shape)
        raise error(f"{path} holds {' x '.join(map(str, dims))} {kind}, not {want}. {FIX}")
    return dims


def check_mnist_files(raw: str | os.PathLike, train: bool) -> int:
    """Check the MNIST images/labels pair in ``raw`` (``<root>/MNIST/raw``) before torchvision
    reads it; returns the number of images. Raises :class:`MNISTFileError` naming the file."""
    raw = Path(raw)
    images_path, labels_path = (raw / name for name in RAW_FILES[train])
    n, *_ = check_idx(images_path, 3, (None, *MNIST_IMAGE_SHAPE), "images", MNISTFileError)
    (m,) = check_idx(labels_path, 1, None, "labels", MNISTFileError)
    if n != m:
        raise MNISTFileError(
            f"{images_path.name} holds {n:,} images but {labels_path.name} holds {m:,} labels "
            f"(in {raw}): the two files are not a pair. {FIX}"
        )
    labels = labels_path.read_bytes()[8:]
    if labels and max(labels) > 9:
        raise MNISTFileError(f"{labels_path} holds label values up to {max(labels)}, not digits 0-9. {FIX}")
    return n


def download_failure(exc: BaseException, train: bool) -> str:
    """The reason, for an MNIST download that failed: the error, the URLs tried, and the offline way."""
    from torchvision.datasets import MNIST

    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    # torchvision's "Error downloading X:\nTried <mirror>, got:\n<error>" per mirror: keep the last cause
    causes = [part.strip().splitlines()[0] for part in text.split("got:\n")[1:] if part.strip()]
    if causes:
        first_line = f"{first_line} {causes[-1]}"
    archives = [name for name, _md5 in MNIST.resources if name.startswith("train" if train else "t10k")]
    urls = [f"{mirror}{archives[0]}" for mirror in MNIST.mirrors] if archives else list(MNIST.mirrors)
    return (
        f"the download failed ({type(exc).__name__}: {first_line}); tried {' and '.join(urls)}. "
        f"Offline, recreate the book's copy with `python tools/offline_mnist.py DIR` (in the book's "
        f"repository) on a machine that has the files, and set {ENV_VAR}=DIR"
    )
