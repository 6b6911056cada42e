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
