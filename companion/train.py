"""A small, honest training loop: seeds, device choice, fit, evaluate.

Batches are ``(inputs, targets)``; models map ``inputs`` to logits ``[batch, classes]``.
"""

from __future__ import annotations

import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.std import tqdm  # plain text bars: no ipywidgets warning on stderr in notebooks

LossFn = Callable[[Tensor, Tensor], Tensor]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so runs repeat on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA generators


def default_device() -> torch.device:
    """``$COMPANION_DEVICE`` if set, else CUDA, else Apple's MPS, else the CPU."""
    if os.environ.get("COMPANION_DEVICE"):
        return torch.device(os.environ["COMPANION_DEVICE"])
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    """Per-epoch figures from :func:`fit` (accuracies are fractions in [0, 1])."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        last = f"train loss {self.train_loss[-1]:.4f} acc {self.train_acc[-1]:.2%}"
        if self.val_acc:
            last += f", val loss {self.val_loss[-1]:.4f} acc {self.val_acc[-1]:.2%}"
        return f"History({self.epochs} epochs, {sum(self.seconds):.1f}s; last: {last})"


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for a ``with`` block, then restore the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: LossFn = F.cross_entropy,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over ``loader``, in eval mode (the mode is restored)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total_loss, correct, count = 0.0, 0, 0
    with eval_mode(model):
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)  # [batch, classes]
            total_loss += loss_fn(logits, targets).item() * len(targets)
            correct += (logits.argmax(dim=-1) == targets).sum().item()
            count += len(targets)
    if count == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"loss": total_loss / count, "accuracy": correct / count}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    loss_fn: LossFn = F.cross_entropy,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    augment: Callable[[Tensor], Tensor] | None = None,
    amp: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader``.

    Args:
        optimizer: defaults to ``AdamW(lr=1e-3, weight_decay=0.05)``.
        scheduler: stepped after every optimizer step (build schedules in steps,
            ``epochs * len(train_loader)``), not once per epoch.
        loss_fn: ``loss_fn(logits [batch, classes], targets [batch]) -> scalar``.
        val_loader: evaluated after every epoch when given.
        device: defaults to :func:`default_device`; the model is moved there.
        progress: show a text progress bar per epoch (on stderr).
        augment: applied to each training batch of inputs after it is moved to ``device``
            (e.g. :class:`companion.augment.RandomAffine`); never to validation batches.
        amp: on CUDA, run forward and loss in bfloat16 autocast (mixed precision); ignored elsewhere.

    Returns:
        a :class:`History` with one entry per epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    history = History()
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss, correct, count = 0.0, 0, 0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}/{epochs}",
            disable=not progress,
            file=sys.stderr,
            leave=True,
            dynamic_ncols=False,
            ncols=100,
            mininterval=1.0,
        )
        for inputs, targets in bar:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if augment is not None:
                inputs = augment(inputs)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                logits = model(inputs)  # [batch, classes]
                loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(targets)
            correct += (logits.argmax(dim=-1) == targets).sum().item()
            count += len(targets)
            bar.set_postfix(loss=f"{total_loss / count:.4f}", acc=f"{correct / count:.3f}", refresh=False)
        history.train_loss.append(total_loss / count)
        history.train_acc.append(correct / count)
        if val_loader is not None:
            metrics = evaluate(model, val_loader, loss_fn, device)
            history.val_loss.append(metrics["loss"])
            history.val_acc.append(metrics["accuracy"])
            bar.set_postfix(
                loss=f"{total_loss / count:.4f}", acc=f"{correct / count:.3f}", val_acc=f"{metrics['accuracy']:.3f}"
            )
        bar.close()
        history.seconds.append(time.perf_counter() - start)
    return history
