"""MNIST, found or downloaded with a clear error when it cannot be, and patches.

Where the data is looked for (first match wins):
    1. the ``root`` argument,
    2. the environment variable ``COMPANION_DATA``,
    3. a per-user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``transformers-that-train``).
Inside that root the layout is torchvision's: ``<root>/MNIST/raw/train-images-idx3-ubyte`` etc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

# Mean and std of the pixel values (scaled to [0, 1]) over the full 60,000-image MNIST
# training set; chapter 5 recomputes them from the data.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_CLASSES = 10
MNIST_FULL_TRAIN_SIZE = 60_000
ENV_VAR = "COMPANION_DATA"
RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTNotFoundError(FileNotFoundError):
    """MNIST is not on disk and could not be downloaded."""


def default_root() -> Path:
    """The per-user cache folder used when neither ``root`` nor ``COMPANION_DATA`` is given."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "transformers-that-train"


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` argument > ``$COMPANION_DATA`` > :func:`default_root`."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_root()


def standard_transform():
    """PIL image -> ``[1, 28, 28]`` float tensor, normalised with :data:`MNIST_MEAN`/:data:`MNIST_STD`."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])


def _missing(root: Path, train: bool) -> list[Path]:
    raw = root / "MNIST" / "raw"
    return [raw / name for name in RAW_FILES[train] if not (raw / name).is_file()]


def _not_found(root: Path, train: bool, reason: str) -> MNISTNotFoundError:
    missing = _missing(root, train)
    hint = ""
    if (root / "raw" / RAW_FILES[train][0]).is_file() or (root / RAW_FILES[train][0]).is_file():
        hint = (
            f"\nIt looks like {root} is the MNIST (or MNIST/raw) folder itself: point at the folder "
            "that CONTAINS 'MNIST/'."
        )
    return MNISTNotFoundError(
        f"MNIST {'training' if train else 'test'} data not found: {reason}.\n"
        f"Looked in {root / 'MNIST' / 'raw'} for: {', '.join(p.name for p in missing)}.\n"
        f"Fix it in one of these ways:\n"
        f"  - connect to the internet and call again with download=True (torchvision fetches it), or\n"
        f"  - set {ENV_VAR}=/path/to/folder (or pass root=...) where /path/to/folder/MNIST/raw/ "
        f"holds the four unpacked IDX files.{hint}"
    )


def mnist(train: bool, root: str | os.PathLike | None = None, download: bool = True, transform=None):
    """The torchvision MNIST dataset, with the standard normalisation unless ``transform`` is given.

    Items are ``(image [1, 28, 28] float, label int)``. Raises :class:`MNISTNotFoundError`
    (saying where it looked and how to fix it) when the files are absent and cannot be downloaded.
    """
    from torchvision.datasets import MNIST

    root = resolve_root(root)
    transform = standard_transform() if transform is None else transform
    if _missing(root, train):
        if not download:
            raise _not_found(root, train, "the files are missing and download=False")
        try:
            return MNIST(str(root), train=train, download=True, transform=transform)
        except Exception as exc:  # urllib/HTTP/SSL/OSError/RuntimeError from torchvision's downloader
            from .idx import download_failure

            raise _not_found(root, train, download_failure(exc, train)) from None
    from .idx import (
        check_mnist_files,  # header, dims and size of both files: a clear error naming a bad one
    )

    check_mnist_files(root / "MNIST" / "raw", train)
    return MNIST(str(root), train=train, download=False, transform=transform)


def to_tensors(dataset) -> tuple[Tensor, Tensor]:
    """A torchvision MNIST -> ``(images [N, 1, 28, 28] float32 normalised, labels [N] int64)``.

    Much faster than iterating the dataset (no PIL round trip); same values as
    :func:`standard_transform`.
    """
    images = (dataset.data.float().div(255.0) - MNIST_MEAN) / MNIST_STD  # [N, 28, 28]
    return images.unsqueeze(1), dataset.targets.clone()


def describe(dataset) -> str:
    """One line saying which MNIST a dataset is: the offline subset or the full download."""
    n = len(dataset)
    if dataset.train:
        kind = "full training set" if n == MNIST_FULL_TRAIN_SIZE else f"offline subset of the {MNIST_FULL_TRAIN_SIZE:,}-image training set"
        return f"MNIST train: {n:,} images ({kind})"
    return f"MNIST test: {n:,} images (the standard test set)" if n == 10_000 else f"MNIST test: {n:,} images"


_TENSORS: dict[str, tuple[Tensor, Tensor, Tensor, Tensor, str, str]] = {}


def _all_tensors(root, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, str, str]:
    """Every training and test image as normalised tensors, read once per data folder."""
    key = str(resolve_root(root).resolve())
    if key not in _TENSORS:
        train_set, test_set = mnist(True, root, download), mnist(False, root, download)
        _TENSORS[key] = (*to_tensors(train_set), *to_tensors(test_set), describe(train_set), describe(test_set))
    return _TENSORS[key]


@dataclass
class MNISTTensors:
    """A fixed cut of MNIST held in memory: normalised images (``x_*``), labels (``y_*``)
    and, derived from them, the raw pixels in [0, 1] (``raw_*``)."""

    x_train: Tensor  # [N, 1, 28, 28], (pixel - MNIST_MEAN) / MNIST_STD
    y_train: Tensor  # [N] int64
    x_test: Tensor  # [M, 1, 28, 28]
    y_test: Tensor  # [M]
    info: str  # which images these are

    @property
    def raw_train(self) -> Tensor:
        return self.x_train * MNIST_STD + MNIST_MEAN  # [N, 1, 28, 28] in [0, 1]

    @property
    def raw_test(self) -> Tensor:
        return self.x_test * MNIST_STD + MNIST_MEAN

    @property
    def train(self) -> TensorDataset:
        """The training pairs ``(image [1, 28, 28], label)``."""
        return TensorDataset(self.x_train, self.y_train)

    def test_loader(self, batch_size: int = 1000) -> DataLoader:
        """The test images in order, ``batch_size`` at a time."""
        return DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=batch_size)


_SUBSETS: dict[tuple, MNISTTensors] = {}


def mnist_subset(
    train_size: int | None = None,
    test_size: int | None = None,
    *,
    sample: str = "first",
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> MNISTTensors:
    """``train_size`` training and ``test_size`` test images (``None``: all), cached per process.

    ``sample="first"`` keeps the first N training images; ``sample="random"`` draws N at random
    with a generator seeded by ``seed`` (the same N images every call). The test images are
    always the first ``test_size``.
    """
    if sample not in ("first", "random"):
        raise ValueError(f"sample must be 'first' or 'random', got {sample!r}")
    for name, value in (("train_size", train_size), ("test_size", test_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    key = (str(resolve_root(root).resolve()), train_size, test_size, sample, seed if sample == "random" else None)
    if key not in _SUBSETS:
        x_train, y_train, x_test, y_test, train_info, test_info = _all_tensors(root, download)
        used = "all used for training"
        if train_size is not None:
            if train_size > len(x_train):
                raise ValueError(f"train_size={train_size:,} but the training set has {len(x_train):,} images")
            if sample == "random":
                keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:train_size]
                used = f"{train_size:,} drawn at random (seed {seed}) for training"
            else:
                keep = torch.arange(train_size)
                used = f"the first {train_size:,} used for training"
            x_train, y_train = x_train[keep], y_train[keep]
        tested = "all used for testing"
        if test_size is not None:
            if test_size > len(x_test):
                raise ValueError(f"test_size={test_size:,} but the test set has {len(x_test):,} images")
            x_test, y_test = x_test[:test_size], y_test[:test_size]
            tested = f"the first {test_size:,} used for testing"
        _SUBSETS[key] = MNISTTensors(x_train, y_train, x_test, y_test, f"{train_info}, {used}; {test_info}, {tested}")
    return _SUBSETS[key]


@dataclass
class MNISTLoaders:
    """Batches of ``(images [batch, 1, 28, 28], labels [batch])``; ``val`` is None unless requested."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader
    info: str  # which data this is, e.g. "MNIST train: 5,000 images (offline subset ...); ..."


def mnist_loaders(
    batch_size: int = 128,
    root: str | os.PathLike | None = None,
    download: bool = True,
    val_size: int = 0,
    eval_batch_size: int = 1000,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> MNISTLoaders:
    """Train/validation/test loaders over in-memory normalised tensors.

    ``val_size`` images are held out of the training set (a fixed, seeded split) for
    validation; the test set is never used for choices. The training order is shuffled
    by a generator seeded with ``seed``, so two calls give the same batches.
    ``train_limit``/``test_limit`` keep only the first N images (quick experiments, smoke tests).
    """
    if batch_size <= 0 or eval_batch_size <= 0:
        raise ValueError(f"batch sizes must be positive, got batch_size={batch_size}, eval_batch_size={eval_batch_size}")
    x_train, y_train, x_test, y_test, train_info, test_info = _all_tensors(root, download)
    info = f"{train_info}; {test_info}"
    if not 0 <= val_size < len(x_train):
        raise ValueError(f"val_size must be in [0, {len(x_train)}), got {val_size}")
    val = None
    if val_size:
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
        val_idx, train_idx = order[:val_size], order[val_size:]
        val = DataLoader(TensorDataset(x_train[val_idx], y_train[val_idx]), batch_size=eval_batch_size)
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    for name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and limit <= 0:
            raise ValueError(f"{name} must be positive, got {limit}")
    if train_limit is not None and train_limit < len(x_train):
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
        info += f"; only the first {train_limit:,} training images used"
    if test_limit is not None and test_limit < len(x_test):
        x_test, y_test = x_test[:test_limit], y_test[:test_limit]
        info += f"; only the first {test_limit:,} test images used"
    train = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=eval_batch_size)
    if val_size:
        info += f"; {val_size:,} training images held out for validation"
    return MNISTLoaders(train, val, test, info)
