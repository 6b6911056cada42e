import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from companion.bugs import LayerNormNoMean, LayerNormParens
from companion.layers import (
    FeedForward,
    LayerNorm,
    PatchEmbedding,
    SinusoidalPositionalEncoding,
    patchify,
)


def shifted_input():
    # features with a large, token-dependent mean and scale: a LayerNorm bug cannot hide here
    return torch.randn(4, 7, 16) * 3 + torch.linspace(-5, 5, 7)[None, :, None]


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "written-out"])
def test_layernorm_matches_torch_after_copying_weights(fused):
    ours, theirs = LayerNorm(16, fused=fused), nn.LayerNorm(16)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
        ours.weight.copy_(theirs.weight)
        ours.bias.copy_(theirs.bias)
    x = shifted_input().requires_grad_()
    assert_close(ours(x), theirs(x))
    assert_close(ours.written_out(x), theirs(x))
    (g_ours,) = torch.autograd.grad(ours(x).sin().sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs(x).sin().sum(), x)
    assert_close(g_ours, g_theirs)


def test_layernorm_output_statistics_per_token():
    y = LayerNorm(16)(shifted_input())
    assert_close(y.mean(-1), torch.zeros(4, 7), atol=1e-5, rtol=0)
    assert_close(y.var(-1, unbiased=False), torch.ones(4, 7), atol=1e-3, rtol=0)


@pytest.mark.parametrize("buggy", [LayerNormNoMean, LayerNormParens], ids=["no-mean", "parentheses"])
def test_the_zoos_layernorm_bugs_differ_from_layernorm_beyond_this_tolerance(buggy):
    # chapter 4's broken norms must fail the comparison the correct one passes
    x = shifted_input()
    assert not torch.allclose(buggy(16)(x), F.layer_norm(x, (16,)), atol=1e-4)
    assert torch.allclose(LayerNorm(16)(x), F.layer_norm(x, (16,)), atol=1e-4)


def test_feedforward_shapes_and_activation():
    ffn = FeedForward(8, 32, activation="relu")
    assert ffn(torch.randn(2, 5, 8)).shape == (2, 5, 8)
    assert [name for name, _ in ffn.named_children()] == ["fc1", "act", "drop", "fc2"]
    x = torch.randn(3, 8)
    assert torch.equal(ffn(x), ffn.fc2(torch.relu(ffn.fc1(x))))
    assert sum(p.numel() for p in ffn.parameters()) == 8 * 32 + 32 + 32 * 8 + 8
    with pytest.raises(ValueError, match="activation must be one of"):
        FeedForward(8, 32, activation="swish")


@pytest.mark.parametrize("dim", [6, 7])
def test_sinusoidal_values_follow_the_formula(dim):
    pe = SinusoidalPositionalEncoding(dim, max_len=50)
    out = pe(torch.zeros(1, 10, dim))[0]  # [10, dim]
    for pos in (0, 3, 9):
        for i in range(dim):
            angle = pos / 10000 ** ((i - i % 2) / dim)
            expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert out[pos, i].item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="longer than max_len=50"):
        pe(torch.zeros(1, 51, dim))


def test_patchify_matches_unfold_and_orders_patches_row_by_row():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)  # [2, 6, 48]
    assert patches.shape == (2, 6, 4 * 4 * 3)
    # unfold gives (c p1 p2) per patch; compare after reordering features to (p1 p2 c)
    unfolded = F.unfold(images, kernel_size=4, stride=4).transpose(1, 2)  # [2, 6, 48]
    assert_close(patches, unfolded.reshape(2, 6, 3, 16).transpose(2, 3).reshape(2, 6, 48))
    # patch 4 is grid row 1, column 1 (3 patches per row)
    assert_close(patches[0, 4].reshape(4, 4, 3), images[0, :, 4:8, 4:8].permute(1, 2, 0))


def test_patch_embedding_shapes_and_errors():
    pe = PatchEmbedding((12, 8), patch_size=4, in_channels=3, dim=10)
    assert pe.num_patches == 6
    assert pe(torch.randn(2, 3, 12, 8)).shape == (2, 6, 10)
    with pytest.raises(ValueError, match="not divisible by patch_size=5"):
        PatchEmbedding(28, patch_size=5, in_channels=1, dim=8)
    with pytest.raises(ValueError, match="expected 3 input channel"):
        pe(torch.randn(2, 1, 12, 8))
    with pytest.raises(ValueError, match="rank 4"):
        pe(torch.randn(3, 12, 8))
    with pytest.raises(ValueError, match="expected 12x8 images"):
        pe(torch.randn(2, 3, 8, 8))
