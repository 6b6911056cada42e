"""Companion package of *Transformers That Train*.

One module per idea: :mod:`~companion.attention`, :mod:`~companion.layers`,
:mod:`~companion.encoder`, :mod:`~companion.vit`, :mod:`~companion.data`,
:mod:`~companion.augment`, :mod:`~companion.train`, :mod:`~companion.recipe`,
:mod:`~companion.baselines`, :mod:`~companion.doctor` (a bug detector),
:mod:`~companion.bugs` (the broken models chapter 4 diagnoses),
:mod:`~companion.experiments` (seeded, budgeted comparisons; chapter 6) with
:mod:`~companion.edits` and :mod:`~companion.probes`.
"""

from . import experiments  # noqa: E402,F401  compare/Trial/Budget/Results (chapter 6)
from .attention import MultiHeadAttention, scaled_dot_product_attention
from .data import (
    MNIST_MEAN,
    MNIST_STD,
    MNISTNotFoundError,
    mnist,
    mnist_loaders,
    mnist_subset,
)
from .decoder import DecoderBlock, Seq2Seq
from .doctor import Finding, Report, diagnose
from .encoder import Encoder, EncoderBlock
from .gpt import GPT, GPTConfig
from .layers import (
    FeedForward,
    LayerNorm,
    PatchEmbedding,
    SinusoidalPositionalEncoding,
    patchify,
)
from .pretrained import pretrained
from .source import show_source
from .text import CharTokenizer, tiny_shakespeare
from .train import (
    History,
    TrainConfig,
    default_device,
    evaluate,
    fit,
    set_seed,
    train_model,
)
from .vit import PRESETS, ViT, ViTConfig, load_vit, preset, save_vit

__version__ = "0.1.0"

__all__ = [
    "tiny_shakespeare",
    "Seq2Seq",
    "GPTConfig",
    "GPT",
    "DecoderBlock",
    "CharTokenizer",
    "MNIST_MEAN",
    "MNIST_STD",
    "Encoder",
    "EncoderBlock",
    "Finding",
    "Report",
    "FeedForward",
    "History",
    "PRESETS",
    "TrainConfig",
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
    "mnist_subset",
    "preset",
    "pretrained",
    "patchify",
    "save_vit",
    "scaled_dot_product_attention",
    "set_seed",
    "show_source",
    "train_model",
]
