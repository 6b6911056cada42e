"""The toy encoder-decoder of chapter 7, as the learners posted it, and fixed.

The question: a model meant to continue the source ``1 0 1 0 1 0 1 0 1 0`` was trained
with ``target = source[1:]`` given to the decoder both as its input and as its labels,
without a causal mask. Its loss went to zero, yet at test time it repeats its input.

    PostedSeq2Seq  one nn.Embedding(2, 256) for source and target, nn.Transformer
                   (2 encoder and 2 decoder layers, 4 heads, batch_first),
                   nn.Linear(256, 2); no causal mask
    FixedSeq2Seq   the same, plus a start token (a third embedding row), a causal
                   mask on the decoder's self-attention, and greedy decoding from the
                   start token

Shapes: ``src [batch, S]`` and ``tgt [batch, T]`` token ids -> logits ``[batch, T, 2]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .decoder import Pair
from .train import default_device, fit

SOURCE = (1, 0, 1, 0, 1, 0, 1, 0, 1, 0)  # the one training sequence
START = 2  # the fixed model's start-of-sequence token (never predicted)


class PostedSeq2Seq(nn.Module):
    """As posted: a shared embedding, ``nn.Transformer``, a linear head; no positions
    and no mask. ``nn.Transformer``'s defaults are kept (dropout 0.1, post-norm) except
    the feed-forward width: ``4 * dim``, the usual ratio, instead of 2048."""

    def __init__(
        self, *, vocab: int = 2, dim: int = 256, heads: int = 4, layers: int = 2
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)  # shared by source and target
        self.transformer = nn.Transformer(
            d_model=dim, nhead=heads, num_encoder_layers=layers,
            num_decoder_layers=layers, dim_feedforward=4 * dim, batch_first=True,
        )
        self.out = nn.Linear(dim, 2)  # scores for the tokens 0 and 1

    def forward(self, src: Tensor | tuple, tgt: Tensor | None = None) -> Tensor:
        """src ``[batch, S]``, tgt ``[batch, T]`` -> logits ``[batch, T, 2]``
        (or one argument, the pair ``(src, tgt)``)."""
        if tgt is None:
            src, tgt = src
        h = self.transformer(self.embed(src), self.embed(tgt))  # [batch, T, dim]
        return self.out(h)


class FixedSeq2Seq(PostedSeq2Seq):
    """Teacher forcing done right: the decoder reads ``START`` and the target shifted
    right, its self-attention is causal, and :meth:`generate` decodes from ``START``."""

    def __init__(self, *, dim: int = 256, heads: int = 4, layers: int = 2):
        super().__init__(vocab=3, dim=dim, heads=heads, layers=layers)  # 0, 1, START

    def forward(self, src: Tensor | tuple, tgt_in: Tensor | None = None) -> Tensor:
        """src ``[batch, S]``, tgt_in ``[batch, T]`` (``START`` first) -> logits
        ``[batch, T, 2]``."""
        if tgt_in is None:
            src, tgt_in = src
        t = tgt_in.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=tgt_in.device)
        h = self.transformer(  # mask [T, T]: -inf above the diagonal
            self.embed(src), self.embed(tgt_in), tgt_mask=mask, tgt_is_causal=True
        )
        return self.out(h)

    @torch.no_grad()
    def generate(self, src: Tensor, steps: int) -> Tensor:
        """Greedy decoding: ``[batch, S]`` -> ``[batch, steps]`` (``START`` dropped)."""
        was_training = self.training
        self.eval()
        out = torch.full((src.shape[0], 1), START, dtype=torch.long, device=src.device)
        for _ in range(steps):
            nxt = self(src, out)[:, -1].argmax(dim=-1, keepdim=True)  # [batch, 1]
            out = torch.cat([out, nxt], dim=1)
        self.train(was_training)
        return out[:, 1:]


def shift_right(target: Tensor, start: int = START) -> Tensor:
    """``[batch, T]`` -> ``[batch, T]``: ``start`` followed by ``target[:, :-1]``."""
    first = torch.full_like(target[:, :1], start)
    return torch.cat([first, target[:, :-1]], dim=1)


def train_toy(
    model: nn.Module,
    src: Tensor,
    tgt_in: Tensor,
    labels: Tensor,
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
) -> list[float]:
    """The learners' recipe: Adam at ``lr`` for ``steps`` steps on the one batch
    ``(src, tgt_in) -> labels``, through :func:`~companion.train.fit`. Returns the
    loss of every step."""
    losses: list[float] = []
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    # fused: the same Adam update, computed in one kernel for all parameters (faster)
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    batch = [(Pair(src, tgt_in), labels)]  # the same batch at every step
    fit(model, batch, steps=steps, log_every=steps, optimizer=optimizer, device=device,
        progress=False, on_step=lambda s: losses.append(s.loss))
    return losses
