import pytest
import torch
from torch import nn
from torch.testing import assert_close

from companion.encoder import Encoder, EncoderBlock


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_block_matches_torch_encoder_layer(norm_first, activation):
    theirs = nn.TransformerEncoderLayer(
        d_model=12, nhead=3, dim_feedforward=20, dropout=0.1, activation=activation,
        batch_first=True, norm_first=norm_first,
    ).eval()
    ours = EncoderBlock(12, 3, 20, dropout=0.1, norm_first=norm_first, activation=activation).eval()
    ours.load_from_torch(theirs)
    x = torch.randn(3, 5, 12)
    assert_close(ours(x), theirs(x))
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert_close(ours(x, mask=causal), theirs(x, src_mask=~causal))


def test_pre_and_post_norm_differ():
    pre, post = EncoderBlock(8, 2, 16, norm_first=True), EncoderBlock(8, 2, 16, norm_first=False)
    post.load_state_dict(pre.state_dict())
    x = torch.randn(2, 4, 8)
    assert not torch.allclose(pre(x), post(x), atol=1e-3)


def test_load_from_torch_refuses_mismatched_norm_order():
    theirs = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, norm_first=False)
    with pytest.raises(ValueError, match="norm_first differs"):
        EncoderBlock(8, 2, 16, norm_first=True).load_from_torch(theirs)


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_shapes_attention_and_gradients(norm_first):
    enc = Encoder(depth=3, dim=10, num_heads=5, mlp_dim=7, norm_first=norm_first)
    x = torch.randn(2, 11, 10, requires_grad=True)
    out, maps = enc(x, return_attention=True)
    assert out.shape == (2, 11, 10)
    assert len(maps) == 3 and all(m.shape == (2, 5, 11, 11) for m in maps)
    out.square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_encoder_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be at least 1"):
        Encoder(0, 8, 2, 16)
