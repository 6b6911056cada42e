"""Companion package of *Transformers That Train*.

One module per idea: :mod:`~companion.attention`, :mod:`~companion.layers`,
:mod:`~companion.encoder`, :mod:`~companion.vit`, :mod:`~companion.data`,
:mod:`~companion.augment`, :mod:`~companion.train`, :mod:`~companion.recipe`,
:mod:`~companion.baselines`, :mod:`~companion.doctor` (a bug detector) and
:mod:`~companion.bugs` (the broken models chapter 4 diagnoses) and
:mod:`~companion.experiments` (seeded, budgeted comparisons; chapter 6).
"""

from .attention import MultiHeadAttention, scaled_dot_product_attention
from .doctor import Finding, Report, diagnose
from .data import MNIST_MEAN, MNIST_STD, MNISTNotFoundError, mnist, mnist_loaders, patchify
from .encoder import Encoder, EncoderBlock
from .layers import FeedForward, LayerNorm, PatchEmbedding, SinusoidalPositionalEncoding
from .source import show_source
from .train import History, default_device, evaluate, fit, set_seed
from .vit import ViT, ViTConfig, load_vit, save_vit

from . import experiments  # noqa: E402,F401  compare/Trial/Budget/Results (chapter 6)

__version__ = "0.1.0"

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "Encoder",
    "EncoderBlock",
    "Finding",
    "Report",
    "FeedForward",
    "History",
    "LayerNorm",
    "MNISTNotFoundError",
    "MultiHeadAttention",
    "PatchEmbedding",
    "SinusoidalPositionalEncoding",
    "ViT",
    "ViTConfig",
    "default_device",
    "diagnose",
    "evaluate",
    "fit",
    "load_vit",
    "mnist",
    "mnist_loaders",
    "patchify",
    "save_vit",
    "scaled_dot_product_attention",
    "set_seed",
    "show_source",
]
