"""The one training path: settings, optimizer, learning-rate schedule and the loop.

Every harness in the companion (the recipe and CLI, the bug zoo of chapter 4, the
experiments of chapter 6) trains through :func:`fit`, usually via :func:`train_model`:

    config = TrainConfig(lr=3e-3, steps=160, batch_size=64)
    history = train_model(model, dataset, config, seed=0)      # dataset: (inputs, targets)

Batches are ``(inputs, targets)``. A model maps ``inputs`` to
    logits ``[batch, classes]`` with targets ``[batch]`` (classification),
    logits ``[batch, tokens, vocab]`` with targets ``[batch, tokens]`` (one prediction per token), or
    outputs ``[batch, k]`` with float targets ``[batch, k]`` (regression: no accuracy).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.std import (
    tqdm,  # plain text bars: no ipywidgets warning on stderr in notebooks
)

LossFn = Callable[[Tensor, Tensor], Tensor]
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine")


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


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides the model, the data and the device.

    Give exactly one of ``epochs`` (passes over the data) and ``steps`` (optimizer steps).
    ``warmup`` is a fraction of all steps (``0.06`` = the first 6 %); the schedule then
    decays the learning rate to 0 along a cosine (``schedule="warmup_cosine"``).
    ``augment`` is applied to every training batch on the device (e.g.
    :class:`companion.augment.RandomAffine`). ``amp`` runs the forward pass in mixed
    precision on CUDA (see :func:`autocast_dtype`); elsewhere it is ignored.
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    schedule: str = "constant"
    warmup: float = 0.0
    label_smoothing: float = 0.0
    augment: Callable[[Tensor], Tensor] | None = None
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 64
    amp: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"need weight_decay >= 0 and 0 <= momentum < 1, got {self.weight_decay}, {self.momentum}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"TrainConfig.warmup is a fraction of all steps in [0, 1), got {self.warmup!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give TrainConfig either epochs or steps, not both")
        for name in ("epochs", "steps", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be positive or None, got {self.grad_clip!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = repr(self.augment) if self.augment is not None else None
        return d


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, over the parameters of ``model`` that require gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to the base lr over ``warmup_steps``, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """``None`` for a constant rate, else :func:`warmup_cosine` with ``config.warmup`` of ``total_steps``."""
    if config.schedule == "constant":
        return None
    warmup_steps = max(1, round(config.warmup * total_steps)) if config.warmup else 0
    return warmup_cosine(optimizer, warmup_steps, total_steps)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``: bfloat16 on GPUs that support it natively
    (Ampere and newer), float16 with gradient scaling on older ones (Colab's T4), else None."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# --------------------------------------------------------------------------------------------
# Losses and metrics for every output shape
# --------------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of logits ``[batch, classes]`` or ``[batch, tokens, vocab]`` against
    class ids ``[batch]`` or ``[batch, tokens]`` (per token); float targets get the mean squared error."""
    if targets.is_floating_point():
        return F.mse_loss(logits, targets)
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), label_smoothing=label_smoothing)


def _predictions(logits: Tensor, targets: Tensor) -> int:
    """How many predictions a batch holds: images, or tokens for per-token outputs."""
    return targets.numel() if not targets.is_floating_point() else targets.shape[0]


def _correct(logits: Tensor, targets: Tensor) -> float:
    """Correct argmax predictions in a batch; NaN for float (regression) targets."""
    if targets.is_floating_point():
        return float("nan")
    return (logits.argmax(dim=-1) == targets).sum().item()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass
class History:
    """What :func:`fit` recorded: one entry per epoch (or per ``log_every`` steps).

    Accuracies are fractions in [0, 1] (NaN for regression); ``steps`` is the number of
    optimizer steps taken when the entry was recorded; ``seconds`` the time each entry took.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of entries (epochs, or logging intervals when training by steps)."""
        return len(self.train_loss)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        last = f"train loss {self.train_loss[-1]:.4f} acc {self.train_acc[-1]:.2%}"
        if self.val_acc:
            last += f", val loss {self.val_loss[-1]:.4f} acc {self.val_acc[-1]:.2%}"
        return f"History({self.epochs} epochs, {self.total_seconds:.1f}s; last: {last})"


@dataclass
class Step:
    """What ``on_step`` sees after every optimizer step (``step`` counts from 1)."""

    step: int
    loss: float
    lr: float
    model: nn.Module
    optimizer: torch.optim.Optimizer


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode for a ``with`` block, then restore the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _device_of(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode (the mode is restored).

    Means are per prediction: per image, or per token for outputs ``[batch, tokens, vocab]``.
    ``accuracy`` is NaN for float (regression) targets.
    """
    loss_fn = cross_entropy if loss_fn is None else loss_fn
    device = _device_of(model, device)
    total_loss, correct, count = 0.0, 0.0, 0
    with eval_mode(model):
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)
            n = _predictions(logits, targets)
            total_loss += loss_fn(logits, targets).item() * n
            correct += _correct(logits, targets)
            count += n
    if count == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"loss": total_loss / count, "accuracy": correct / count}


def _batches(loader: Iterable) -> Iterator:
    """``loader``'s batches, starting over (a new epoch, a new shuffle) whenever it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("fit() got an empty loader")


def fit(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    log_every: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    loss_fn: LossFn | None = None,
    augment: Callable[[Tensor], Tensor] | None = None,
    amp: bool = False,
    grad_clip: float | None = None,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_step: Callable[[Step], bool | None] | None = None,
) -> History:
    """Train ``model`` for ``epochs`` passes over ``loader``, or for ``steps`` optimizer steps.

    Args:
        epochs / steps: exactly one. With ``steps`` the loader is cycled (a new pass, and a
            new shuffle, whenever it runs out) and one :class:`History` entry is recorded
            every ``log_every`` steps (default: one pass, or all steps if shorter; the last
            entry holds the remainder).
        optimizer: defaults to ``AdamW(lr=1e-3, weight_decay=0.05)``.
        scheduler: stepped after every optimizer step (build it for the total step count).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; defaults to :func:`cross_entropy`.
        augment: applied to each training batch of inputs on ``device``, never to validation.
        amp: mixed precision on CUDA: bfloat16 autocast where supported, else float16 with a
            gradient scaler; ignored on other devices.
        grad_clip: clip the gradients' global norm to this value before each step.
        val_loader: evaluated at every entry when given.
        device: defaults to :func:`default_device`; the model is moved there.
        progress: on a terminal, a progress bar per entry; elsewhere (a notebook, a log file)
            one line per entry.
        on_step: called with a :class:`Step` after every optimizer step; returning True stops
            training (for example when a time budget is spent) after recording the entry so far.
    """
    if (epochs is None) == (steps is None):
        raise ValueError(f"give fit() exactly one of epochs and steps, got epochs={epochs}, steps={steps}")
    if (epochs if epochs is not None else steps) < 1:
        raise ValueError(f"epochs/steps must be at least 1, got epochs={epochs}, steps={steps}")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = cross_entropy if loss_fn is None else loss_fn
    dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext

    if epochs is not None:
        per_entry, entries = len(loader), epochs  # type: ignore[arg-type]
    else:
        per_entry = log_every or min(steps, len(loader) if hasattr(loader, "__len__") else steps)
        if per_entry < 1:
            raise ValueError(f"log_every must be at least 1, got {log_every}")
        entries = math.ceil(steps / per_entry)  # the last entry may hold fewer steps
    sampler = getattr(loader, "sampler", None)
    if epochs is not None and hasattr(sampler, "set_epoch"):
        batches = None  # a DistributedSampler reshuffles per epoch: iterate epoch by epoch
    else:
        batches = _batches(loader)
    history, step, stop = History(), 0, False
    tty = progress and sys.stderr.isatty()
    for entry in range(1, entries + 1):
        model.train()
        start = time.perf_counter()
        total_loss, correct, count = 0.0, 0.0, 0
        size = per_entry if epochs is not None else min(per_entry, steps - step)
        label = f"epoch {entry}/{entries}" if epochs is not None else f"steps {step + 1}-{step + size}/{steps}"
        if batches is None:
            sampler.set_epoch(entry - 1)  # type: ignore[union-attr]
            source: Iterable = loader
        else:
            source = (next(batches) for _ in range(size))
        bar = tqdm(source, total=size, desc=label, disable=not tty, file=sys.stderr, ncols=100, mininterval=1.0)
        for inputs, targets in bar:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if augment is not None:
                inputs = augment(inputs)
            with autocast():
                logits = model(inputs)
                loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            n = _predictions(logits, targets)
            value = loss.item()
            total_loss += value * n
            correct += _correct(logits.detach(), targets)
            count += n
            bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
            if on_step is not None and on_step(Step(step, value, optimizer.param_groups[0]["lr"], model, optimizer)):
                stop = True
                break
        bar.close()
        history.train_loss.append(total_loss / count)
        history.train_acc.append(correct / count)
        history.steps.append(step)
        line = f"{label}: loss {total_loss / count:.4f}"
        if not math.isnan(correct):
            line += f", accuracy {correct / count:.2%}"
        if val_loader is not None:
            metrics = evaluate(model, val_loader, loss_fn, device)
            history.val_loss.append(metrics["loss"])
            history.val_acc.append(metrics["accuracy"])
            line += f"; validation loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.2%}"
        history.seconds.append(time.perf_counter() - start)
        if progress and not tty:
            print(f"{line} ({history.seconds[-1]:.1f} s)", flush=True)
        if stop:
            break
    return history


def loader(dataset: Dataset, batch_size: int, seed: int = 0, shuffle: bool = True) -> DataLoader:
    """Batches of ``dataset``, shuffled by a generator seeded with ``seed``: the same seed, the same order."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def train_model(
    model: nn.Module,
    data: Dataset | DataLoader,
    config: TrainConfig,
    *,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    log_every: int | None = None,
    on_step: Callable[[Step], bool | None] | None = None,
) -> History:
    """Train ``model`` on ``data`` with everything ``config`` says: batches of
    ``config.batch_size`` in an order seeded by ``seed``, its optimizer, schedule, loss (with
    label smoothing), augmentation, precision and length. Returns :func:`fit`'s History.

    ``data`` is a dataset of ``(input, target)`` pairs, or a ready loader (e.g. a sharded one
    for data-parallel training), used as it is. The global random state (dropout,
    augmentation) is the caller's: seed it before building the model (:func:`set_seed`).
    """
    if config.epochs is None and config.steps is None:
        raise ValueError("TrainConfig needs epochs or steps")
    batches = data if isinstance(data, DataLoader) else loader(data, config.batch_size, seed)
    optimizer = make_optimizer(model, config)
    total = config.steps if config.steps is not None else config.epochs * len(batches)
    scheduler = make_scheduler(optimizer, config, total)
    if loss_fn is None and config.label_smoothing:

        def loss_fn(logits: Tensor, targets: Tensor) -> Tensor:
            return cross_entropy(logits, targets, label_smoothing=config.label_smoothing)

    return fit(
        model, batches, epochs=config.epochs, steps=config.steps, log_every=log_every,
        optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, augment=config.augment,
        amp=config.amp, grad_clip=config.grad_clip, val_loader=val_loader, device=device,
        progress=progress, on_step=on_step,
    )
