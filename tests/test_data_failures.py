"""Data that fails well: without a network, or with a damaged file, the loaders and the
CLI say what was tried and what to do (the offline copy) in one error, no traceback."""

from __future__ import annotations

import shutil
import urllib.error

import pytest

from companion.__main__ import main
from companion.data import MNISTNotFoundError, mnist
from companion.text import (
    TINY_SHAKESPEARE_URL,
    TinyShakespeareNotFoundError,
    tiny_shakespeare,
)


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture
def offline(monkeypatch):
    """No network: every URL torchvision or the companion opens fails as on a plane."""
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr("urllib.request.urlretrieve", no_network)


def test_mnist_without_network_names_the_urls_and_the_offline_copy(tmp_path, offline):
    from torchvision.datasets import MNIST

    with pytest.raises(MNISTNotFoundError, match="the download failed") as info:
        mnist(train=True, root=tmp_path, download=True)
    message = str(info.value)
    assert f"{MNIST.mirrors[0]}train-images-idx3-ubyte.gz" in message, message
    assert "tools/offline_mnist.py" in message and "COMPANION_DATA" in message


def test_the_reason_keeps_the_cause_torchvision_collected():
    """torchvision (0.21+) raises "Error downloading X:" and the error of every mirror on
    the lines after it; the reason keeps the last cause, not only the first line."""
    from companion.idx import download_failure

    exc = RuntimeError(
        "Error downloading t10k-images-idx3-ubyte.gz:\n"
        "Tried https://a/, got:\n<urlopen error [Errno -3] name resolution>\n"
        "Tried https://b/, got:\n<urlopen error [Errno 101] Network is unreachable>\n"
    )
    reason = download_failure(exc, train=False)
    assert reason.startswith("the download failed (RuntimeError: Error downloading t10k")
    assert "Network is unreachable" in reason and "\n" not in reason


def test_tiny_shakespeare_without_network_names_the_url_and_the_offline_way(
    tmp_path, offline
):
    with pytest.raises(
        TinyShakespeareNotFoundError, match="the download failed"
    ) as info:
        tiny_shakespeare(root=tmp_path)
    reason = str(info.value).splitlines()[0]
    assert f"tried {TINY_SHAKESPEARE_URL}" in reason and "COMPANION_DATA" in str(
        info.value
    )
    assert not (tmp_path / "tinyshakespeare" / "input.txt").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_cli_without_network_is_an_error_and_exit_2(
    tmp_path, offline, capsys, command
):
    args = ["--epochs", "1", "--no-progress"] if command == "train" else []
    target = ["pretrained"] if command == "evaluate" else []
    assert main([command, *target, "--data", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: MNIST")
        and "the download failed" in err
        and "Traceback" not in err
    )


def test_the_cli_names_a_truncated_data_file(tmp_path, mnist_root, capsys):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(mnist_root / "MNIST" / "raw", raw)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # an interrupted copy
    assert (
        main(["evaluate", "pretrained", "--data", str(tmp_path), "--no-download"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {images} is truncated") and "offline_mnist.py" in err
