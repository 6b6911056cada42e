"""Measurements of trained models: what the tokens hold at each depth, and what a model costs.

    layer_tokens(model, images)       # the patch tokens entering the encoder and leaving each block
    position_probe(images=400)        # a Trial ``measure``: linear probes for a token's grid position
    count_macs(model, images)         # multiply-accumulates of one forward pass per image
    ink_mass, top_half_share          # regression targets computed from the raw pixels
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .train import eval_mode
from .vit import ViT


@torch.no_grad()
def layer_tokens(model: ViT, images: Tensor) -> list[Tensor]:
    """The patch tokens entering the encoder and leaving each block: ``depth + 1`` tensors
    ``[batch, patches, dim]`` (the CLS token, if any, is left out)."""
    model.eval()
    x = model.tokens(images)  # [batch, tokens, dim]
    skip = 1 if model.cls_token is not None else 0
    out = [x[:, skip:]]
    for block in model.encoder.blocks:
        x = block(x)
        out.append(x[:, skip:])
    return out


def linear_probe(features: Tensor, labels: Tensor, n_train: int, ridge: float = 1e-3) -> float:
    """Fit a ridge-regression classifier (one-hot targets) on the first ``n_train`` rows and
    return its accuracy on the rest. features ``[N, F]``, labels ``[N]`` int."""
    if not 0 < n_train < len(features):
        raise ValueError(f"n_train must be in (0, {len(features)}), got {n_train}")
    x = features.double()
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-8
    x = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # [N, F + 1]
    classes = int(labels.max()) + 1
    y = F.one_hot(labels[:n_train], classes).double()  # [n_train, classes]
    a = x[:n_train]
    w = torch.linalg.solve(a.T @ a + ridge * n_train * torch.eye(a.shape[1], dtype=x.dtype), a.T @ y)
    return (x[n_train:] @ w).argmax(1).eq(labels[n_train:]).double().mean().item()


def position_probe(images: int = 400) -> Callable[[ViT, Tensor, Tensor], dict[str, float]]:
    """A ``measure``: can a linear classifier tell a patch token's grid position from the token
    alone, at each depth? Trained on the tokens of ``images // 2`` test images, scored on the
    next ``images // 2``. Returns ``{"probe L0": acc, "probe L1": acc, ...}`` (L0 = encoder input)."""

    def measure(model: ViT, inputs: Tensor, labels: Tensor) -> dict[str, float]:
        device = next(model.parameters()).device
        layers = layer_tokens(model, inputs[:images].to(device))
        n, p = layers[0].shape[:2]
        positions = torch.arange(p).repeat(n)  # [n * p], image-major like the reshape below
        return {
            f"probe L{i}": linear_probe(t.reshape(n * p, -1).cpu(), positions, n_train=(n // 2) * p)
            for i, t in enumerate(layers)
        }

    return measure


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ARG001
    """FLOPs of PyTorch's CPU attention kernel, which ``FlopCounterMode`` does not list (its GPU
    kernels are listed): the library's own formula for ``QK^T`` and ``weights @ V``."""
    return sdpa_flop_count(query, key, value)  # the shapes of q, k and v


def count_macs(model: nn.Module, images: Tensor) -> int:
    """Multiply-accumulates of one forward pass per image, counted by PyTorch's
    :class:`~torch.utils.flop_counter.FlopCounterMode`: every matrix product and convolution,
    and the attention's ``QK^T`` and ``weights @ V`` (one MAC = 2 FLOPs)."""
    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_attention: _cpu_sdpa_flops})
    with torch.no_grad(), eval_mode(model), counter:
        model(images)
    return counter.get_total_flops() // 2 // images.shape[0]


def ink_mass(raw: Tensor, labels: Tensor) -> Tensor:
    """Regression target: the mean pixel value of each image ``[N, 1, 28, 28] -> [N]``."""
    return raw.mean(dim=(1, 2, 3))


def top_half_share(raw: Tensor, labels: Tensor) -> Tensor:
    """Regression target: the share of each image's ink in its top 14 rows ``[N, 1, 28, 28] -> [N]``
    (a 7 is top-heavy, a 6 bottom-heavy); unlike :func:`ink_mass` it depends on where the ink is."""
    ink = raw[:, 0]  # [N, 28, 28]
    return ink[:, : ink.shape[1] // 2].sum(dim=(1, 2)) / ink.sum(dim=(1, 2)).clamp_min(1e-8)
