"""A zoo of deliberately broken models, each beside its fixed twin (chapter 4 and its tests).

Every :class:`Bug` says which :mod:`companion.doctor` finding it should trigger, builds the
buggy and the fixed model from the same seed (so they start from the same weights wherever
the bug allows it), and names the loss each is trained with. :data:`BUDGET` is the one small
training budget every entry gets (through :func:`companion.train.train_model`), so the curves
can be compared.

Shapes follow the rest of the companion: images ``[batch, 1, 28, 28]``, tokens
``[batch, tokens, dim]``, logits ``[batch, 10]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .data import MNIST_MEAN, MNIST_STD
from .encoder import EncoderBlock
from .layers import LayerNorm
from .train import LossFn, TrainConfig, set_seed
from .vit import ViT, ViTConfig, preset

# The small ViT every experiment of the chapter trains: 16 patches of 7x7 pixels, 2 blocks.
SMALL = preset("small-2heads")
# The budget every model of the zoo gets: 160 AdamW steps of 64 images (about 2 passes over 5,000).
BUDGET = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, steps=160, batch_size=64)
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 digits: where a stalled run sits


# --------------------------------------------------------------------------------------------
# The broken pieces
# --------------------------------------------------------------------------------------------


class LayerNormNoMean(LayerNorm):
    """BUG: divides by the standard deviation but never subtracts the mean."""

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[..., dim]`` -> ``[..., dim]``; each token keeps its mean, now ``mean / std``."""
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # [..., 1]
        return x / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormMeanOverStd(LayerNorm):
    """BUG (a ViT blog's LayerNorm): the mean divided by the spread; ``x`` is lost.

    ``w * x.mean(-1, keepdim=True) / (x.std(-1, keepdim=True) + eps) + b`` is one number
    per token, broadcast over ``dim``: every token leaves the layer as ``c * w + b``
    with a scalar ``c``, whatever else it held. (:class:`LayerNormNoMean` keeps ``x``
    and is close to RMSNorm: a different, milder bug.) The blog uses ``eps=1e-6``.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps, fused=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[..., dim]`` -> ``[..., dim]``: each row is ``c * weight + bias``."""
        mean = x.mean(-1, keepdim=True)  # [..., 1]
        std = x.std(-1, keepdim=True)  # [..., 1], unbiased (torch.std's default)
        return self.weight * mean / (std + self.eps) + self.bias  # BUG: x - mean


class LayerNormParens(LayerNorm):
    """BUG: missing parentheses, ``x - mean / std`` instead of ``(x - mean) / std``: nothing is scaled."""

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[..., dim]`` -> ``[..., dim]``, shifted by ``mean / std`` and never rescaled."""
        mean = x.mean(dim=-1, keepdim=True)  # [..., 1]
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # [..., 1]
        return x - mean / torch.sqrt(var + self.eps) * self.weight + self.bias


class TorchSelfAttention(nn.Module):
    """``nn.MultiheadAttention`` as a drop-in for :class:`companion.MultiHeadAttention`.

    The block hands it ``x [batch, tokens, dim]``. ``nn.MultiheadAttention`` reads its input as
    ``[tokens, batch, dim]`` unless ``batch_first=True``, so there are two correct ways to use it
    (``batch_first=True``, or ``transpose=True`` to swap the first two axes around the call)
    and one wrong one: ``batch_first=False, transpose=False`` runs without error, returns the
    right shape, and attends across the images of the batch instead of across their patches.
    """

    def __init__(self, dim: int, num_heads: int, batch_first: bool = True, transpose: bool = False):
        super().__init__()
        if batch_first and transpose:
            raise ValueError("transpose=True is for batch_first=False; with batch_first=True nothing needs swapping")
        self.batch_first, self.transpose = batch_first, transpose
        self.mha = nn.MultiheadAttention(dim, num_heads, batch_first=batch_first)

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False) -> Tensor:
        """x: ``[batch, tokens, dim]`` -> ``[batch, tokens, dim]``."""
        if mask is not None or need_weights:
            raise NotImplementedError("TorchSelfAttention supports neither masks nor returning weights")
        if self.transpose:
            x = x.transpose(0, 1)  # [tokens, batch, dim]: the layout batch_first=False expects
        out, _ = self.mha(x, x, x, need_weights=False)
        return out.transpose(0, 1) if self.transpose else out

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}, transpose={self.transpose}"


class SharedNormBlock(EncoderBlock):
    """BUG: a pre-norm block that applies ``norm1`` twice; its twin ``norm2`` is never used."""

    def forward(self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False) -> Tensor:
        """x: ``[batch, tokens, dim]`` -> same shape."""
        x = x + self.drop1(self.attn(self.norm1(x), mask=mask))
        x = x + self.drop2(self.ffn(self.norm1(x)))  # BUG: should be self.norm2(x)
        return x


class ViTNoPosition(ViT):
    """BUG: a ViT whose tokens never receive a positional embedding."""

    def __init__(self, config: ViTConfig | None = None):
        super().__init__(config)
        self.pos_embedding = None  # the model was written without one

    def tokens(self, images: Tensor) -> Tensor:
        """images ``[batch, C, H, W]`` -> ``[batch, tokens, dim]``: patches (and CLS), no positions."""
        x = self.patch_embed(images)  # [batch, patches, dim]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # [batch, 1 + patches, dim]
        return self.dropout(x)  # BUG: should be self.dropout(x + self.pos_embedding)


def leftover_bytes(*shape: int, seed: int = 0) -> Tensor:
    """What ``torch.empty(*shape)`` may hold, made repeatable: random 32-bit patterns read as float32.

    ``torch.empty`` does not initialise memory; it returns whatever bytes the allocator hands
    back (often zeros, sometimes old data). Read as floats, arbitrary bits are mostly tiny or
    astronomically large numbers, and about 1 in 256 is ``inf``/``nan``.
    """
    bits = torch.randint(-(2**31), 2**31, shape, dtype=torch.int64, generator=torch.Generator().manual_seed(seed))
    return bits.to(torch.int32).view(torch.float32)


class ViTEmptyCLS(ViT):
    """BUG: the CLS token is created with ``torch.empty`` and never initialised."""

    def __init__(self, config: ViTConfig | None = None):
        super().__init__(config)
        if self.cls_token is None:
            raise ValueError("ViTEmptyCLS needs pool='cls'")
        self.cls_token = nn.Parameter(torch.empty(1, 1, self.config.dim))  # BUG: never initialised
        with torch.no_grad():  # make the demonstration repeatable (see leftover_bytes)
            self.cls_token.copy_(leftover_bytes(1, 1, self.config.dim))


class AlwaysDropout(nn.Dropout):
    """BUG: ``F.dropout(x, p)`` without ``training=self.training``: it drops in eval mode too."""

    def forward(self, x: Tensor) -> Tensor:
        """x: any shape -> same shape, with a fraction ``p`` of the entries zeroed (always)."""
        return F.dropout(x, self.p)  # BUG: F.dropout's `training` argument defaults to True


class RawPixels(nn.Module):
    """Undo the MNIST normalisation and scale to 0..255, as if the data pipeline forgot ``Normalize``."""

    def forward(self, images: Tensor) -> Tensor:
        """images ``[batch, 1, H, W]`` (normalised) -> same shape, pixel values in [0, 255]."""
        return (images * MNIST_STD + MNIST_MEAN) * 255.0


# --------------------------------------------------------------------------------------------
# Building the models
# --------------------------------------------------------------------------------------------


def swap_modules(model: nn.Module, old: type[nn.Module], make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replace every submodule whose type is exactly ``old`` by ``make(that_module)``; returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is old:
                setattr(parent, name, make(child))
    return model


def _same_norm(kind: type[LayerNorm]) -> Callable[[nn.Module], nn.Module]:
    def make(norm: nn.Module) -> nn.Module:
        new = kind(norm.dim, norm.eps)
        new.load_state_dict(norm.state_dict())
        return new

    return make


def vit(config: ViTConfig = SMALL) -> ViT:
    """The correct small ViT (the fixed twin of most bugs)."""
    return ViT(config)


def vit_with_norm(kind: type[LayerNorm], config: ViTConfig = SMALL) -> ViT:
    """A ViT whose every companion LayerNorm is replaced by ``kind`` (same weights)."""
    return swap_modules(ViT(config), LayerNorm, _same_norm(kind))


def raw_pixel_vit(kind: type[LayerNorm] = LayerNorm, config: ViTConfig = SMALL) -> nn.Sequential:
    """``RawPixels`` then :func:`vit_with_norm`: the same ViT, fed pixel values 0..255."""
    return nn.Sequential(RawPixels(), vit_with_norm(kind, config))


def vit_torch_attention(batch_first: bool, transpose: bool = False, config: ViTConfig = SMALL) -> ViT:
    """A ViT whose attention layers are ``nn.MultiheadAttention`` (see :class:`TorchSelfAttention`)."""
    return swap_modules(
        ViT(config), MultiHeadAttention, lambda a: TorchSelfAttention(a.dim, a.num_heads, batch_first, transpose)
    )


def vit_shared_norm(config: ViTConfig = SMALL) -> ViT:
    """A ViT whose blocks are :class:`SharedNormBlock` (same weights as :func:`vit`)."""

    def make(block: nn.Module) -> nn.Module:
        c = config
        new = SharedNormBlock(c.dim, c.heads, c.mlp_dim, c.dropout, norm_first=True)
        new.load_state_dict(block.state_dict())
        return new

    return swap_modules(ViT(config), EncoderBlock, make)


def vit_always_dropout(p: float = 0.1, config: ViTConfig = SMALL) -> ViT:
    """A ViT with dropout ``p`` whose ``nn.Dropout`` layers are :class:`AlwaysDropout`."""
    c = ViTConfig(**{**config.to_dict(), "dropout": p})
    return swap_modules(ViT(c), nn.Dropout, lambda d: AlwaysDropout(d.p))


def vit_dropout(p: float = 0.1, config: ViTConfig = SMALL) -> ViT:
    """The correct ViT with dropout ``p``."""
    return ViT(ViTConfig(**{**config.to_dict(), "dropout": p}))


# --------------------------------------------------------------------------------------------
# The zoo
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bug:
    """One deliberate bug: how to build it, its fixed twin, and what should catch it."""

    name: str  # short id, e.g. "layernorm-no-mean"
    code: str  # the companion.doctor finding it triggers
    buggy: Callable[[], nn.Module]
    fixed: Callable[[], nn.Module]
    buggy_loss: LossFn = F.cross_entropy
    fixed_loss: LossFn = F.cross_entropy
    hurts: bool = True  # measured: with BUDGET the buggy twin ends far behind the fixed one

    def build(self, fixed: bool = False, seed: int = 0) -> nn.Module:
        """The buggy (or fixed) model, built after ``set_seed(seed)``."""
        set_seed(seed)
        return (self.fixed if fixed else self.buggy)()

    def loss(self, fixed: bool = False) -> LossFn:
        return self.fixed_loss if fixed else self.buggy_loss


# `hurts` records what chapter 4 measures with BUDGET (160 steps); a test checks it.
ZOO: list[Bug] = [
    # Close to RMSNorm: still divides by the spread. Learns like the correct model.
    Bug("layernorm-no-mean", "unnormalized-norm", lambda: vit_with_norm(LayerNormNoMean), vit, hurts=False),
    # Normalises nothing: a few points behind on normalised pixels, far behind on raw 0..255 pixels.
    Bug("layernorm-parens", "unnormalized-norm", lambda: raw_pixel_vit(LayerNormParens), lambda: raw_pixel_vit(LayerNorm)),
    # Attends across the images of the batch; the CLS token never sees a patch: loss pinned at ln 10.
    Bug("mha-batch-first", "batch-mixing", lambda: vit_torch_attention(False), lambda: vit_torch_attention(True)),
    # The same model, the wrong loss: it falls below zero forever while the accuracy stays at chance.
    Bug("nll-on-logits", "loss-not-log-prob", vit, vit, buggy_loss=F.nll_loss),
    # norm2's weights never train; the model learns about as well.
    Bug("shared-norm", "unused-parameter", vit_shared_norm, vit, hurts=False),
    # A bag of patches: a few points behind on MNIST, blind to where a patch is.
    Bug("no-position", "position-blind", lambda: ViTNoPosition(SMALL), vit, hurts=False),
    # Huge values swamp the CLS token's updates: loss pinned at ln 10.
    Bug("empty-cls", "nonfinite-parameter", lambda: ViTEmptyCLS(SMALL), vit),
    # Trains identically; its evaluation is noisy and a few points low.
    Bug("dropout-in-eval", "dropout-in-eval", vit_always_dropout, vit_dropout, hurts=False),
]
BUGS: dict[str, Bug] = {bug.name: bug for bug in ZOO}
