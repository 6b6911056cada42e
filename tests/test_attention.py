import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from companion.attention import MultiHeadAttention, scaled_dot_product_attention


def qkv(batch=2, heads=3, tokens=5, d=8):
    return (torch.randn(batch, heads, tokens, d) for _ in range(3))


def test_sdpa_matches_torch_without_mask():
    q, k, v = qkv()
    out, weights = scaled_dot_product_attention(q, k, v)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert weights.shape == (2, 3, 5, 5)
    assert_close(weights.sum(-1), torch.ones(2, 3, 5))


@pytest.mark.parametrize("kind", ["causal", "padding", "float"])
def test_sdpa_matches_torch_with_mask(kind):
    q, k, v = qkv(tokens=6)
    if kind == "causal":
        mask = torch.ones(6, 6, dtype=torch.bool).tril()
    elif kind == "padding":  # batch item 1 has its last two keys padded
        keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
        mask = keep[:, None, None, :]  # [batch, 1, 1, tokens_k]
    else:
        mask = torch.randn(6, 6)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    if kind == "causal":  # nothing above the diagonal: no peeking at later tokens
        assert (weights.triu(diagonal=1) == 0).all()
    if kind == "padding":
        assert (weights[1, ..., 4:] == 0).all()


def test_sdpa_fully_masked_row_gives_zeros_like_torch():
    q, k, v = qkv(tokens=3)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert not out.isnan().any()
    assert (weights[..., 1, :] == 0).all()
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_sdpa_without_scale_is_detected():
    """The tolerance is tight enough to see a missing 1/sqrt(d_k)."""
    q, k, v = qkv()
    unscaled = (q @ k.transpose(-2, -1)).softmax(-1) @ v
    assert not torch.allclose(unscaled, F.scaled_dot_product_attention(q, k, v), atol=1e-4)
    assert_close(((q @ k.transpose(-2, -1)) / math.sqrt(8)).softmax(-1) @ v, scaled_dot_product_attention(q, k, v)[0])


def test_sdpa_dropout_zeroes_weights_only_in_output():
    q, k, v = qkv()
    torch.manual_seed(1)
    out_drop, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    out, weights_ref = scaled_dot_product_attention(q, k, v)
    assert_close(weights, weights_ref)  # returned weights are the pre-dropout probabilities
    assert not torch.allclose(out_drop, out)


def paired_mha(dim=12, heads=3, bias=True):
    ours = MultiHeadAttention(dim, heads, bias=bias)
    theirs = nn.MultiheadAttention(dim, heads, bias=bias, batch_first=True)
    ours.load_from_torch(theirs)
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch(bias):
    ours, theirs = paired_mha(bias=bias)
    x = torch.randn(4, 7, 12)
    out, weights = ours(x, need_weights=True)
    ref, ref_weights = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    assert_close(out, ref)
    assert_close(weights, ref_weights)
    assert weights.shape == (4, 3, 7, 7)


def test_mha_causal_mask_matches_torch_opposite_convention():
    ours, theirs = paired_mha()
    x = torch.randn(2, 5, 12)
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()
    ref, _ = theirs(x, x, x, attn_mask=~allowed)  # nn.MultiheadAttention: True = blocked
    assert_close(ours(x, mask=allowed), ref)


def test_fast_path_equals_written_out_path():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(3, 9, 16)
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    for m in (None, mask):
        fast = mha(x, mask=m)
        slow, _ = mha(x, mask=m, need_weights=True)
        assert_close(fast, slow)


def test_mha_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(3\)"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="rank 3"):
        mha(torch.randn(5, 8))
    with pytest.raises(ValueError, match="last dim must be dim=8"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="same last dim"):
        scaled_dot_product_attention(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 5))
