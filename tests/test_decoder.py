import pytest
import torch
from torch import nn
from torch.testing import assert_close

from companion.attention import KVCache, MultiHeadAttention, causal_mask
from companion.decoder import DecoderBlock, Pair, Seq2Seq


def _causal_float(n):
    return nn.Transformer.generate_square_subsequent_mask(n)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_cross_attention_block_matches_torch_decoder_layer(norm_first):
    theirs = nn.TransformerDecoderLayer(
        12, 3, 20, dropout=0.1, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    ours = DecoderBlock(12, 3, 20, dropout=0.1, norm_first=norm_first, cross_attention=True)
    ours.load_from_torch(theirs).eval()
    x, memory = torch.randn(3, 6, 12), torch.randn(3, 4, 12)
    expected = theirs(x, memory, tgt_mask=_causal_float(6), tgt_is_causal=True)
    assert_close(ours(x, memory), expected)
    # The comparison has teeth: without the mask PyTorch's layer gives something else.
    assert not torch.allclose(ours(x, memory), theirs(x, memory), atol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_block_without_cross_attention_matches_causal_encoder_layer(norm_first):
    theirs = nn.TransformerEncoderLayer(
        12, 3, 20, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    ours = DecoderBlock(12, 3, 20, norm_first=norm_first).load_from_torch(theirs).eval()
    x = torch.randn(2, 7, 12)
    assert_close(ours(x), theirs(x, src_mask=_causal_float(7), is_causal=True))


def test_load_refuses_the_wrong_layer_kind():
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)
    enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    with pytest.raises(ValueError, match="cross_attention=True"):
        DecoderBlock(8, 2, 16).load_from_torch(dec)
    with pytest.raises(ValueError, match="TransformerDecoderLayer"):
        DecoderBlock(8, 2, 16, cross_attention=True).load_from_torch(enc)


def test_memory_must_match_cross_attention():
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="pass memory"):
        DecoderBlock(8, 2, 16, cross_attention=True)(x)
    with pytest.raises(ValueError, match="no cross-attention"):
        DecoderBlock(8, 2, 16)(x, torch.randn(1, 2, 8))


def test_need_weights_are_causal_and_match_fast_path():
    block = DecoderBlock(8, 2, 16).eval()
    x = torch.randn(2, 5, 8)
    out, w = block(x, need_weights=True)
    assert w.shape == (2, 2, 5, 5)
    assert torch.all(w.triu(diagonal=1) == 0)
    assert_close(out, block(x))


def test_mha_existing_behaviour_unchanged_and_cache_matches_full_causal():
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 6, 8)
    allowed = causal_mask(6)
    assert_close(mha(x, causal=True), mha(x, mask=allowed))
    cache = KVCache()
    first = mha(x[:, :4], causal=True, cache=cache)
    rest = mha(x[:, 4:], causal=True, cache=cache)  # two new queries against 6 cached keys
    assert len(cache) == 6
    assert_close(torch.cat([first, rest], dim=1), mha(x, causal=True))


def test_mha_context_matches_torch_cross_attention():
    theirs = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    ours = MultiHeadAttention(8, 2).load_from_torch(theirs).eval()
    x, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    assert_close(ours(x, context=ctx), theirs(x, ctx, ctx, need_weights=False)[0])
    with pytest.raises(ValueError, match="context must be"):
        ours(x, context=torch.randn(2, 5, 4))


def test_seq2seq_shapes_causality_and_generate():
    model = Seq2Seq(vocab_size=7, dim=16, depth=2, heads=4, mlp_dim=32, max_len=12).eval()
    src, tgt = torch.randint(7, (2, 9)), torch.randint(7, (2, 5))
    logits = model(src, tgt)
    assert logits.shape == (2, 5, 7)
    assert_close(model(Pair(src, tgt)), logits)
    changed = tgt.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 7
    assert_close(model(src, changed)[:, :3], logits[:, :3])  # the future does not leak back
    out = model.generate(src, start_token=0, max_new_tokens=4)
    assert out.shape == (2, 5) and torch.all(out[:, 0] == 0)
    assert torch.equal(out, model.generate(src, start_token=0, max_new_tokens=4))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(src, tgt + 7)
    with pytest.raises(TypeError, match="integer token ids"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(src, start_token=0, max_new_tokens=12)


def test_pair_moves_both_tensors():
    pair = Pair(torch.zeros(2), torch.ones(3)).to(torch.float64)
    assert isinstance(pair, Pair) and pair[0].dtype == pair[1].dtype == torch.float64
