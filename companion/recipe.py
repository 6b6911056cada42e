"""The book's default recipe for training its ViT on MNIST, and the pipeline the CLI runs.

One protocol for every model (ViT, CNN, MLP): AdamW, linear warm-up then cosine decay,
label smoothing, and random affine augmentation of each training batch, trained through
:func:`companion.train.train_model`. On a CUDA GPU the forward pass runs in mixed precision
(bfloat16 where the GPU supports it, else float16 with gradient scaling); on a CPU
everything is float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .augment import RandomAffine
from .data import MNIST_MEAN, MNIST_STD, MNISTLoaders, mnist_loaders
from .train import History, TrainConfig, default_device, evaluate, set_seed, train_model
from .vit import ViT, ViTConfig, preset


@dataclass
class Recipe:
    """The model configuration, the training settings and the seed of the book's default run."""

    # A ViT whose tokens come from a small convolutional stem (4x4 token cells, 49 tokens):
    # on 5,000 training images this is the change that matters most (see chapter 5).
    model: ViTConfig = field(default_factory=lambda: preset("recipe"))
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

    def train_config(self, epochs: int | None = None) -> TrainConfig:
        """The recipe's :class:`~companion.train.TrainConfig` (``epochs`` overrides the recipe's)."""
        return TrainConfig(
            optimizer="adamw", lr=self.lr, weight_decay=self.weight_decay,
            schedule="warmup_cosine", warmup=self.warmup, label_smoothing=self.label_smoothing,
            augment=self.augmentation(), epochs=self.epochs if epochs is None else epochs,
            batch_size=self.batch_size, amp=True,
        )


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
    loaders: MNISTLoaders | None = None,
    wrap=None,
) -> RunResult:
    """Seed, build the ViT, train it on MNIST with the recipe, evaluate on the test set.

    ``loaders`` replaces the default ones (``mnist_loaders`` with the recipe's batch size and
    seed), e.g. with a sharded training loader for data-parallel runs; ``wrap(model)`` wraps the
    built model for training (e.g. in ``DistributedDataParallel``); the unwrapped model is returned.
    """
    recipe = recipe if recipe is not None else Recipe()
    device = torch.device(device) if device is not None else default_device()
    if loaders is None:
        loaders = mnist_loaders(batch_size=recipe.batch_size, root=root, download=download, seed=recipe.seed)
    set_seed(recipe.seed)
    model = ViT(recipe.model).to(device)
    trained = wrap(model) if wrap is not None else model
    history = train_model(
        trained, loaders.train, recipe.train_config(), seed=recipe.seed,
        val_loader=loaders.val, device=device, progress=progress,
    )
    test = evaluate(model, loaders.test, device=device)
    return RunResult(model, history, test, history.total_seconds, loaders.info, str(device))
