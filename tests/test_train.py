import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import companion.train as train_module
from companion.__main__ import main
from companion.recipe import Recipe, train_vit_mnist
from companion.train import (
    TrainConfig,
    autocast_dtype,
    default_device,
    evaluate,
    fit,
    make_scheduler,
    set_seed,
    train_model,
    warmup_cosine,
)
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


def test_fit_rejects_zero_epochs_and_needs_exactly_one_length():
    with pytest.raises(ValueError, match="at least 1"):
        fit(nn.Linear(4, 2), toy_loader(), epochs=0, progress=False)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        fit(nn.Linear(4, 2), toy_loader(), epochs=1, steps=4, progress=False)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        fit(nn.Linear(4, 2), toy_loader(), progress=False)
    with pytest.raises(TypeError):
        fit(nn.Linear(4, 2), toy_loader(), 3)  # options are keyword-only


def reference_run(model, dataset, steps, lr, batch_size, seed, warmup_steps, smoothing):
    """The loop written out in plain PyTorch, as the three harnesses it replaced each wrote it:
    AdamW, warm-up + cosine, label smoothing, batches from a seeded shuffle restarted when exhausted."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = warmup_cosine(optimizer, warmup_steps, steps)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    losses, batches = [], iter(loader)
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def test_train_model_reproduces_the_written_out_loop_exactly():
    dataset = toy_loader(100).dataset  # 100 examples, batch 16: 7 batches a pass, the last one short
    config = TrainConfig(lr=3e-3, schedule="warmup_cosine", warmup=0.1, label_smoothing=0.1, steps=20, batch_size=16)
    runs = []
    for run in ("reference", "companion"):
        set_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        if run == "reference":
            runs.append(reference_run(model, dataset, 20, 3e-3, 16, seed=5, warmup_steps=2, smoothing=0.1))
        else:
            losses = []
            train_model(model, dataset, config, seed=5, device="cpu", progress=False,
                        on_step=lambda s: losses.append(s.loss))
            runs.append(losses)
    assert runs[0] == runs[1] and len(runs[0]) == 20  # bit for bit, not approximately


def test_steps_cycle_the_loader_and_log_every_groups_them():
    set_seed(0)
    a = nn.Linear(4, 2)
    b = nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    by_epoch = fit(a, toy_loader(), epochs=3, device="cpu", progress=False)  # 4 batches per epoch
    by_steps = fit(b, toy_loader(), steps=12, log_every=4, device="cpu", progress=False)
    assert by_steps.train_loss == by_epoch.train_loss and by_steps.steps == [4, 8, 12] == by_epoch.steps
    fine = fit(nn.Linear(4, 2), toy_loader(), steps=6, log_every=2, device="cpu", progress=False)
    assert fine.epochs == 3 and fine.steps == [2, 4, 6]
    ragged = fit(nn.Linear(4, 2), toy_loader(), steps=7, log_every=3, device="cpu", progress=False)
    assert ragged.steps == [3, 6, 7]  # the last entry holds the remainder


def test_on_step_sees_every_step_and_can_stop_training():
    seen = []

    def stop_after_five(step):
        seen.append((step.step, step.lr))
        return step.step == 5

    history = fit(nn.Linear(4, 2), toy_loader(), epochs=10, device="cpu", progress=False, on_step=stop_after_five)
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5] and all(lr == 1e-3 for _, lr in seen)
    assert history.steps == [4, 5] and history.epochs == 2  # the interrupted epoch is recorded


def test_schedule_warms_up_then_decays_to_zero():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = make_scheduler(opt, TrainConfig(schedule="warmup_cosine", warmup=0.2, steps=10), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([0.5, 1.0]) and lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.05
    assert make_scheduler(opt, TrainConfig(), total_steps=10) is None


class TokenModel(nn.Module):
    """ids [batch, tokens] -> logits [batch, tokens, vocab]: predicts each token from itself."""

    def __init__(self, vocab=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, vocab)

    def forward(self, ids):
        return self.embed(ids)


def test_per_token_outputs_train_and_evaluate_per_token():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 5, (64, 7), generator=g)
    targets = (ids + 1) % 5  # learnable token by token
    loader = DataLoader(TensorDataset(ids, targets), batch_size=16)
    set_seed(0)
    model = TokenModel()
    before = evaluate(model, loader)
    logits = model(ids)  # [64, 7, 5]
    manual_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1)).item()
    manual_acc = (logits.argmax(-1) == targets).float().mean().item()
    assert before["loss"] == pytest.approx(manual_loss, rel=1e-5) and before["accuracy"] == pytest.approx(manual_acc)
    history = fit(model, loader, epochs=30, optimizer=torch.optim.Adam(model.parameters(), lr=0.1), device="cpu", progress=False)
    assert history.train_acc[-1] == 1.0 and evaluate(model, loader)["accuracy"] == 1.0


def test_float_targets_are_regression_without_an_accuracy():
    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    y = x.sum(dim=1, keepdim=True)  # [32, 1]
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(3, 1)
    history = fit(model, loader, epochs=40, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", progress=False)
    metrics = evaluate(model, loader)
    assert math.isnan(history.train_acc[-1]) and math.isnan(metrics["accuracy"])
    assert metrics["loss"] == pytest.approx(torch.nn.functional.mse_loss(model(x), y).item()) and metrics["loss"] < 1e-3


def test_progress_outside_a_terminal_prints_one_line_per_epoch(capsys):
    fit(nn.Linear(4, 2), toy_loader(), epochs=2, val_loader=toy_loader(), device="cpu", progress=True)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2: loss ") and "validation loss" in lines[1]
    assert captured.err == ""  # no progress-bar chunks where nothing redraws them


def test_mixed_precision_picks_bf16_where_supported_else_fp16(monkeypatch):
    assert autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(torch.device("cuda")) is torch.bfloat16  # Ampere and newer
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(torch.device("cuda")) is torch.float16  # Turing (Colab's T4): with a GradScaler
    set_seed(0)
    a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    plain = fit(a, toy_loader(), epochs=2, device="cpu", progress=False)
    amp = fit(b, toy_loader(), epochs=2, device="cpu", progress=False, amp=True)  # ignored on the CPU
    assert plain.train_loss == amp.train_loss


def test_fit_uses_the_fp16_scaler_when_the_gpu_lacks_bf16(monkeypatch):
    made = []

    class FakeScaler:
        def __init__(self, device):
            made.append(device)

    monkeypatch.setattr(train_module, "autocast_dtype", lambda device: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", FakeScaler)
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: __import__("contextlib").nullcontext())
    monkeypatch.setattr(FakeScaler, "scale", lambda self, loss: loss, raising=False)
    monkeypatch.setattr(FakeScaler, "unscale_", lambda self, opt: None, raising=False)
    monkeypatch.setattr(FakeScaler, "step", lambda self, opt: opt.step(), raising=False)
    monkeypatch.setattr(FakeScaler, "update", lambda self: None, raising=False)
    fit(nn.Linear(4, 2), toy_loader(), epochs=1, device="cpu", progress=False, amp=True)
    assert made == ["cuda"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="rmsprop"), "optimizer must be one of"),
        (dict(schedule="linear"), "schedule must be one of"),
        (dict(lr=0), "lr must be a positive number"),
        (dict(warmup=5), "fraction of all steps"),
        (dict(epochs=2, steps=10), "either epochs or steps"),
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(label_smoothing=1.5), "label_smoothing"),
        (dict(grad_clip=0), "grad_clip"),
    ],
)
def test_train_config_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


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
