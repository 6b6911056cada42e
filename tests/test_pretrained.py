"""The trained ViT shipped with the package: loads in one call, says how it was made,
scores what its metadata says; broken or foreign checkpoints get one clear error."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import companion
from companion.data import mnist, to_tensors
from companion.pretrained import (
    METADATA_KEYS,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
)
from companion.recipe import Recipe
from companion.train import evaluate
from companion.vit import save_vit

ROOT = Path(__file__).resolve().parents[1]
# The module (the attribute `companion.pretrained` is the function of that name).
pretrained_module = importlib.import_module("companion.pretrained")
# The first 2,000 test images against the accuracy recorded on all 10,000: a slice this
# size has a sampling spread of about 0.3 points at 98 %; the tolerance allows for that
# and for the slice being easier or harder than the whole set, not for another model.
SLICE, SLICE_TOLERANCE = 2_000, 0.02


def build_tool():
    spec = importlib.util.spec_from_file_location(
        "build_pretrained", ROOT / "tools" / "build_pretrained.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretrained_loads_in_eval_mode_with_its_provenance():
    model, meta = companion.pretrained()
    assert isinstance(model, companion.ViT) and not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model.config == Recipe().model, "the shipped model is the recipe's ViT"
    assert set(METADATA_KEYS) <= set(meta), sorted(set(METADATA_KEYS) - set(meta))
    assert set(meta["versions"]) == {"python", "torch", "torchvision"}
    assert meta["seed"] == Recipe().seed and meta["epochs"] == Recipe().epochs
    assert meta["recipe"] == Recipe().to_dict()
    assert meta["command"] == "python tools/build_pretrained.py"
    assert (
        "MNIST train: 5,000 images" in meta["data"]
        and "MNIST test: 10,000 images" in meta["data"]
    )
    assert 0.9 < meta["test_accuracy"] <= 1.0 and 0.0 < meta["test_loss"] < 1.0
    assert (
        WEIGHTS.stat().st_size < 1_500_000
    )  # under a megabyte and a half: fine to ship


def test_two_calls_give_independent_models():
    (a, _), (b, _) = companion.pretrained(), companion.pretrained()
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


def test_pretrained_scores_its_recorded_accuracy_on_a_slice_of_the_test_set(mnist_root):
    model, meta = companion.pretrained()
    images, labels = to_tensors(mnist(False, mnist_root, download=False))
    loader = DataLoader(TensorDataset(images[:SLICE], labels[:SLICE]), batch_size=500)
    accuracy = evaluate(model, loader, device="cpu")["accuracy"]
    assert abs(accuracy - meta["test_accuracy"]) <= SLICE_TOLERANCE, (
        accuracy,
        meta["test_accuracy"],
    )


@pytest.mark.slow
def test_pretrained_reproduces_its_recorded_figures_on_all_test_images(mnist_root):
    model, meta = companion.pretrained()
    images, labels = to_tensors(mnist(False, mnist_root, download=False))
    result = evaluate(
        model, DataLoader(TensorDataset(images, labels), batch_size=1000), device="cpu"
    )
    assert len(labels) == meta["test_images"] == 10_000
    assert result["accuracy"] == pytest.approx(
        meta["test_accuracy"], abs=2e-4
    )  # at most 2 images
    assert result["loss"] == pytest.approx(meta["test_loss"], abs=1e-4)


def test_a_missing_shipped_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained_module, "WEIGHTS", tmp_path / "vit_mnist.pt")
    with pytest.raises(CheckpointError, match="missing from this installation"):
        companion.pretrained()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"hello, I am a text file\n", "is not a PyTorch file"),
        ("state_dict", "not a companion ViT checkpoint"),
        ("tensor", "not a companion ViT checkpoint"),
        ("mismatch", "config and weights do not make a companion ViT"),
        ("truncated", "is not a PyTorch checkpoint torch.load can read"),
    ],
)
def test_foreign_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content == "state_dict":
        torch.save(
            companion.pretrained()[0].state_dict(), path
        )  # weights without the config
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "mismatch":
        model, _ = companion.pretrained()
        save_vit(model, path)
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["config"]["depth"] = 2
        torch.save(checkpoint, path)
    elif content == "truncated":  # an interrupted download or copy
        data = WEIGHTS.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_the_rebuild_check_finds_a_changed_tensor(tmp_path):
    """tools/build_pretrained.py --check compares tensor by tensor: equal to itself; one
    changed value in one tensor is reported by name."""
    tool = build_tool()
    copy = tmp_path / "copy.pt"
    shutil.copy(WEIGHTS, copy)
    assert tool.compare(WEIGHTS, copy) == []
    model, meta = load_checkpoint(WEIGHTS)
    with torch.no_grad():
        model.head.bias[3] += 1e-6
    save_vit(model, copy, **meta)
    assert [line.split(":")[0] for line in tool.compare(WEIGHTS, copy)] == ["head.bias"]


@pytest.mark.slow
def test_the_wheel_ships_the_checkpoint(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "companion",
        src / "companion",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *offline,
            "-w",
            str(tmp_path / "w"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "w").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert (
            z.getinfo("companion/weights/vit_mnist.pt").file_size
            == WEIGHTS.stat().st_size
        )
