import pytest
import torch
from torch.testing import assert_close
from torchvision.datasets import MNIST

from companion import data
from companion.data import (
    MNISTNotFoundError,
    mnist,
    mnist_loaders,
    resolve_root,
    to_tensors,
)


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPANION_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("COMPANION_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_root() == tmp_path / "cache" / "transformers-that-train"


def test_missing_data_without_download_says_where_and_how(tmp_path):
    with pytest.raises(MNISTNotFoundError) as info:
        mnist(train=True, root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "COMPANION_DATA" in message and "download=True" in message


def test_failed_download_is_a_clear_error_not_a_urllib_traceback(tmp_path, monkeypatch):
    # a port nothing listens on: the real torchvision download code runs and fails at once
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(MNISTNotFoundError, match="the download failed") as info:
        mnist(train=False, root=tmp_path, download=True)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "COMPANION_DATA" in str(info.value)


def test_pointing_at_the_raw_folder_gets_a_hint(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(MNISTNotFoundError, match="CONTAINS 'MNIST/'"):
        mnist(train=False, root=tmp_path, download=False)


def test_offline_copy_loads_with_standard_normalisation(mnist_root):
    train, test = mnist(True, mnist_root), mnist(False, mnist_root)
    assert len(test) == 10_000 and len(train) in (5_000, 60_000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and 0 <= label <= 9
    images, labels = to_tensors(train)
    assert_close(images[0], image)  # the fast path gives the transform's values
    assert images.shape == (len(train), 1, 28, 28) and labels.dtype == torch.int64
    # normalised with the full-set constants: close to mean 0 / std 1 on any real subset
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    assert data.describe(test) == "MNIST test: 10,000 images (the standard test set)"


def test_loaders_split_and_repeat(mnist_root):
    a = mnist_loaders(batch_size=100, root=mnist_root, val_size=500, seed=3)
    b = mnist_loaders(batch_size=100, root=mnist_root, val_size=500, seed=3)
    n_train = len(a.train.dataset)
    assert len(a.val.dataset) == 500 and n_train + 500 in (5_000, 60_000)
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    assert xa.shape == (100, 1, 28, 28) and torch.equal(ya, yb) and torch.equal(xa, xb)
    assert "held out for validation" in a.info
    with pytest.raises(ValueError, match="val_size"):
        mnist_loaders(root=mnist_root, val_size=-1)


def test_mnist_subset_first_or_seeded_random_and_cached(mnist_root):
    first = data.mnist_subset(100, 50, root=mnist_root)
    again = data.mnist_subset(100, 50, root=mnist_root)
    assert again is first  # read once per process
    full = data.mnist_loaders(root=mnist_root)
    x_all, y_all = full.train.dataset.tensors
    assert torch.equal(first.x_train, x_all[:100]) and torch.equal(first.y_train, y_all[:100])
    assert torch.equal(first.x_test, full.test.dataset.tensors[0][:50])
    rand = data.mnist_subset(100, 50, sample="random", seed=0, root=mnist_root)
    # chapter 6's images: a permutation seeded with 0, its first N (the set must never change)
    keep = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))[:100]
    assert torch.equal(rand.x_train, x_all[keep]) and not torch.equal(rand.x_train, first.x_train)
    other = data.mnist_subset(100, 50, sample="random", seed=1, root=mnist_root)
    assert not torch.equal(other.y_train, rand.y_train)
    assert torch.allclose(rand.raw_train.min(), torch.tensor(0.0), atol=1e-6)
    assert "drawn at random (seed 0)" in rand.info and "the first 50 used for testing" in rand.info
    assert len(rand.train) == 100 and sum(len(b[1]) for b in rand.test_loader(20)) == 50


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(train_size=0), "train_size must be a positive int"),
        (dict(sample="middle"), "sample must be 'first' or 'random'"),
        (dict(train_size=10**6), "the training set has"),
    ],
)
def test_mnist_subset_rejects_bad_sizes(mnist_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.mnist_subset(root=mnist_root, **kwargs)
