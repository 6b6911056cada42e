"""`python -m companion`: evaluate, the doctor dispatch, errors as one line + exit 2."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from companion.__main__ import main
from companion.pretrained import WEIGHTS, pretrained
from companion.vit import ViT, ViTConfig, save_vit

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(err: str) -> str:
    """The stderr of a refused command: exactly one line, `error: ...`, no traceback."""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, (
        err
    )
    assert "Traceback" not in err
    return err


def foreign_files(tmp_path: Path) -> dict[str, Path]:
    """Files a learner might pass instead of a checkpoint."""
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    state = tmp_path / "state_dict.pt"
    torch.save({"weight": torch.randn(3, 3)}, state)  # a bare state dict, no config
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.randn(4), tensor)
    pickled = tmp_path / "object.pkl"
    pickled.write_bytes(
        pickle.dumps(types.SimpleNamespace(a=1))
    )  # weights_only refuses it
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    mismatch = tmp_path / "mismatch.pt"
    save_vit(ViT(ViTConfig(dim=8, depth=1, heads=2, mlp_dim=8)), mismatch)
    checkpoint = torch.load(mismatch, weights_only=True)
    checkpoint["config"]["dim"] = 16  # config and weights disagree
    torch.save(checkpoint, mismatch)
    return {
        "text": text,
        "state_dict": state,
        "tensor": tensor,
        "pickle": pickled,
        "empty": empty,
        "mismatch": mismatch,
        "missing": tmp_path / "nope.pt",
        "folder": tmp_path,
    }


def test_evaluate_refuses_missing_and_foreign_files_with_one_line_and_exit_2(
    tmp_path, capsys
):
    for name, path in foreign_files(tmp_path).items():
        assert main(["evaluate", str(path), "--device", "cpu"]) == 2, name
        err = one_error_line(capsys.readouterr().err)
        assert str(path) in err, f"{name}: the error must name the file: {err}"


def test_evaluate_as_a_real_command_line(tmp_path):
    """Through `python -m companion` itself: exit status 2, one line on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "companion", "evaluate", str(tmp_path / "missing.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "does not exist" in one_error_line(proc.stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_refuses_a_device_that_is_not_there(capsys):
    assert main(["evaluate", str(WEIGHTS), "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in one_error_line(
        capsys.readouterr().err
    )
    assert main(["evaluate", str(WEIGHTS), "--device", "gpu"]) == 2
    one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_evaluate_the_shipped_model_prints_its_test_loss_and_accuracy(
    mnist_root, capsys
):
    assert (
        main(
            [
                "evaluate",
                "pretrained",
                "--data",
                str(mnist_root),
                "--device",
                "cpu",
                "--no-download",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    _, meta = pretrained()
    # Same model, same 10,000 images, same device as when it was built: same figures.
    assert (
        f"test loss {meta['test_loss']:.4f}, test accuracy {meta['test_accuracy']:.2%}"
        in out
    ), out
    assert "MNIST test: 10,000 images" in out


def test_evaluate_a_checkpoint_written_by_train(mnist_root, tmp_path, capsys):
    model = ViT(ViTConfig(dim=8, depth=1, heads=2, mlp_dim=8))  # untrained: near chance
    save_vit(model, tmp_path / "checkpoint.pt", test_accuracy=0.1)
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "checkpoint.pt"),
                "--data",
                str(mnist_root),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ")[1].split("%")[0]) / 100
    assert 0.0 <= accuracy < 0.3, out


def test_evaluate_without_data_is_an_error_not_a_traceback(tmp_path, capsys):
    assert (
        main(["evaluate", str(WEIGHTS), "--data", str(tmp_path), "--no-download"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST test data not found") and "Traceback" not in err


def test_doctor_forwards_the_rest_of_the_command_line(monkeypatch):
    seen = []
    fake = types.ModuleType("companion.doctor_cli")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "companion.doctor_cli", fake)
    assert main(["doctor", "--help"]) == 3
    assert main(["doctor", "model.py", "--epochs", "2"]) == 3
    assert seen == [["--help"], ["model.py", "--epochs", "2"]]


def test_doctor_missing_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "companion.doctor_cli", None)  # import fails
    assert main(["doctor"]) == 2
    assert "not available in this companion" in one_error_line(capsys.readouterr().err)


def test_train_options_are_unchanged_and_checked(capsys):
    assert main(["train", "--epochs", "0"]) == 2
    one_error_line(capsys.readouterr().err)
    assert main(["train", "--train-limit", "0"]) == 2
    one_error_line(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    helptext = capsys.readouterr().out
    for option in (
        "--epochs",
        "--data",
        "--device",
        "--out",
        "--seed",
        "--no-download",
        "--no-progress",
        "torchrun",
    ):
        assert option in helptext
