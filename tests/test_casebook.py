"""companion.casebook: each posted bug is there; each fix removes just its bug."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import casebook as cb
from companion.baselines import ExampleCNN
from companion.bugs import BUDGET, LayerNormMeanOverStd
from companion.casebook import (
    CASES,
    ForumBERT,
    ForumBlock,
    ForumBlockFixed,
    LayerNormBlogParens,
    Settings,
    SpanishAttention,
    SpanishBlock,
    SpanishEncoder,
    TokenAttention,
)
from companion.data import mnist_subset
from companion.layers import LayerNorm


def images(n=8, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def tokens(n=4, t=16, d=49, seed=0):
    return torch.randn(n, t, d, generator=torch.Generator().manual_seed(seed))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def modules_of(model, cls):
    return [m for m in model.modules() if type(m) is cls]


# ------------------------------------------------------------------------------------
# Every case, every step: builds, maps images to 10 logits, keeps the posted weights
# ------------------------------------------------------------------------------------

STEPS = [(name, k) for name, case in CASES.items() for k in range(len(case.fixes) + 1)]


@pytest.mark.parametrize("name, k", STEPS)
def test_every_step_maps_images_to_logits(name, k):
    model, settings = CASES[name].step(k)
    with torch.no_grad():
        out = model(settings.prepare(images()))
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    assert settings.config.steps == BUDGET.steps  # one length for the whole chapter


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].fixes])
def test_fixes_keep_the_posted_weights(name):
    case = CASES[name]
    posted = [p.detach().clone() for p in case.step(0)[0].parameters()]
    for k in range(1, len(case.fixes) + 1):
        fixed = [p.detach() for p in case.step(k)[0].parameters()]
        assert len(fixed) == len(posted)
        assert all(torch.equal(a, b) for a, b in zip(posted, fixed))


def test_each_fix_changes_one_thing():
    for case in CASES.values():
        for k, fix in enumerate(case.fixes, start=1):
            before_model, before = case.step(k - 1)
            after_model, after = case.step(k)
            if fix.settings is not None:  # the same model, other settings
                assert before != after
                assert str(before_model) == str(after_model)
            else:  # a model fix: the same settings, another model
                assert before == after
                assert str(before_model) != str(after_model)


def test_posted_settings():
    forum, blog, spanish, cnn = (CASES[n].settings for n in CASES)
    assert (forum.config.optimizer, forum.config.lr, forum.config.batch_size) == (
        "adam", 2e-3, 128)
    assert forum.config.weight_decay == 0 and forum.loss == "nll_loss"
    assert forum.inputs == "normalised"
    assert (spanish.config.optimizer, spanish.config.lr, spanish.config.batch_size) == (
        "adam", 3e-4, 64)
    assert spanish.loss == "cross_entropy" and spanish.inputs == "pixels"
    assert blog.config == BUDGET and cnn.config == BUDGET
    assert [c.number for c in CASES.values()] == [1, 2, 3, 4]
    assert [f.name for f in cb.fixes("forum-bert")] == ["cross_entropy", "norm2"]


def test_settings_prepare_pixels():
    data = mnist_subset(test_size=2000)
    pixels = Settings(BUDGET, inputs="pixels").prepare(data.x_test[:100])
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.max() > 0.99
    same = Settings(BUDGET).prepare(data.x_test[:100])
    assert torch.equal(same, data.x_test[:100])


# ------------------------------------------------------------------------------------
# Case 1: ForumBERT
# ------------------------------------------------------------------------------------


def grads_after_backward(model, loss_fn=F.cross_entropy):
    model.train()
    loss_fn(model(images()), torch.arange(8) % 10).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_forum_bert_shape_and_parts():
    model = ForumBERT()
    assert model.pos.shape == (1, 17, 64) and model.cls.shape == (1, 1, 64)
    assert len(model.blocks) == 6 and model.blocks[0].attn.heads == 8
    block = model.blocks[0]
    assert all(getattr(block.attn, n).bias is None for n in "qkvo")
    assert [type(m) for m in block.ffn] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [type(m) for m in model.head] == [nn.Linear, nn.GELU, nn.Linear]
    # randn, not a small init: standard deviation about 1
    assert 0.8 < float(model.pos.detach().std()) < 1.2


def test_forum_bert_norm2_gets_no_gradient_until_fixed():
    posted, _ = CASES["forum-bert"].step(1)  # the loss fixed, the norm not yet
    grads = grads_after_backward(posted)
    unused = sorted(n for n, g in grads.items() if g is None)
    norm2 = [f"blocks.{i}.norm2.{w}" for i in range(6) for w in ("weight", "bias")]
    assert unused == sorted(norm2)
    fixed, _ = CASES["forum-bert"].step(2)
    assert all(g is not None for g in grads_after_backward(fixed).values())
    assert len(modules_of(fixed, ForumBlockFixed)) == 6
    assert not modules_of(fixed, ForumBlock)


def test_forum_bert_loss_reads_logits_as_log_probabilities():
    z, y = torch.randn(8, 10), torch.arange(8) % 10
    posted, fixed = CASES["forum-bert"].step(0)[1], CASES["forum-bert"].step(1)[1]
    # nll_loss on logits: raising every logit lowers the loss without bound
    assert torch.allclose(posted.loss_fn(z + 5, y), posted.loss_fn(z, y) - 5)
    assert torch.allclose(fixed.loss_fn(z + 5, y), fixed.loss_fn(z, y), atol=1e-5)
    model, _ = CASES["forum-bert"].step(0)
    out = model.eval()(images())
    assert not torch.allclose(out.logsumexp(-1), torch.zeros(8), atol=1e-3)  # logits


def test_forum_block_fix_is_the_norm_only():
    torch.manual_seed(0)
    block = ForumBlock().eval()
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        block.norm2.weight.fill_(2.0)  # a norm2 that differs from norm1
        before = block(x)
        after = cb.recast(block, ForumBlockFixed)(x)
        z = block.norm1(x + block.attn(x))
    assert torch.allclose(after, block.norm2(z + block.ffn(z)).detach())
    assert not torch.allclose(before, after)
    with pytest.raises(TypeError, match="ForumBlockFixed fixes ForumBlock"):
        cb.recast(nn.Linear(2, 2), ForumBlockFixed)


# ------------------------------------------------------------------------------------
# Case 2: the blog's LayerNorms
# ------------------------------------------------------------------------------------


def test_blog_layernorm_collapses_each_token_to_one_number():
    x = tokens(d=32) * 4 + 3
    out = LayerNormMeanOverStd(32)(x)  # weight 1, bias 0
    assert torch.allclose(out, out[..., :1].expand_as(out))  # one number per token
    expected = x.mean(-1, keepdim=True) / (x.std(-1, keepdim=True) + 1e-6)
    assert torch.allclose(out[..., :1], expected)
    # two tokens with the same mean / std are indistinguishable after the layer
    a = torch.randn(1, 1, 32)
    b = a[..., torch.randperm(32)]
    assert torch.allclose(LayerNormMeanOverStd(32)(a), LayerNormMeanOverStd(32)(b))


def test_blog_parens_variant_shifts_and_does_not_scale():
    x = tokens(d=32) * 4 + 3
    out = LayerNormBlogParens(32)(x)
    assert torch.allclose(out.var(-1), x.var(-1), rtol=1e-4)  # the spread stays
    expected = x - x.mean(-1, keepdim=True) / (x.std(-1, keepdim=True) + 1e-6)
    assert torch.allclose(out, expected)


def test_blog_case_fixes_swap_the_norm_only():
    case = CASES["blog-layernorm"]
    kinds = [
        {type(m) for m in case.step(k)[0].modules() if isinstance(m, LayerNorm)}
        for k in range(3)
    ]
    assert kinds == [{LayerNormMeanOverStd}, {LayerNormBlogParens}, {LayerNorm}]
    assert len([m for m in case.step(0)[0].modules() if isinstance(m, LayerNorm)]) == 5
    assert all(m.eps == 1e-6 for m in modules_of(case.step(0)[0], LayerNormMeanOverStd))
    # after both fixes: chapter 4's correct small ViT, weight for weight
    from companion.bugs import vit
    from companion.train import set_seed

    set_seed(0)
    reference = state(vit())
    fixed = state(case.step(2)[0])
    assert reference.keys() == fixed.keys()
    assert all(torch.equal(reference[k], fixed[k]) for k in reference)


def test_swap_norm_keeps_trained_weights():
    model = nn.Sequential(LayerNormMeanOverStd(8))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(8.0))
    model = cb.swap_norm(LayerNormMeanOverStd, LayerNormBlogParens)(model)
    assert type(model[0]) is LayerNormBlogParens
    assert torch.equal(model[0].weight, torch.arange(8.0))


# ------------------------------------------------------------------------------------
# Case 3: the Spanish encoder
# ------------------------------------------------------------------------------------


def equivariant(layer, x, seed=0):
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.allclose(layer(x[:, perm]), layer(x)[:, perm], atol=1e-5)


def test_spanish_attention_is_not_permutation_equivariant_until_fixed():
    torch.manual_seed(0)
    attn = SpanishAttention()
    x = tokens()
    assert not equivariant(attn, x)
    assert equivariant(cb.recast(attn, TokenAttention), x)


def test_spanish_attention_scores_are_feature_by_feature():
    torch.manual_seed(0)
    attn = SpanishAttention()
    t = attn.key(tokens())  # [4, 16, 784]
    assert attn.split(t).shape == (4, 16, 49, 16)  # [B, heads, features, tokens]
    fixed = cb.recast(attn, TokenAttention)
    assert fixed.split(t).shape == (4, 16, 16, 49)  # [B, heads, tokens, features]
    # the posted split puts the 49 features where the tokens belong, whatever L is
    assert SpanishAttention().split(t[:, :12]).shape == (4, 16, 49, 12)


def test_spanish_mlp_is_affine_until_fixed():
    torch.manual_seed(0)
    block = SpanishBlock()
    x, y = tokens(seed=1), tokens(seed=2)
    zero = torch.zeros_like(x)

    def affine(f):
        with torch.no_grad():
            return torch.allclose(f(x + y), f(x) + f(y) - f(zero), atol=1e-5)

    assert affine(block.mlp)
    model = cb.add_activation(nn.ModuleList([block]))
    assert [type(m) for m in block.mlp] == [nn.Linear, nn.GELU, nn.Linear]
    assert not affine(block.mlp)
    assert cb.add_activation(model) is model and len(block.mlp) == 3  # idempotent


def test_spanish_fixes_each_remove_one_bug():
    case, x = CASES["spanish-encoder"], tokens()
    posted, one, two = (case.step(k)[0] for k in range(3))
    block = [m for m in posted.modules() if isinstance(m, SpanishBlock)]
    assert len(block) == 3 and posted.pos.abs().max() == 0  # zero-initialised positions
    assert not equivariant(posted.blocks[0].attn, x) and len(posted.blocks[0].mlp) == 2
    assert equivariant(one.blocks[0].attn, x) and len(one.blocks[0].mlp) == 2
    assert equivariant(two.blocks[0].attn, x) and len(two.blocks[0].mlp) == 3
    assert isinstance(SpanishEncoder().head, nn.Linear)
    assert posted.head.in_features == 784


def test_spanish_case_and_cnn_reference():
    assert isinstance(CASES["pytorch-cnn"].build(), ExampleCNN)
    assert CASES["pytorch-cnn"].fixes == () and CASES["pytorch-cnn"].codes == ()


# ------------------------------------------------------------------------------------
# The doctor: the posted models flagged with their codes, the fixed ones clean
# ------------------------------------------------------------------------------------


def test_expected_codes_follow_the_fixes():
    assert CASES["forum-bert"].expected(0) == ["loss-not-log-prob", "unused-parameter"]
    assert CASES["forum-bert"].expected(1) == ["unused-parameter"]
    assert CASES["blog-layernorm"].expected(1) == ["unnormalized-norm"]
    assert CASES["spanish-encoder"].expected(1) == ["linear-ffn"]
    assert all(case.expected(len(case.fixes)) == [] for case in CASES.values())
    for case in CASES.values():  # every code a case expects is answered by a fix
        assert set(case.codes) == {fix.code for fix in case.fixes}


@pytest.mark.parametrize("name, k", STEPS)
def test_doctor_flags_each_step_with_the_codes_left(name, k, mnist_root):
    from companion.doctor import CHECKS, diagnose

    assert {"not-token-attention", "linear-ffn"} <= set(CHECKS)
    case = CASES[name]
    model, settings = case.step(k)
    x, y = cb.doctor_batch(mnist_subset(test_size=2000), settings)
    assert x.shape == (20, 1, 28, 28) and y.shape == (20,)
    assert diagnose(model, x, y, settings.loss_fn).codes == case.expected(k)


# ------------------------------------------------------------------------------------
# Bad input and the table
# ------------------------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="Settings.loss must be one of"):
        Settings(BUDGET, loss="mse")
    with pytest.raises(ValueError, match="Settings.inputs must be one of"):
        Settings(BUDGET, inputs="raw")
    with pytest.raises(ValueError, match="exactly one of model and settings"):
        cb.Fix("x", None, "nothing")
    with pytest.raises(ValueError, match="has 2 fixes"):
        CASES["forum-bert"].step(3)
    with pytest.raises(KeyError, match="no case 'gpt'"):
        cb.fixes("gpt")


def test_table_renders_one_row_per_case():
    r = [cb.Result("c", label, [1.0], 10, 0.5, acc)
         for label, acc in (("as posted", 0.1), ("fix a", 0.5), ("fix b", 0.75))]
    text = cb.table([("case 1", ["loss-not-log-prob"], r), ("case 4", [], r[:1])])
    lines = text.splitlines()
    assert lines[0] == "| case | findings | accuracy as posted | after each fix |"
    row = "| case 1 | `loss-not-log-prob` | 10.0% | fix a: 50.0%; fix b: 75.0% |"
    assert lines[2] == row
    assert lines[3] == "| case 4 | none | 10.0% | - |"


# ------------------------------------------------------------------------------------
# Training (slow)
# ------------------------------------------------------------------------------------


def shorter(case, steps):
    config = dataclasses.replace(case.settings.config, steps=steps)
    settings = dataclasses.replace(case.settings, config=config)
    return dataclasses.replace(case, settings=settings)


@pytest.mark.slow
def test_forum_bert_loss_piles_up_below_zero_and_cross_entropy_learns(mnist_root):
    data = mnist_subset(test_size=2000)
    case = shorter(CASES["forum-bert"], 40)
    posted = cb.run(case, 0, data, device="cpu")
    fixed = cb.run(case, 1, data, device="cpu")
    assert posted.loss[-1] < -10 and posted.loss[-1] < posted.loss[0]
    assert posted.accuracy < 0.2 < 0.5 < fixed.accuracy
    assert posted.label == "as posted" and fixed.label == "cross_entropy"


@pytest.mark.slow
def test_blog_layernorm_learns_far_less_than_layernorm(mnist_root):
    data = mnist_subset(test_size=2000)
    posted = cb.run("blog-layernorm", 0, data, device="cpu")
    fixed = cb.run("blog-layernorm", 2, data, device="cpu")
    assert fixed.accuracy > posted.accuracy + 0.2
    assert posted.loss[-1] > fixed.loss[-1] + 0.5
