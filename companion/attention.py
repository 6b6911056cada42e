"""Scaled dot-product attention and multi-head self-attention.

Shapes (batch-first everywhere):
    x        [batch, tokens, dim]
    q, k, v  [batch, heads, tokens, head_dim]
    weights  [batch, heads, tokens_q, tokens_k]

Mask convention (the same as ``torch.nn.functional.scaled_dot_product_attention``):
a boolean mask is ``True`` where a query MAY attend to a key; a float mask is added to the
scores. Note that ``nn.MultiheadAttention(attn_mask=...)`` uses the opposite boolean
convention (``True`` = blocked): pass ``~mask`` there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k) + mask) v, written out step by step.

    Args:
        q: queries ``[..., tokens_q, d_k]``.
        k: keys ``[..., tokens_k, d_k]``.
        v: values ``[..., tokens_k, d_v]``.
        mask: optional, broadcastable to ``[..., tokens_q, tokens_k]``; bool (``True`` =
            may attend) or float (added to the scores, e.g. ``-inf`` to block).
        dropout_p: probability of zeroing an attention weight (pass 0.0 in eval mode).

    Returns:
        ``(out, weights)``: ``out`` is ``[..., tokens_q, d_v]``; ``weights`` are the softmax
        probabilities ``[..., tokens_q, tokens_k]`` before dropout (each row sums to 1, or
        is all zeros when the mask blocks every key of that query).
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dim (d_k), got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of tokens, got {k.shape[-2]} and {v.shape[-2]}")
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # [..., tokens_q, tokens_k]
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1)  # [..., tokens_q, tokens_k]
    # A query whose keys are all masked has a row of -inf -> softmax gives NaN. Return zeros
    # there instead, as F.scaled_dot_product_attention does.
    weights = weights.nan_to_num(0.0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights  # [..., tokens_q, d_v], [..., tokens_q, tokens_k]


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: ``heads`` attentions of size ``dim // heads`` side by side.

    Parameters are laid out as in ``nn.MultiheadAttention`` so weights copy across:
    ``qkv`` (= ``in_proj_weight``/``in_proj_bias``, rows ordered q, k, v) and ``proj``
    (= ``out_proj``). ``dropout`` drops attention weights, as ``nn.MultiheadAttention`` does.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(
                f"dim ({dim}) must be divisible by num_heads ({num_heads}): each head gets "
                f"dim // num_heads features. Try num_heads in {_divisors(dim)}."
            )
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
        *,
        context: Tensor | None = None,
        causal: bool = False,
        cache: "KVCache | None" = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Args:
            x: ``[batch, tokens, dim]``.
            mask: optional, broadcastable to ``[batch, heads, tokens, tokens]`` (see module doc).
            need_weights: also return the attention weights (uses the written-out path).
            context: attend to these tokens ``[batch, tokens_k, dim]`` instead of ``x``
                (cross-attention: queries from ``x``, keys and values from ``context``).
            causal: token ``i`` attends only to keys ``<= i`` (with a cache: to every cached
                key and to the new keys up to its own position).
            cache: a :class:`KVCache`; this call's keys and values are appended to it and the
                queries attend to everything it holds (generation, one token at a time).

        Returns:
            ``out [batch, tokens, dim]``, or ``(out, weights [batch, heads, tokens, tokens_k])``.
        """
        if x.dim() != 3:
            raise ValueError(
                f"x must be [batch, tokens, dim] (rank 3), got shape {tuple(x.shape)}; "
                "for a single sequence use x.unsqueeze(0)"
            )
        if x.shape[-1] != self.dim:
            raise ValueError(f"x's last dim must be dim={self.dim}, got {x.shape[-1]} (shape {tuple(x.shape)})")
        if context is None:
            # [batch, tokens, 3*dim] -> 3 x [batch, heads, tokens, head_dim]
            q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        else:
            q, k, v = self._cross_qkv(x, context)
        if cache is not None:
            k, v = cache.update(k, v)  # [batch, heads, cached + tokens, head_dim]
        p = self.dropout if self.training else 0.0
        is_causal = causal and mask is None and not need_weights and q.shape[-2] == k.shape[-2]
        if causal and not is_causal:
            mask = _with_causal(mask, q.shape[-2], k.shape[-2], x.device)
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)
            weights = None
        out = self.proj(rearrange(out, "b h n d -> b n (h d)"))  # [batch, tokens, dim]
        return (out, weights) if need_weights else out

    def _cross_qkv(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q from ``x``, k and v from ``context``, with the same packed ``qkv`` weights."""
        if context.dim() != 3 or context.shape[-1] != self.dim or context.shape[0] != x.shape[0]:
            raise ValueError(
                f"context must be [batch={x.shape[0]}, tokens, dim={self.dim}], got shape {tuple(context.shape)}"
            )
        w, b = self.qkv.weight, self.qkv.bias  # rows: q, k, v
        q = F.linear(x, w[: self.dim], None if b is None else b[: self.dim])  # [batch, tokens, dim]
        kv = F.linear(context, w[self.dim :], None if b is None else b[self.dim :])  # [batch, tokens_k, 2*dim]
        q = rearrange(q, "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(kv, "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        return q, k, v

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of an ``nn.MultiheadAttention`` of the same size into this module."""
        if mha.embed_dim != self.dim or mha.num_heads != self.num_heads or not mha._qkv_same_embed_dim:
            raise ValueError(
                f"need nn.MultiheadAttention(embed_dim={self.dim}, num_heads={self.num_heads}) "
                f"with packed q/k/v, got embed_dim={mha.embed_dim}, num_heads={mha.num_heads}"
            )
        self.qkv.weight.copy_(mha.in_proj_weight)
        self.proj.weight.copy_(mha.out_proj.weight)
        if self.qkv.bias is not None:
            self.qkv.bias.copy_(mha.in_proj_bias)
            self.proj.bias.copy_(mha.out_proj.bias)
        return self

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, dropout={self.dropout}"


def causal_mask(tokens_q: int, tokens_k: int | None = None, device=None) -> Tensor:
    """Boolean ``[tokens_q, tokens_k]``, ``True`` where query ``i`` may attend to key ``j``.

    The queries are the LAST ``tokens_q`` of ``tokens_k`` positions (a key/value cache holds
    the earlier ones), so query ``i`` sees keys ``j <= i + tokens_k - tokens_q``.
    """
    tokens_k = tokens_q if tokens_k is None else tokens_k
    ones = torch.ones(tokens_q, tokens_k, dtype=torch.bool, device=device)
    return ones.tril(diagonal=tokens_k - tokens_q)


def _with_causal(mask: Tensor | None, tokens_q: int, tokens_k: int, device) -> Tensor:
    """``mask`` (bool or float, or None) combined with :func:`causal_mask`."""
    allowed = causal_mask(tokens_q, tokens_k, device)
    if mask is None:
        return allowed
    if mask.dtype == torch.bool:
        return mask & allowed
    return mask.masked_fill(~allowed, float("-inf"))


class KVCache:
    """The keys and values one attention layer has computed so far, ``[batch, heads, tokens, head_dim]``.

    Pass the same cache to every call while generating: each call appends its new keys and
    values, so a new token costs one query against the cached keys instead of recomputing
    the whole prefix.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k``, ``v`` (``[batch, heads, new, head_dim]``); return everything cached."""
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        self.k, self.v = k, v
        return k, v


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
