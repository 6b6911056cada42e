"""Chapter 7's toy encoder-decoder: the posted model copies, the fixed one continues."""

import pytest
import torch

from companion.toy_seq2seq import (
    SOURCE,
    START,
    FixedSeq2Seq,
    PostedSeq2Seq,
    shift_right,
    train_toy,
)
from companion.train import set_seed

SMALL = {"dim": 32, "heads": 4, "layers": 1}  # the same wiring, cheaper


def _moved(model, src, tgt, p):
    """Positions whose logits change when only decoder token ``p`` changes."""
    other = tgt.clone()
    other[:, p] = 1 - other[:, p]  # 0 <-> 1
    with torch.no_grad():
        delta = (model(src, other) - model(src, tgt)).abs().amax(dim=(0, 2))  # [T]
    return (delta > 1e-6).nonzero().flatten().tolist()


def test_shapes_and_pair_input():
    set_seed(0)
    src, tgt = torch.tensor([SOURCE, SOURCE]), torch.tensor([SOURCE[1:], SOURCE[1:]])
    pairs = ((PostedSeq2Seq(**SMALL), tgt), (FixedSeq2Seq(**SMALL), shift_right(tgt)))
    for model, tgt_in in pairs:
        model.eval()
        out = model(src, tgt_in)
        assert out.shape == (2, 9, 2)
        assert torch.equal(model((src, tgt_in)), out)


def test_shift_right():
    target = torch.tensor([[0, 1, 0, 1]])
    assert shift_right(target).tolist() == [[START, 0, 1, 0]]
    assert shift_right(target, start=7).tolist() == [[7, 0, 1, 0]]


def test_fixed_decoder_is_causal_and_posted_is_not():
    set_seed(0)
    src, tgt = torch.tensor([SOURCE]), torch.tensor([SOURCE[1:]])
    fixed = FixedSeq2Seq(**SMALL).eval()
    posted = PostedSeq2Seq(**SMALL).eval()
    tgt_in = shift_right(tgt)
    for p in range(1, 9):  # changing token p moves positions p.. only
        assert _moved(fixed, src, tgt_in, p) == list(range(p, 9))
    assert _moved(posted, src, tgt, 8) == list(range(9))  # the last token reaches 0


def test_generate_starts_from_start_token_and_restores_mode():
    set_seed(0)
    model = FixedSeq2Seq(**SMALL).train()
    out = model.generate(torch.tensor([SOURCE]), steps=5)
    assert out.shape == (1, 5) and set(out.flatten().tolist()) <= {0, 1}
    assert model.training


@pytest.mark.slow
def test_posted_model_copies_and_fixed_model_continues():
    src = torch.tensor([SOURCE])
    target = src[:, 1:]
    set_seed(0)
    posted = PostedSeq2Seq(**SMALL)
    losses = train_toy(posted, src, target, target, steps=150, lr=3e-3, device="cpu")
    assert len(losses) == 150 and losses[-1] < 0.01 < losses[0]
    posted.eval()
    with torch.no_grad():
        predicted = posted(src, src[:, :9]).argmax(dim=-1)
    assert torch.equal(predicted, src[:, :9])  # a copy of its decoder input

    set_seed(0)
    fixed = FixedSeq2Seq(**SMALL)
    losses = train_toy(fixed, src, shift_right(target), target, steps=150, lr=3e-3,
                       device="cpu")
    assert losses[-1] < 0.01
    assert torch.equal(fixed.generate(src, steps=9), target)  # the continuation
