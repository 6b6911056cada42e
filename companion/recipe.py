"""The default recipe for training the book's ViT on MNIST, shared by the CLI, the chapters
and the benchmarks so that they all report the same thing."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .data import mnist_loaders
from .train import History, default_device, evaluate, fit, set_seed
from .vit import ViT, ViTConfig


@dataclass
class Recipe:
    """Everything that decides a training run besides the data and the device."""

    model: ViTConfig = field(default_factory=ViTConfig)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    label_smoothing: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to the base lr over ``warmup_steps``, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class RunResult:
    model: ViT
    history: History
    test: dict[str, float]
    seconds: float
    data: str
    device: str


def train_vit_mnist(
    recipe: Recipe | None = None,
    root=None,
    device: torch.device | str | None = None,
    progress: bool = True,
    download: bool = True,
) -> RunResult:
    """Seed, build the ViT, train it on MNIST with AdamW + warm-up/cosine, evaluate on the test set."""
    recipe = recipe if recipe is not None else Recipe()
    device = torch.device(device) if device is not None else default_device()
    loaders = mnist_loaders(batch_size=recipe.batch_size, root=root, download=download, seed=recipe.seed)
    set_seed(recipe.seed)
    model = ViT(recipe.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = warmup_cosine(optimizer, recipe.warmup_steps, recipe.epochs * len(loaders.train))

    def loss_fn(logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)

    start = time.perf_counter()
    history = fit(model, loaders.train, recipe.epochs, optimizer, scheduler, loss_fn, device=device, progress=progress)
    seconds = time.perf_counter() - start
    test = evaluate(model, loaders.test, device=device)
    return RunResult(model, history, test, seconds, loaders.info, str(device))
