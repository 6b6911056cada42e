"""A decoder-only language model (GPT): token + position embeddings, causal decoder blocks,
a final LayerNorm and a head that scores every vocabulary entry at every position.

    idx [batch, tokens] int64 --embed--> [batch, tokens, dim] --blocks--> --head--> logits
    [batch, tokens, vocab_size]; logits[:, t] predict token t + 1 from tokens 0..t.

Laid out as nanoGPT's ``model.py``: learned positions, pre-norm blocks, the head's weight
tied to the token embedding, and GPT-2's initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import KVCache
from .decoder import DecoderBlock, check_token_ids
from .layers import LayerNorm


@dataclass
class GPTConfig:
    """Every size of a :class:`GPT`. ``block_size`` is the context: the most tokens it reads."""

    vocab_size: int
    block_size: int
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "dim", "depth", "heads", "mlp_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(
                f"GPTConfig.dim ({self.dim}) must be divisible by heads ({self.heads}): each head gets "
                f"dim // heads features. Try heads in {[h for h in range(1, self.dim + 1) if self.dim % h == 0]}."
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")


class GPT(nn.Module):
    """Decoder-only transformer: ``forward(idx [batch, tokens]) -> logits [batch, tokens, vocab]``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.pos_emb = nn.Embedding(c.block_size, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(c.dim, c.heads, c.mlp_dim, c.dropout) for _ in range(c.depth))
        self.norm = LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as GPT-2 and nanoGPT
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2: scale the residual branches' output projections
            for proj in (block.attn.proj, block.ffn.fc2):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * c.depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters, counting the tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: Tensor,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """idx ``[batch, tokens]`` int64 -> logits ``[batch, tokens, vocab_size]``.

        ``caches`` (one :class:`~companion.attention.KVCache` per block) hold the keys and
        values of the tokens before ``idx``; ``return_attention`` also returns each block's
        attention weights ``[batch, heads, tokens, tokens]``.
        """
        past = len(caches[0]) if caches else 0
        check_token_ids(idx, self.config.vocab_size, self.config.block_size - past)
        pos = torch.arange(past, past + idx.shape[1], device=idx.device)  # [tokens]
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # [batch, tokens, dim]
        maps = []
        for i, block in enumerate(self.blocks):
            cache = caches[i] if caches else None
            if return_attention:
                x, w = block(x, need_weights=True, cache=cache)
                maps.append(w)
            else:
                x = block(x, cache=cache)
        logits = self.head(self.norm(x))  # [batch, tokens, vocab_size]
        return (logits, maps) if return_attention else logits

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Continue ``idx [batch, tokens]`` by ``max_new_tokens`` sampled tokens ->
        ``[batch, tokens + max_new_tokens]``.

        Each step samples from ``softmax(logits / temperature)`` restricted to the ``top_k``
        most likely tokens; ``top_k=1`` is greedy (no randomness). The model reads at most the
        last ``block_size`` tokens, as nanoGPT does, so generation can run past the context.
        With ``use_cache`` the keys and values of earlier tokens are kept (the same tokens as
        without it, at a fraction of the cost); the cache is rebuilt when the window slides.
        """
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 0):
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy decoding), got {temperature!r}")
        if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        block_size = self.config.block_size
        check_token_ids(idx[:, -block_size:] if isinstance(idx, Tensor) and idx.dim() == 2 else idx,
                        self.config.vocab_size, block_size)
        was_training = self.training
        self.eval()
        caches: list[KVCache] | None = None
        try:
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits = self(idx[:, -block_size:])
                elif caches is None or len(caches[0]) + 1 > block_size:
                    # (Re)build the cache from the window the model reads.
                    caches = [KVCache() for _ in self.blocks]
                    logits = self(idx[:, -block_size:], caches=caches)
                else:
                    logits = self(idx[:, -1:], caches=caches)  # only the newest token
                logits = logits[:, -1, :] / temperature  # [batch, vocab_size]
                if top_k == 1:
                    nxt = logits.argmax(dim=-1, keepdim=True)
                else:
                    if top_k is not None:
                        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)  # [batch, 1]
                idx = torch.cat([idx, nxt], dim=1)
        finally:
            self.train(was_training)
        return idx
