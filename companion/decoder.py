"""Decoder blocks (causal self-attention, optional cross-attention) and an encoder-decoder.

    pre-norm :  x = x + drop(self_attn(norm1(x), causal))
                x = x + drop(cross_attn(norm_cross(x), memory))     # only with cross-attention
                x = x + drop(ffn(norm2(x)))
    post-norm:  the same with each LayerNorm applied after its residual sum.

A :class:`DecoderBlock` IS an :class:`~companion.encoder.EncoderBlock` whose self-attention
is causal: token ``i`` attends only to tokens ``<= i``. That mask is the whole difference.
With ``cross_attention=True`` it also attends to an encoder's output (``memory``), as in the
original Transformer's decoder. Weights copy from ``nn.TransformerDecoderLayer`` (and, without
cross-attention, from ``nn.TransformerEncoderLayer``) with :meth:`DecoderBlock.load_from_torch`.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from .attention import KVCache, MultiHeadAttention
from .encoder import Encoder, EncoderBlock
from .layers import LayerNorm, SinusoidalPositionalEncoding


def check_token_ids(idx: Tensor, vocab_size: int, max_len: int, name: str = "idx") -> None:
    """Raise a ValueError/TypeError naming the problem unless ``idx`` is ``[batch, tokens]``
    integer token ids in ``[0, vocab_size)`` with ``1 <= tokens <= max_len``."""
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(idx).__name__}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer token ids (torch.long), got dtype {idx.dtype}; "
            f"use {name}.long() if the values are ids, or a tokenizer to get ids from text"
        )
    if idx.dim() != 2:
        raise ValueError(
            f"{name} must be [batch, tokens] (rank 2), got shape {tuple(idx.shape)}; "
            f"for a single sequence use {name}.unsqueeze(0)"
        )
    if idx.shape[1] < 1:
        raise ValueError(f"{name} has no tokens (shape {tuple(idx.shape)})")
    if idx.shape[1] > max_len:
        raise ValueError(
            f"{name} has {idx.shape[1]} tokens, more than the model's context of {max_len}; "
            f"crop it to the last {max_len} ({name}[:, -{max_len}:]) or build a model with a longer context"
        )
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name} holds token ids in [{lo}, {hi}], outside the vocabulary [0, {vocab_size - 1}]; "
            "was it encoded with another tokenizer?"
        )


class DecoderBlock(EncoderBlock):
    """An encoder block with causal self-attention, optionally followed by cross-attention.

    Arguments as :class:`~companion.encoder.EncoderBlock`; ``cross_attention=True`` adds an
    attention over ``memory`` (the encoder's output) between self-attention and the MLP.
    The causal mask is built inside (SDPA's ``is_causal``): callers never pass one.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        norm_first: bool = True,
        cross_attention: bool = False,
        *,
        activation: str = "gelu",
    ):
        super().__init__(dim, num_heads, mlp_dim, dropout, norm_first, activation)
        self.cross_attention = cross_attention
        if cross_attention:
            self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=dropout)
            self.norm_cross = LayerNorm(dim)
            self.drop_cross = nn.Dropout(dropout)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        memory: Tensor | None = None,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x ``[batch, tokens, dim]`` (and ``memory [batch, tokens_src, dim]`` with
        cross-attention) -> same shape as ``x``; with ``need_weights`` also the causal
        self-attention weights ``[batch, heads, tokens, tokens]``. ``cache`` holds the keys and
        values of earlier tokens during generation."""
        if self.cross_attention and memory is None:
            raise ValueError("this DecoderBlock has cross_attention=True: pass memory (the encoder's output)")
        if not self.cross_attention and memory is not None:
            raise ValueError("memory was given but this DecoderBlock has no cross-attention (cross_attention=False)")

        def self_attention(h: Tensor) -> tuple[Tensor, Tensor | None]:
            a = self.attn(h, need_weights=need_weights, causal=True, cache=cache)
            return a if need_weights else (a, None)

        if self.norm_first:
            a, weights = self_attention(self.norm1(x))
            x = x + self.drop1(a)
            if self.cross_attention:
                x = x + self.drop_cross(self.cross_attn(self.norm_cross(x), context=memory))
            x = x + self.drop2(self.ffn(self.norm2(x)))
        else:
            a, weights = self_attention(x)
            x = self.norm1(x + self.drop1(a))
            if self.cross_attention:
                x = self.norm_cross(x + self.drop_cross(self.cross_attn(x, context=memory)))
            x = self.norm2(x + self.drop2(self.ffn(x)))
        return (x, weights) if need_weights else x

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer | nn.TransformerEncoderLayer) -> "DecoderBlock":
        """Copy the weights of an ``nn.TransformerDecoderLayer`` (with cross-attention) or an
        ``nn.TransformerEncoderLayer`` (without) of the same shape into this block.

        PyTorch's decoder layer calls its norms ``norm1`` (self-attention), ``norm2``
        (cross-attention) and ``norm3`` (MLP); here they are ``norm1``, ``norm_cross``, ``norm2``.
        """
        if isinstance(layer, nn.TransformerDecoderLayer):
            if not self.cross_attention:
                raise ValueError(
                    "nn.TransformerDecoderLayer has cross-attention; load it into "
                    "DecoderBlock(..., cross_attention=True), or load an nn.TransformerEncoderLayer here"
                )
            # The self-attention + MLP half is an encoder layer: reuse EncoderBlock's copy.
            view = SimpleNamespace(
                norm_first=layer.norm_first, self_attn=layer.self_attn, linear1=layer.linear1,
                linear2=layer.linear2, norm1=layer.norm1, norm2=layer.norm3,
            )
            super().load_from_torch(view)  # type: ignore[arg-type]
            self.cross_attn.load_from_torch(layer.multihead_attn)
            self.norm_cross.weight.copy_(layer.norm2.weight)
            self.norm_cross.bias.copy_(layer.norm2.bias)
            return self
        if self.cross_attention:
            raise ValueError("this block has cross-attention: load an nn.TransformerDecoderLayer")
        super().load_from_torch(layer)
        return self


class Seq2Seq(nn.Module):
    """Encoder-decoder (translation-style): an encoder over ``src``, decoder blocks with
    cross-attention on its output, one token embedding shared by source and target.

    Training uses teacher forcing: ``tgt_in`` is the target shifted right behind a start
    token, the labels are the target itself, and the causal mask keeps position ``t`` from
    seeing labels ``>= t``. :meth:`generate` decodes greedily from the start token.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        max_len: int,
        *,
        dropout: float = 0.0,
    ):
        super().__init__()
        if vocab_size < 1 or max_len < 1:
            raise ValueError(f"vocab_size and max_len must be positive, got {vocab_size}, {max_len}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = SinusoidalPositionalEncoding(dim, max_len)
        self.encoder = Encoder(depth, dim, heads, mlp_dim, dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(dim, heads, mlp_dim, dropout, cross_attention=True) for _ in range(depth)
        )
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def encode(self, src: Tensor) -> Tensor:
        """src ``[batch, S]`` token ids -> memory ``[batch, S, dim]``."""
        check_token_ids(src, self.vocab_size, self.max_len, "src")
        return self.encoder(self.pos(self.embed(src)))

    def decode(self, tgt_in: Tensor, memory: Tensor) -> Tensor:
        """tgt_in ``[batch, T]`` + memory ``[batch, S, dim]`` -> logits ``[batch, T, vocab]``."""
        check_token_ids(tgt_in, self.vocab_size, self.max_len, "tgt_in")
        x = self.pos(self.embed(tgt_in))
        for block in self.blocks:
            x = block(x, memory)
        return self.head(self.norm(x))

    def forward(self, src: Tensor | tuple[Tensor, Tensor], tgt_in: Tensor | None = None) -> Tensor:
        """src ``[batch, S]``, tgt_in ``[batch, T]`` -> logits ``[batch, T, vocab]``.

        ``src`` may also be the pair ``(src, tgt_in)``, the one input a training batch holds
        (see :class:`Pair`)."""
        if tgt_in is None:
            if not isinstance(src, (tuple, list)) or len(src) != 2:
                raise TypeError("Seq2Seq needs src and tgt_in: call model(src, tgt_in) or model((src, tgt_in))")
            src, tgt_in = src
        return self.decode(tgt_in, self.encode(src))

    @torch.no_grad()
    def generate(self, src: Tensor, start_token: int, max_new_tokens: int) -> Tensor:
        """Greedy decoding: ``[batch, S]`` -> ``[batch, 1 + max_new_tokens]``, starting with
        ``start_token`` and then the most likely token at every step."""
        if not 0 <= start_token < self.vocab_size:
            raise ValueError(f"start_token must be a token id in [0, {self.vocab_size - 1}], got {start_token}")
        if max_new_tokens < 0 or max_new_tokens + 1 > self.max_len:
            raise ValueError(f"max_new_tokens must be in [0, {self.max_len - 1}] (max_len={self.max_len}), got {max_new_tokens}")
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(src)
            out = torch.full((src.shape[0], 1), start_token, dtype=torch.long, device=src.device)
            for _ in range(max_new_tokens):
                nxt = self.decode(out, memory)[:, -1].argmax(dim=-1, keepdim=True)  # [batch, 1]
                out = torch.cat([out, nxt], dim=1)
        finally:
            self.train(was_training)
        return out


class Pair(tuple):
    """``(src, tgt_in)`` as one batch input that :func:`~companion.train.fit` can move to a
    device (``.to``), so an encoder-decoder trains through the same loop as every model."""

    def __new__(cls, first: Tensor, second: Tensor) -> "Pair":
        return super().__new__(cls, (first, second))

    def to(self, *args, **kwargs) -> "Pair":
        return Pair(self[0].to(*args, **kwargs), self[1].to(*args, **kwargs))
