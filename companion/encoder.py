"""Transformer encoder blocks, pre-norm (GPT-2, ViT) and post-norm (original Transformer, BERT).

    pre-norm :  x = x + drop(attn(norm1(x)));   x = x + drop(ffn(norm2(x)))
    post-norm:  x = norm1(x + drop(attn(x)));   x = norm2(x + drop(ffn(x)))

Tokens are ``[batch, tokens, dim]`` throughout. Parameter names mirror
``nn.TransformerEncoderLayer`` (``norm1``, ``norm2``) so weights copy across with
:meth:`EncoderBlock.load_from_torch`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .layers import FeedForward, LayerNorm


class EncoderBlock(nn.Module):
    """Self-attention then a feed-forward network, each wrapped in a residual connection.

    ``dropout`` is used in three places, as in ``nn.TransformerEncoderLayer``: on the
    attention weights, on each residual branch's output, and inside the feed-forward network.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: str = "gelu",
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
        self.ffn = FeedForward(dim, mlp_dim, dropout=dropout, activation=activation)
        self.norm1, self.norm2 = LayerNorm(dim), LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x: ``[batch, tokens, dim]`` -> same shape (and ``weights [batch, heads, tokens, tokens]``
        when ``need_weights``)."""
        weights = None
        if self.norm_first:
            a = self.attn(self.norm1(x), mask=mask, need_weights=need_weights)
            a, weights = a if need_weights else (a, None)
            x = x + self.drop1(a)
            x = x + self.drop2(self.ffn(self.norm2(x)))
        else:
            a = self.attn(x, mask=mask, need_weights=need_weights)
            a, weights = a if need_weights else (a, None)
            x = self.norm1(x + self.drop1(a))
            x = self.norm2(x + self.drop2(self.ffn(x)))
        return (x, weights) if need_weights else x

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> "EncoderBlock":
        """Copy the weights of an ``nn.TransformerEncoderLayer`` of the same shape into this block."""
        if layer.norm_first != self.norm_first:
            raise ValueError(f"norm_first differs: this block has {self.norm_first}, the layer has {layer.norm_first}")
        self.attn.load_from_torch(layer.self_attn)
        pairs = [
            (self.ffn.fc1, layer.linear1),
            (self.ffn.fc2, layer.linear2),
            (self.norm1, layer.norm1),
            (self.norm2, layer.norm2),
        ]
        for ours, theirs in pairs:
            if ours.weight.shape != theirs.weight.shape:
                raise ValueError(f"shape mismatch copying {theirs}: {tuple(theirs.weight.shape)} vs {tuple(ours.weight.shape)}")
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
        return self


class Encoder(nn.Module):
    """``depth`` encoder blocks; pre-norm stacks end with a final LayerNorm (as GPT-2 and ViT)."""

    def __init__(
        self,
        depth: int,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        activation: str = "gelu",
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_dim, dropout, norm_first, activation) for _ in range(depth)
        )
        # Post-norm blocks already end in a LayerNorm; a pre-norm stack's residual stream does not.
        self.norm = LayerNorm(dim) if norm_first else nn.Identity()

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """x: ``[batch, tokens, dim]`` -> same shape; with ``return_attention`` also a list of
        ``depth`` tensors ``[batch, heads, tokens, tokens]``."""
        maps = []
        for block in self.blocks:
            if return_attention:
                x, w = block(x, mask=mask, need_weights=True)
                maps.append(w)
            else:
                x = block(x, mask=mask)
        x = self.norm(x)
        return (x, maps) if return_attention else x
