"""Companion package of *Transformers That Train*.

One module per idea. Models (torch and einops only): :mod:`~companion.attention`,
:mod:`~companion.layers`, :mod:`~companion.encoder`, :mod:`~companion.decoder`,
:mod:`~companion.gpt`, :mod:`~companion.vit`. On top of them: data
(:mod:`~companion.data`, :mod:`~companion.idx`, :mod:`~companion.text`,
:mod:`~companion.augment`), training (:mod:`~companion.train`, :mod:`~companion.recipe`,
:mod:`~companion.distributed`, :mod:`~companion.pretrained`,
:mod:`~companion.baselines`), the bug detector (:mod:`~companion.doctor`,
:mod:`~companion.checkup`, :mod:`~companion.checks`, :mod:`~companion.doctor_cli`) and
what it is taught on (:mod:`~companion.bugs`, :mod:`~companion.casebook`,
:mod:`~companion.toy_seq2seq`), seeded comparisons (:mod:`~companion.experiments` with
:mod:`~companion.edits` and :mod:`~companion.probes`), and book support
(:mod:`~companion.source`, :mod:`~companion.book`, :mod:`~companion.exercises`).
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
