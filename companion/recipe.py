"""The recipe for training the book's ViT on MNIST, shared by the CLI, the chapters and the
benchmarks so that they all report the same thing.

One protocol for every model (ViT, CNN, MLP): AdamW, linear warm-up then cosine decay,
label smoothing, and random affine augmentation of each training batch. On a CUDA GPU the
forward pass runs in bfloat16 autocast (mixed precision, and the attention's
``F.scaled_dot_product_attention`` picks its fused kernels); on a CPU everything is float32.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .augment import RandomAffine
from .data import MNIST_MEAN, MNIST_STD, MNISTLoaders, mnist_loaders
from .train import History, default_device, evaluate, fit, set_seed
from .vit import ViT, ViTConfig


@dataclass
class Recipe:
    """Everything that decides a training run besides the model, the data and the device."""

    # A ViT whose tokens come from a small convolutional stem (4x4 token cells, 49 tokens):
    # on 5,000 training images this is the change that matters most (see chapter 5).
    model: ViTConfig = field(default_factory=lambda: ViTConfig(stem="conv", patch_size=4))
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.06  # fraction of all steps spent warming the learning rate up
    label_smoothing: float = 0.1
    degrees: float = 10.0  # augmentation: rotation range
    translate: float = 0.1  # augmentation: shift range, fraction of the image
    scale: float = 0.1  # augmentation: zoom range
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def augmentation(self) -> RandomAffine | None:
        """The batch augmentation (background filled with the normalised value of a 0 pixel)."""
        if not (self.degrees or self.translate or self.scale):
            return None
        return RandomAffine(self.degrees, self.translate, self.scale, fill=-MNIST_MEAN / MNIST_STD)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 to the base lr over ``warmup_steps``, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_model(
    model: nn.Module,
    recipe: Recipe,
    loaders: MNISTLoaders,
    device: torch.device | str | None = None,
    progress: bool = True,
    epochs: int | None = None,
) -> tuple[History, float]:
    """Train any classifier with the recipe's optimizer, schedule, loss and augmentation.

    ``epochs`` overrides ``recipe.epochs`` (the benchmark gives every model the same time).
    Returns ``(history, training seconds)``.
    """
    epochs = recipe.epochs if epochs is None else epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    total_steps = epochs * len(loaders.train)
    scheduler = warmup_cosine(optimizer, max(1, round(recipe.warmup * total_steps)), total_steps)

    def loss_fn(logits, targets):
        return F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)

    start = time.perf_counter()
    history = fit(
        model, loaders.train, epochs, optimizer, scheduler, loss_fn,
        val_loader=loaders.val, device=device, progress=progress, augment=recipe.augmentation(), amp=True,
    )
    return history, time.perf_counter() - start


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
    """Seed, build the ViT, train it on MNIST with the recipe, evaluate on the test set."""
    recipe = recipe if recipe is not None else Recipe()
    device = torch.device(device) if device is not None else default_device()
    loaders = mnist_loaders(batch_size=recipe.batch_size, root=root, download=download, seed=recipe.seed)
    set_seed(recipe.seed)
    model = ViT(recipe.model)
    history, seconds = train_model(model, recipe, loaders, device, progress)
    test = evaluate(model, loaders.test, device=device)
    return RunResult(model, history, test, seconds, loaders.info, str(device))
