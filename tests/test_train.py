import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion.__main__ import main
from companion.recipe import Recipe, train_vit_mnist
from companion.train import default_device, evaluate, fit, set_seed
from companion.vit import ViTConfig, load_vit


def toy_loader(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))


def test_same_seed_gives_identical_losses_on_cpu():
    runs = []
    for _ in range(2):
        set_seed(123)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 2))
        runs.append(fit(model, toy_loader(), epochs=3, device="cpu", progress=False).train_loss)
    assert runs[0] == runs[1]


def test_fit_learns_a_toy_problem_and_evaluate_restores_mode():
    set_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    history = fit(model, toy_loader(256), epochs=15, val_loader=toy_loader(128, seed=1), device="cpu", progress=False)
    assert history.epochs == 15 and len(history.val_acc) == 15 and len(history.seconds) == 15
    assert history.train_loss[-1] < history.train_loss[0] and history.val_acc[-1] > 0.9
    model.train()
    metrics = evaluate(model, toy_loader(128, seed=1))
    assert model.training and set(metrics) == {"loss", "accuracy"}


def test_default_device_respects_override(monkeypatch):
    monkeypatch.setenv("COMPANION_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")


def test_fit_rejects_zero_epochs():
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        fit(nn.Linear(4, 2), toy_loader(), epochs=0, progress=False)


@pytest.mark.slow
def test_default_vit_learns_mnist_in_three_epochs(mnist_root):
    # the textbook ViT (ViTConfig defaults), trained plainly: no augmentation or label smoothing
    plain = Recipe(model=ViTConfig(), epochs=3, label_smoothing=0.0, degrees=0.0, translate=0.0, scale=0.0)
    result = train_vit_mnist(plain, root=mnist_root, device="cpu", progress=False)
    print(f"\n{result.data}: test accuracy after 3 epochs {result.test['accuracy']:.4f} in {result.seconds:.1f}s")
    assert result.test["accuracy"] >= 0.80  # chance is 0.10; measured 0.827 on the offline subset
    assert result.history.train_loss[-1] < result.history.train_loss[0]


@pytest.mark.slow
def test_cli_trains_and_writes_checkpoint_and_metrics(mnist_root, tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--data", str(mnist_root), "--out", str(tmp_path), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert f"test accuracy: {metrics['test_accuracy']:.2%}" in printed
    assert metrics["test_accuracy"] > 0.2 and len(metrics["history"]["train_loss"]) == 1
    model, meta = load_vit(tmp_path / "checkpoint.pt")
    assert meta["test_accuracy"] == metrics["test_accuracy"]


def test_cli_missing_data_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--data", str(tmp_path), "--no-download", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MNIST training data not found") and "Traceback" not in err
