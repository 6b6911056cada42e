import pytest
import torch

from companion.gpt import GPT, GPTConfig
from companion.text import (
    CharTokenizer,
    RandomWindows,
    train_val_split,
    unigram_entropy,
)
from companion.train import evaluate, fit, set_seed


def small(block_size=8, vocab_size=11, **kw):
    cfg = dict(vocab_size=vocab_size, block_size=block_size, dim=16, depth=2, heads=4, mlp_dim=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_forward_shape_and_weight_tying():
    model = small()
    idx = torch.randint(11, (3, 8))
    assert model(idx).shape == (3, 8, 11)
    assert model.head.weight is model.tok_emb.weight
    logits, maps = model(idx, return_attention=True)
    assert len(maps) == 2 and maps[0].shape == (3, 4, 8, 8)


@pytest.mark.parametrize("t", range(7))
def test_causality_every_offset(t):
    """Changing the token at t + k (every k >= 1) changes no logit at positions <= t."""
    model = small()
    idx = torch.randint(11, (2, 8))
    base = model(idx)
    for k in range(1, 8 - t):
        changed = idx.clone()
        changed[:, t + k] = (changed[:, t + k] + 1 + torch.randint(10, ())) % 11
        out = model(changed)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]) or torch.allclose(
            out[:, : t + 1], base[:, : t + 1], atol=1e-6
        ), f"position <= {t} changed when token {t + k} changed"
        assert not torch.allclose(out[:, t + k], base[:, t + k])  # the test can fail


@pytest.mark.parametrize("start,new", [(3, 4), (5, 20)], ids=["inside-context", "past-context"])
def test_greedy_generation_same_with_and_without_cache(start, new):
    model = small()
    idx = torch.randint(11, (3, start))
    cached = model.generate(idx, new, top_k=1)
    assert cached.shape == (3, start + new)
    assert torch.equal(cached[:, :start], idx)
    assert torch.equal(cached, model.generate(idx, new, top_k=1, use_cache=False))
    assert torch.equal(cached, model.generate(idx, new, top_k=1))  # greedy is deterministic


def test_sampling_shape_and_mode_restored():
    model = small().train()
    out = model.generate(torch.zeros(2, 1, dtype=torch.long), 5, temperature=0.8, top_k=3)
    assert out.shape == (2, 6) and model.training
    assert int(out.max()) < 11


def test_bad_inputs_have_clear_errors():
    model = small()
    with pytest.raises(ValueError, match="more than the model's context of 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.full((1, 4), 11))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.full((1, 4), -1))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by heads"):
        GPTConfig(vocab_size=11, block_size=8, dim=30, depth=1, heads=4, mlp_dim=8)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, top_k=0)


@pytest.mark.slow
def test_short_training_run_beats_unigram_entropy():
    text = "to be or not to be that is the question whether tis nobler in the mind " * 60
    tok = CharTokenizer.from_text(text)
    train, val = train_val_split(tok.encode(text))
    set_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, block_size=32, dim=32, depth=2, heads=4, mlp_dim=64))
    loader = RandomWindows(train, 32, batch_size=16, batches=50, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    fit(model, loader, steps=150, optimizer=optimizer, device="cpu", progress=False)
    entropy = unigram_entropy(train, tok.vocab_size)
    val_loss = evaluate(model, RandomWindows(val, 32, batch_size=32, batches=4, seed=1))["loss"]
    assert val_loss < 0.5 * entropy, (val_loss, entropy)
