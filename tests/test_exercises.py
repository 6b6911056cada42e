"""Book-support code: the 'your turn' checks (companion.exercises), companion.book."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import book
from companion.exercises import EXERCISES, check, grade

# ------------------------------------------------------------------ ch4-layernorm


def reference_layer_norm(x, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


WRONG_LAYER_NORMS = {  # the reader's likely mistakes -> a word the hint must contain
    "no mean": (
        lambda x, eps=1e-5: (
            x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
        ),
        "mean is never subtracted",
    ),
    "parentheses": (
        lambda x, eps=1e-5: (
            x
            - x.mean(-1, keepdim=True)
            / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
        ),
        "parentheses",
    ),
    "unbiased": (
        lambda x, eps=1e-5: (
            (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps)
        ),
        "unbiased=False",
    ),
    "by the variance": (
        lambda x, eps=1e-5: (
            (x - x.mean(-1, keepdim=True)) / x.var(-1, keepdim=True, unbiased=False)
        ),
        "standard deviation",
    ),
    "no keepdim": (lambda x, eps=1e-5: x.mean(-1), "keepdim=True"),
    "wrong dim": (
        lambda x, eps=1e-5: (
            (x - x.mean(1, keepdim=True))
            / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + eps)
        ),
        "dim=-1",
    ),
    "not a function": (torch.zeros(3), "is a function"),
    "returns a list": (lambda x, eps=1e-5: [x], "not a tensor"),
    "crashes": (lambda x, eps=1e-5: x.mean(dim=7), "raised IndexError"),
}


def test_layernorm_accepts_the_formula_and_pytorchs_own():
    assert grade("ch4-layernorm", reference_layer_norm) is None
    assert (
        grade("ch4-layernorm", lambda x, eps=1e-5: F.layer_norm(x, x.shape[-1:]))
        is None
    )
    assert grade("ch4-layernorm", nn.LayerNorm(32, elementwise_affine=False)) is None


@pytest.mark.parametrize("mistake", WRONG_LAYER_NORMS)
def test_layernorm_hint_names_the_mistake(mistake):
    answer, words = WRONG_LAYER_NORMS[mistake]
    hint = grade("ch4-layernorm", answer)
    assert hint is not None and words in hint, hint


# ------------------------------------------------------------------ ch4-loss


def test_loss_accepts_cross_entropy_in_its_forms():
    assert grade("ch4-loss", F.cross_entropy) is None
    assert grade("ch4-loss", nn.CrossEntropyLoss()) is None
    assert (
        grade("ch4-loss", lambda z, t: F.nll_loss(F.log_softmax(z, dim=-1), t)) is None
    )


@pytest.mark.parametrize(
    "answer, words",
    [
        (F.nll_loss, "nll_loss on logits"),
        (lambda z, t: F.nll_loss(z.softmax(-1), t), "nll_loss on probabilities"),
        (
            lambda z, t: F.mse_loss(z, F.one_hot(t, 10).float()),
            "adding 5 to every logit",
        ),
        (lambda z, t: F.cross_entropy(z, t, reduction="none"), "one number"),
        (
            lambda z, t: F.cross_entropy(z, t, label_smoothing=0.1),
            "where cross-entropy is",
        ),
        ("F.cross_entropy", "is a function"),
    ],
    ids=[
        "nll on logits",
        "nll on probabilities",
        "mse",
        "no reduction",
        "smoothed",
        "a string",
    ],
)
def test_loss_hint_names_the_mistake(answer, words):
    hint = grade("ch4-loss", answer)
    assert hint is not None and words in hint, hint


# ------------------------------------------------------------------ check() itself


def test_check_prints_the_verdict_and_returns_it(capsys):
    assert check("ch4-loss", F.cross_entropy) is True
    assert capsys.readouterr().out.startswith("correct: ")
    assert check("ch4-loss", F.nll_loss) is False
    assert capsys.readouterr().out.startswith("not yet: ")


def test_an_unknown_exercise_lists_the_known_ones():
    with pytest.raises(KeyError, match="ch4-layernorm"):
        check("ch4-layer-norm", reference_layer_norm)


def test_every_exercise_has_a_task_and_an_explanation():
    assert EXERCISES
    for name, ex in EXERCISES.items():
        assert name.startswith("ch") and ex.task and ex.explain.endswith(".")


# ------------------------------------------------------------------ companion.book


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.4, "0 s"),
        (48.2, "48 s"),
        (59.6, "1 min 00 s"),
        (185, "3 min 05 s"),
        (3725, "1 h 02 min"),
    ],
)
def test_format_duration(seconds, text):
    assert book.format_duration(seconds) == text


def test_format_duration_rejects_a_negative_duration():
    with pytest.raises(ValueError, match="negative"):
        book.format_duration(-1)


def test_markdown_table_aligns_and_escapes():
    table = book.markdown_table(["bug", "acc"], [["a|b", "9.6%"]], align="lr")
    assert table == "| bug | acc |\n| :-- | --: |\n| a\\|b | 9.6% |\n"
    with pytest.raises(ValueError, match="one of 'l', 'r', 'c' per column"):
        book.markdown_table(["a", "b"], [], align="l")
    with pytest.raises(ValueError, match="has 1 cells"):
        book.markdown_table(["a", "b"], [["x"]])


def test_glue_table_returns_the_markdown_it_glues(monkeypatch):
    glued = {}
    monkeypatch.setattr(
        book, "_myst_glue", lambda name, value, display: glued.update({name: value})
    )
    table = book.glue_table("t", ["a"], [[1], [2]])
    assert glued["t"] is table and table.data == "| a |\n| :-- |\n| 1 |\n| 2 |\n"


def test_glue_results_numbers_a_results_table_and_glues_its_setting(monkeypatch):
    from companion.experiments import Budget, Results

    glued = {}
    monkeypatch.setattr(
        book, "_myst_glue", lambda name, value, display: glued.update({name: value})
    )
    runs = {"a": {0: {"accuracy": 0.5}, 1: {"accuracy": 0.7}}, "b": {0: {"accuracy": 0.9}, 1: {"accuracy": 0.9}}}
    results = Results(runs, budget=Budget(train_size=100, test_size=50, epochs=1))
    table = book.glue_results("q", results)
    assert glued["q"] is table
    assert table.data.splitlines() == [
        "| configuration | accuracy |",
        "| :-- | --: |",
        "| a | 60.0 ± 14.1 % |",
        "| b | 90.0 ± 0.0 % |",
    ]
    assert glued["q_setting"] == results.setting
    assert "2 seeds [0, 1]" in results.setting and "100 training images" in results.setting


def test_glue_does_nothing_without_myst_nb(monkeypatch):
    monkeypatch.setattr(book, "_myst_glue", None)
    book.glue("x", 1)  # no error: on Colab the chapters run without the book's tools


def test_chapter_clock_glues_what_the_prose_quotes(monkeypatch):
    glued = {}
    monkeypatch.setattr(
        book, "_myst_glue", lambda name, value, display: glued.update({name: value})
    )
    clock = book.ChapterClock()
    clock.start -= 125.2  # as if the chapter had run for two minutes
    clock.cpu_start -= 61.0  # half of them computing
    run = clock.finish(device="cpu", train_images=5000)
    threads = torch.get_num_threads()
    assert glued == {
        "chapter_run_time": "2 min 05 s",
        "chapter_cpu_time": "1 min 01 s",
        "chapter_conditions": f"on {threads} CPU thread{'s' if threads != 1 else ''}",
        "chapter_train_images": "5,000",
    }
    assert str(run).startswith("this chapter ran in 2 min 05 s on ")
    assert "(1 min 01 s of processor time)" in str(run)
    glued.clear()
    clock.finish(glue_prefix=None)
    assert glued == {}


def test_chapter_clock_rejects_a_count_that_is_not_one():
    with pytest.raises(ValueError, match="count of images"):
        book.ChapterClock().finish(train_images=5000.0, glue_prefix=None)


# ------------------------------------------------------------------ ch6-absorb


def reference_absorb(W, b, mu, sigma):
    return W / sigma, b - (mu / sigma) * W.sum(dim=1)


def test_absorb_accepts_the_reference_and_an_equivalent_form():
    assert grade("ch6-absorb", reference_absorb) is None
    assert grade("ch6-absorb", lambda W, b, m, s: [W / s, b - W @ torch.full(
        (W.shape[1],), m / s)]) is None


@pytest.mark.parametrize(
    "answer, words",
    [
        (lambda W, b, m, s: (W / s, b), "bias is unchanged"),
        (lambda W, b, m, s: (W / s, b + (m / s) * W.sum(1)), "wrong sign"),
        (lambda W, b, m, s: (W / s, b - m * W.sum(1)), "mu / sigma, not mu"),
        (lambda W, b, m, s: (W * s, b), "multiplied by sigma"),
        (lambda W, b, m, s: (W / s, b - (m / s) * W.sum(1) + 0.1), "differ"),
        (lambda W, b, m, s: (W.sum(1), b), "do not reduce"),
        (lambda W, b, m, s: (W / s, (b - (m / s) * W.sum(1))[:1]), "dim=1"),
        (lambda W, b, m, s: W / s, "(weight, bias)"),
        ("W / sigma", "is a function"),
    ],
    ids=["bias kept", "sign", "mu only", "times sigma", "off", "reduced weight",
         "bias shape", "one tensor", "a string"],
)
def test_absorb_hint_names_the_mistake(answer, words):
    hint = grade("ch6-absorb", answer)
    assert hint is not None and words in hint, hint


# ------------------------------------------------------------------ ch3-prenorm


def reference_pre_norm(x, block):
    x = x + block.attn(block.norm1(x))
    return x + block.ffn(block.norm2(x))


def _post_norm(x, b):
    x = b.norm1(x + b.attn(x))
    return b.norm2(x + b.ffn(x))


def _normalised_stream(x, b):
    x = b.norm1(x)
    x = x + b.attn(x)
    x = b.norm2(x)
    return x + b.ffn(x)


def _shared_norm(x, b):
    x = x + b.attn(b.norm1(x))
    return x + b.ffn(b.norm1(x))


def _ffn_first(x, b):
    x = x + b.ffn(b.norm2(x))
    return x + b.attn(b.norm1(x))


def test_prenorm_accepts_the_two_lines_and_leaves_the_generators_alone():
    state = torch.random.get_rng_state()
    assert grade("ch3-prenorm", reference_pre_norm) is None
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize(
    "answer, words",
    [
        (_post_norm, "post-norm"),
        (lambda x, b: b.ffn(b.norm2(b.attn(b.norm1(x)))), "residual"),
        (_normalised_stream, "normalised x"),
        (_shared_norm, "norm2 for the FFN"),
        (lambda x, b: x + b.attn(b.norm1(x)), "only the attention line"),
        (_ffn_first, "attention comes first"),
        (lambda x, b: b(x), "calls the whole block"),
        (lambda x, b: x[:, 0], "keeps [batch, tokens, dim]"),
        (lambda x, b: 2 * x, "differs from the pre-norm block's"),
        (3, "a function"),
    ],
)
def test_prenorm_hint_names_the_mistake(answer, words):
    hint = grade("ch3-prenorm", answer)
    assert hint is not None and words in hint, hint


# ------------------------------------------------ ch0-shapes, ch1-patches, ch2-attention
def test_ch0_shapes_accepts_the_real_shapes_and_names_the_wrong_axis():
    assert grade("ch0-shapes", ((2, 5, 4), (2, 5, 5))) is None
    assert grade("ch0-shapes", [[2, 5, 4], torch.Size([2, 5, 5])]) is None
    assert "tokens_q, tokens_k" in grade("ch0-shapes", ((2, 5, 4), (2, 4, 4)))
    assert "batch axis" in grade("ch0-shapes", ((2, 5, 4), (5, 5)))
    assert "one vector per token" in grade("ch0-shapes", ((2, 5, 5), (2, 5, 5)))
    assert "pair of shapes" in grade("ch0-shapes", 3)


def _patches(right):
    from einops import rearrange

    def to_patches(x, p):
        return rearrange(x, f"b c (gh p1) (gw p2) -> {right}", p1=p, p2=p)

    return to_patches


def test_ch1_patches_accepts_patchify_and_names_each_mistake():
    from companion import patchify

    assert grade("ch1-patches", patchify) is None
    assert grade("ch1-patches", _patches("b (gh gw) (p1 p2 c)")) is None
    cases = {
        "memory order": lambda x, p: x.reshape(len(x), -1, p * p * x.shape[1]),
        "F.unfold": lambda x, p: F.unfold(x, p, stride=p).transpose(1, 2),
        "column by column": _patches("b (gw gh) (p1 p2 c)"),
        "transposed": _patches("b (gh gw) (p2 p1 c)"),
        "expected (2, 49, 48)": lambda x, p: _patches("b (gh gw) (p1 p2 c)")(x, 7),
    }
    for words, answer in cases.items():
        hint = grade("ch1-patches", answer)
        assert hint is not None and words in hint, (words, hint)


def _attention(scale=None, dim=-1):
    import math

    def attention(q, k, v):
        s = q @ k.transpose(-2, -1)
        s = s / (math.sqrt(q.shape[-1]) if scale is None else scale(q, v))
        return s.softmax(dim) @ v

    return attention


def test_ch2_attention_accepts_the_formula_and_names_each_mistake():
    assert grade("ch2-attention", _attention()) is None
    assert grade("ch2-attention", F.scaled_dot_product_attention) is None
    cases = {
        "not scaled": _attention(scale=lambda q, v: 1.0),
        "square root": _attention(scale=lambda q, v: q.shape[-1]),
        "over the keys": _attention(dim=-2),
        "values' width": _attention(scale=lambda q, v: v.shape[-1] ** 0.5),
        "raised RuntimeError": lambda q, k, v: (q @ k).softmax(-1) @ v,
    }
    for words, answer in cases.items():
        hint = grade("ch2-attention", answer)
        assert hint is not None and words in hint, (words, hint)


# ------------------------------------------------------------------ ch5-normalise


def _normalised(raw):
    from companion import MNIST_MEAN, MNIST_STD

    return ((raw / 255 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def test_normalise_accepts_the_formula_and_torchvision_style_float64():
    assert grade("ch5-normalise", _normalised) is None
    assert grade("ch5-normalise", lambda r: _normalised(r.double())) is None


@pytest.mark.parametrize(
    "answer, words",
    [
        (lambda r: _normalised(r).squeeze(1), "unsqueeze(1)"),
        (lambda r: _normalised(r.float() * 255), "divide by 255"),
        (lambda r: (r / 255).unsqueeze(1), "not standardised"),
        (lambda r: r.unsqueeze(1), "integer pixels"),
        (lambda r: [r], "not a tensor"),
        (lambda r: _normalised(r)[:, :, :14], "expected (3, 1, 28, 28)"),
        (lambda r: _normalised(r) + 1, "normalised background is -0.4242"),
        (lambda r: r.float().mean(dim=9), "raised IndexError"),
    ],
    ids=["no channel", "no /255", "no standardising", "uint8", "list", "cropped",
         "off by one", "crashes"],
)
def test_normalise_hint_names_the_mistake(answer, words):
    hint = grade("ch5-normalise", answer)
    assert hint is not None and words in hint, hint


def test_normalise_hint_for_swapped_constants_and_precedence():
    from companion import MNIST_MEAN, MNIST_STD

    swapped = grade(
        "ch5-normalise", lambda r: ((r / 255 - MNIST_STD) / MNIST_MEAN).unsqueeze(1)
    )
    precedence = grade(
        "ch5-normalise", lambda r: (r / 255 - MNIST_MEAN / MNIST_STD).unsqueeze(1)
    )
    assert "swapped" in swapped and "parentheses" in precedence


# --------------------------------------------------------------- ch7-causal-mask


def test_causal_mask_accepts_tril_and_the_companions_own():
    from companion.attention import causal_mask

    assert grade("ch7-causal-mask", causal_mask) is None
    assert (
        grade("ch7-causal-mask", lambda T: torch.ones(T, T, dtype=torch.bool).tril())
        is None
    )


@pytest.mark.parametrize(
    "answer, words",
    [
        (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "upper triangle"),
        (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "BLOCKED"),
        (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "diagonal is blocked"),
        (lambda T: torch.ones(T, T).tril(), "boolean"),
        (lambda T: torch.ones(T, T, dtype=torch.bool), "later key"),
        (lambda T: torch.ones(T, dtype=torch.bool), "shape"),
        (lambda T: [[True]], "not a tensor"),
    ],
)
def test_causal_mask_hint_names_the_mistake(answer, words):
    hint = grade("ch7-causal-mask", answer)
    assert hint is not None and words in hint


# ------------------------------------------------------------------------ ch8-ffn


def test_ffn_accepts_an_activation_between_the_linears():
    for act in (nn.GELU(), nn.ReLU(), nn.Tanh()):
        torch.manual_seed(0)
        ffn = nn.Sequential(nn.Linear(49, 196), act, nn.Linear(196, 49))
        assert grade("ch8-ffn", ffn) is None


@pytest.mark.parametrize(
    "layers, words",
    [
        ([nn.Linear(49, 196), nn.Linear(196, 49)], "one linear map"),
        ([nn.Linear(49, 196), nn.Identity(), nn.Linear(196, 49)], "one linear map"),
        ([nn.Linear(49, 49), nn.GELU()], "keep the post's two"),
        ([nn.Linear(49, 196), nn.GELU(), nn.Linear(196, 49), nn.Flatten()], "[2, 16, 49]"),
    ],
)
def test_ffn_hint_names_the_mistake(layers, words):
    torch.manual_seed(0)
    hint = grade("ch8-ffn", nn.Sequential(*layers))
    assert hint is not None and words in hint
