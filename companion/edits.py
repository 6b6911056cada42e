"""Edits that change a built :class:`~companion.vit.ViT` in place, for controlled comparisons.

Each takes the model and returns it, so it can be a :class:`companion.experiments.Trial`'s
``edit``: ``Trial(edit=post_norm)``, ``Trial(edit=dropout_at(0.1, "ffn"))``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .encoder import Encoder
from .vit import ViT

DROPOUT_PLACES = ("embedding", "attention", "attn_out", "ffn", "ffn_out")



def post_norm(model: ViT) -> ViT:
    """Replace a :class:`ViT`'s pre-norm encoder by a post-norm one of the same size (in place)."""
    c = model.config
    model.encoder = Encoder(c.depth, c.dim, c.heads, c.mlp_dim, c.dropout, norm_first=False)
    return model


def no_positions(model: ViT) -> ViT:
    """Zero the learned positional embedding and freeze it: the encoder sees no position at all."""
    with torch.no_grad():
        model.pos_embedding.zero_()
    model.pos_embedding.requires_grad_(False)
    return model


def dropout_at(p: float, *places: str) -> Callable[[ViT], ViT]:
    """An ``edit`` that puts dropout ``p`` at ``places`` (and nowhere else) in a :class:`ViT`.

    Places: ``"embedding"`` (tokens + positions), ``"attention"`` (the attention weights),
    ``"attn_out"`` (the attention branch after its output projection, before the residual
    sum), ``"ffn"`` (inside the feed-forward network, after the activation), ``"ffn_out"``
    (the feed-forward branch, before the residual sum).
    """
    unknown = set(places) - set(DROPOUT_PLACES)
    if unknown:
        raise ValueError(f"unknown dropout place(s) {sorted(unknown)}; choose from {DROPOUT_PLACES}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")

    def edit(model: ViT) -> ViT:
        model.dropout.p = p if "embedding" in places else 0.0
        for block in model.encoder.blocks:
            block.attn.dropout = p if "attention" in places else 0.0
            block.drop1.p = p if "attn_out" in places else 0.0
            block.ffn.drop.p = p if "ffn" in places else 0.0
            block.drop2.p = p if "ffn_out" in places else 0.0
        return model

    return edit
