"""`python -m companion doctor FILE.py:factory`: exit 0 (clean), 1 (findings), 2 (bad input,
one line on stderr, no traceback), on model files written here."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from companion.doctor_cli import main

MODELS = '''
import torch
import torch.nn.functional as F
from torch import nn


def good():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def linear_mlp():  # BUG: no activation between the two Linears
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Linear(64, 10))


def log_softmax_model():
    return nn.Sequential(good(), nn.LogSoftmax(dim=-1))


def broken():
    raise RuntimeError("the weights file is missing")


def not_a_model():
    return "a string"


SIZE = 3
'''


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_good_model_exits_0_on_a_real_mnist_batch(models, capsys, mnist_root):
    code, out, err = run(capsys, f"{models}:good")
    assert code == 0 and err == "", err
    assert "data: the first 16 MNIST test images" in out
    assert "doctor: no findings (" in out and "checks that ran: nonfinite-parameter" in out


def test_a_buggy_model_exits_1_with_explanation_and_fix(models, capsys, mnist_root):
    code, out, _ = run(capsys, f"{models}:linear_mlp", "--batch", "8")
    assert code == 1
    assert "doctor: 1 finding" in out and "1. [linear-ffn] at 1 -> 2" in out
    assert "Fix: an activation between them" in " ".join(out.split())
    assert "data: the first 8 MNIST test images" in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_loss_choice_applies_nll_to_the_output_as_it_is(models, capsys, mnist_root):
    code, out, _ = run(capsys, f"{models}:good", "--loss", "nll")
    assert code == 1 and "[loss-not-log-prob]" in out and "loss: F.nll_loss" in out
    code, out, _ = run(capsys, f"{models}:log_softmax_model", "--loss", "nll")
    assert code == 0, out


def test_random_inputs_when_the_shape_is_not_mnist_or_mnist_is_missing(
    models, capsys, tmp_path, monkeypatch
):
    code, out, _ = run(capsys, f"{models}:good", "--input-shape", "784", "--classes", "10")
    assert code == 0
    assert "data: 16 random inputs of shape (784,) drawn from N(0, 1), with random labels in [0, 10)" in out
    monkeypatch.setenv("COMPANION_DATA", str(tmp_path / "nothing-here"))
    code, out, _ = run(capsys, f"{models}:good")
    assert code == 0 and "data: MNIST not found" in out and "16 random inputs of shape (1, 28, 28)" in out
    assert not (tmp_path / "nothing-here").exists()  # never downloads


@pytest.mark.parametrize(
    "args, message",
    [
        (["{dir}/missing.py:good"], "no such file: "),
        (["{models}:nope"], "has no 'nope'; it defines broken, good, linear_mlp"),
        (["{models}:broken"], "my_models.py:broken() raised RuntimeError: the weights file is missing"),
        (["{models}:not_a_model"], "returned a str, not a torch.nn.Module"),
        (["{models}:SIZE"], "SIZE is of type int, not a function"),
        (["{models}"], "expected FILE.py:FACTORY"),
        (["{models}:good", "--input-shape", "3,32,32"], "the model does not take inputs of shape (16, 3, 32, 32)"),
        (["{models}:good", "--input-shape", "1,28,x"], "--input-shape must be positive integers"),
        (["{models}:good", "--input-shape", "784", "--classes", "20"], "--loss ce does not fit outputs of shape (16, 10)"),
        (["{models}:good", "--loss", "mse"], "invalid choice: 'mse'"),
        (["{models}:good", "--batch", "1"], "--batch must be at least 2"),
        (["{models}:good", "--classes", "5"], "--classes 5 is too few for MNIST's labels"),
        (["{models}:good", "--epochs", "3"], "unrecognized arguments: --epochs 3"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_exits_2_with_one_line(models, capsys, mnist_root, args, message):
    argv = [a.format(models=models, dir=models.parent) for a in args]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in one_error_line(err)


def test_a_file_that_fails_to_import_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ImportError('needs timm')\n")
    code, _, err = run(capsys, f"{bad}:model")
    assert code == 2 and "importing " in one_error_line(err) and "ImportError: needs timm" in err


def test_help_exits_0(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "FILE.py:FACTORY" in out and "--input-shape" in out


def test_runs_as_a_module(models, mnist_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMPANION_DATA": str(mnist_root)}
    cwd = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "companion.doctor_cli", f"{models}:linear_mlp"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "[linear-ffn]" in done.stdout and done.stderr == ""
    done = subprocess.run(
        [sys.executable, "-m", "companion.doctor_cli", f"{models}:broken"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )
    assert done.returncode == 2 and one_error_line(done.stderr)
