"""Local MNIST IDX files are checked by header and size: a bad file gets an error naming it."""

import gzip
import shutil
import struct

import pytest

from companion.data import MNISTNotFoundError, mnist
from companion.idx import (
    IDXError,
    MNISTFileError,
    check_idx,
    check_mnist_files,
    read_header,
)

TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _images(n: int, rows: int = 28, cols: int = 28) -> bytes:
    return struct.pack(">IIII", 0x803, n, rows, cols) + bytes(n * rows * cols)


def _labels(n: int, value: int = 3) -> bytes:
    return struct.pack(">II", 0x801, n) + bytes([value]) * n


@pytest.fixture
def root(tmp_path):
    """A tiny, valid MNIST: 20 blank test images labelled 3 (and 5 training images: torchvision
    wants all four files)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(_images(5))
    (raw / "train-labels-idx1-ubyte").write_bytes(_labels(5))
    (raw / TEST_FILES[0]).write_bytes(_images(20))
    (raw / TEST_FILES[1]).write_bytes(_labels(20))
    return tmp_path


def test_a_valid_pair_loads(root):
    assert check_mnist_files(root / "MNIST" / "raw", train=False) == 20
    data = mnist(train=False, root=root, download=False)
    assert len(data) == 20 and data[0][1] == 3


def test_the_real_offline_files_pass(mnist_root):
    raw = mnist_root / "MNIST" / "raw"
    assert check_mnist_files(raw, train=True) == len(mnist(True, mnist_root, download=False))
    assert check_mnist_files(raw, train=False) == 10_000


def _error(root) -> str:
    with pytest.raises(MNISTFileError) as info:
        mnist(train=False, root=root, download=False)
    return str(info.value)


def test_truncated_images_file_names_the_file_and_the_sizes(root):
    path = root / "MNIST" / "raw" / TEST_FILES[0]
    path.write_bytes(path.read_bytes()[:1000])  # today: "shape '[20, 28, 28]' is invalid for input of size 984"
    message = _error(root)
    assert str(path) in message and "truncated" in message
    assert "20 x 28 x 28" in message and "1,000 bytes" in message
    assert "download=True" in message and "offline_mnist.py" in message


def test_truncated_inside_the_header(root):
    path = root / "MNIST" / "raw" / TEST_FILES[0]
    path.write_bytes(path.read_bytes()[:9])
    assert "shorter than its own 16-byte header" in _error(root)


def test_empty_file_names_the_file(root):
    path = root / "MNIST" / "raw" / TEST_FILES[1]
    path.write_bytes(b"")  # today: "invalid literal for int() with base 16: b''"
    message = _error(root)
    assert str(path) in message and "empty" in message


def test_longer_than_its_header(root):
    path = root / "MNIST" / "raw" / TEST_FILES[1]
    path.write_bytes(path.read_bytes() + b"\0")
    assert "longer than its header says" in _error(root)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML"),
        (gzip.compress(_images(20)), "gzip archive"),
        (b"hello, this is not MNIST at all" * 10, "not an IDX file"),
    ],
    ids=["html", "gzip", "text"],
)
def test_foreign_file_is_recognised(root, content, expected):
    path = root / "MNIST" / "raw" / TEST_FILES[0]
    path.write_bytes(content)
    message = _error(root)
    assert str(path) in message and expected in message


def test_labels_file_in_place_of_images(root):
    raw = root / "MNIST" / "raw"
    shutil.copyfile(raw / TEST_FILES[1], raw / TEST_FILES[0])
    message = _error(root)
    assert "1-d uint8" in message and "MNIST images" in message and "0x00000803" in message


def test_images_of_another_size(root):
    (root / "MNIST" / "raw" / TEST_FILES[0]).write_bytes(_images(20, 32, 32))
    assert "20 x 32 x 32 images, not N x 28 x 28" in _error(root)


def test_wrong_count_of_labels_vs_images(root):
    (root / "MNIST" / "raw" / TEST_FILES[1]).write_bytes(_labels(19))
    message = _error(root)
    assert "20 images" in message and "19 labels" in message and "not a pair" in message


def test_labels_that_are_not_digits(root):
    (root / "MNIST" / "raw" / TEST_FILES[1]).write_bytes(_labels(20, value=200))
    assert "not digits 0-9" in _error(root)


def test_errors_are_mnist_not_found_errors_for_callers_and_value_errors_for_idx(root, tmp_path):
    (root / "MNIST" / "raw" / TEST_FILES[1]).write_bytes(b"")
    with pytest.raises(MNISTNotFoundError):
        mnist(train=False, root=root, download=False)
    other = tmp_path / "x.idx"
    other.write_bytes(b"")
    with pytest.raises(IDXError) as info:
        read_header(other)
    assert not isinstance(info.value, MNISTNotFoundError)


def test_check_idx_returns_dims(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(_images(2, 3, 4))
    assert read_header(path) == (0x08, (2, 3, 4))
    assert check_idx(path, 3, (None, 3, 4)) == (2, 3, 4)


def test_a_failed_download_names_the_urls_and_the_offline_alternative(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there: fails at once
    with pytest.raises(MNISTNotFoundError, match="the download failed") as info:
        mnist(train=False, root=tmp_path, download=True)
    message = str(info.value)
    assert "http://127.0.0.1:9/t10k-images-idx3-ubyte.gz" in message
    assert "offline_mnist.py" in message and "COMPANION_DATA" in message
