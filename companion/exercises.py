"""'Your turn' checks for the chapters' exercises.

A chapter asks the reader to write a line (a function, a loss, a value) and then runs::

    from companion.exercises import check
    check("ch4-layernorm", layer_norm)

which prints ``correct: ...`` and why, or ``not yet: ...`` with a hint about *what* is
wrong (measured on the reader's answer, not a generic "try again"). It returns ``True``
or ``False``, so the stored notebook, which holds a reference answer, can assert it.

Each exercise is one function registered with :func:`exercise`: it gets the answer and
returns ``None`` when it is right, or the hint. Later chapters add theirs here, named
``chN-...``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["EXERCISES", "Exercise", "check", "exercise", "grade"]


@dataclass(frozen=True)
class Exercise:
    name: str
    task: str  # one line: what the reader writes
    grader: Callable[[object], str | None]  # None when right, else a hint
    explain: str  # printed with "correct": why it is right


EXERCISES: dict[str, Exercise] = {}


def exercise(name: str, *, task: str, explain: str):
    """Register the decorated grader as the exercise ``name``."""

    def register(grader: Callable[[object], str | None]):
        if name in EXERCISES:
            raise ValueError(f"exercise {name!r} is registered twice")
        EXERCISES[name] = Exercise(name, task, grader, explain)
        return grader

    return register


def grade(name: str, answer) -> str | None:
    """The hint for ``answer`` to exercise ``name``, or ``None`` when it is right."""
    if name not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise KeyError(f"no exercise named {name!r}; the exercises are: {known}")
    try:
        return EXERCISES[name].grader(answer)
    except Exception as exc:  # the reader's code failed: say how, not a deep traceback
        return f"running your answer raised {type(exc).__name__}: {exc}"


def check(name: str, answer) -> bool:
    """Print whether ``answer`` solves exercise ``name`` (or a hint); return whether."""
    hint = grade(name, answer)
    if hint is None:
        print(f"correct: {EXERCISES[name].explain}")
        return True
    print(f"not yet: {hint}")
    return False


# ---------------------------------------------------------------------------- chapter 4


def _tokens() -> torch.Tensor:
    """[4, 5, 32] tokens with an offset and a spread, the same for every check."""
    g = torch.Generator().manual_seed(4)
    return torch.randn(4, 5, 32, generator=g) * 4 + 3


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@exercise(
    "ch4-layernorm",
    task="return LayerNorm's output (no weight, no bias) from x, mean, var and eps",
    explain="every token now has mean 0 and variance 1 over its features, exactly what "
    "F.layer_norm computes: (x - mean) / sqrt(var + eps), both the subtraction and the "
    "parentheses.",
)
def _ch4_layernorm(layer_norm) -> str | None:
    if not callable(layer_norm):
        return (
            f"the answer is a function layer_norm(x, eps=1e-5), got a "
            f"{type(layer_norm).__name__}"
        )
    x = _tokens()
    eps = 1e-5
    out = layer_norm(x.clone())
    if not isinstance(out, torch.Tensor):
        return f"layer_norm(x) returned a {type(out).__name__}, not a tensor"
    if out.shape != x.shape:
        return (
            f"the output has shape {tuple(out.shape)}, the input {tuple(x.shape)}: "
            "keep the statistics' last dimension with keepdim=True so they broadcast "
            "over the features"
        )
    if _close(out, F.layer_norm(x, (32,), eps=eps)):
        return None
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    std = var.add(eps).sqrt()
    if _close(out, x / std):
        return "the mean is never subtracted: x / sqrt(var + eps) is LayerNormNoMean"
    if _close(out, x - mean / std):
        return (
            "x - mean / sqrt(var + eps) divides only the mean (operator precedence): "
            "put parentheses around x - mean"
        )
    unbiased = x.var(-1, keepdim=True, unbiased=True)
    if _close(out, (x - mean) / (unbiased + eps).sqrt()):
        return "that is the unbiased variance (divided by d - 1): use unbiased=False"
    if _close(out, (x - mean) / var):
        return "divide by the standard deviation, sqrt(var + eps), not by the variance"
    m, v = out.mean(-1), out.var(-1, unbiased=False)
    return (
        f"per token, your output has means from {m.min():.2f} to {m.max():.2f} and "
        f"variances from {v.min():.2f} to {v.max():.2f}; LayerNorm gives 0 and 1 (take "
        "the statistics over the last dimension, dim=-1)"
    )


@exercise(
    "ch4-loss",
    task="a loss_fn(logits, targets) for a model that outputs logits",
    explain="it applies log_softmax to the logits and takes the negative "
    "log-probability of the target, as F.cross_entropy does: adding a constant to "
    "every logit leaves it unchanged, and it is never below zero.",
)
def _ch4_loss(loss_fn) -> str | None:
    if not callable(loss_fn):
        return f"the answer is a function loss_fn(logits, targets), got {loss_fn!r}"
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 10, generator=g) * 3
    targets = torch.randint(0, 10, (8,), generator=g)
    loss = loss_fn(logits, targets)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = (
            tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        )
        return f"the loss should be one number (a 0-dim tensor: the mean), got {shape}"
    if torch.allclose(loss, F.cross_entropy(logits, targets), atol=1e-5):
        return None
    if torch.allclose(loss, F.nll_loss(logits, targets), atol=1e-5):
        return (
            "that is nll_loss on logits (bug 3): it reads them as log-probabilities "
            "and can fall below zero. Apply log_softmax first, or use F.cross_entropy"
        )
    if torch.allclose(loss, F.nll_loss(logits.softmax(-1), targets), atol=1e-5):
        return (
            "that is nll_loss on probabilities: it needs their logarithm. Use "
            "F.log_softmax (not softmax) before nll_loss, or F.cross_entropy on the "
            "logits"
        )
    shifted = loss_fn(logits + 5.0, targets)
    if not torch.allclose(shifted, loss, atol=1e-4):
        return (
            f"adding 5 to every logit moved your loss from {loss.item():.2f} to "
            f"{shifted.item():.2f}; a loss for logits must not move (softmax ignores a "
            "shift)"
        )
    return (
        f"your loss is {loss.item():.3f} where cross-entropy is "
        f"{F.cross_entropy(logits, targets).item():.3f} on the same logits"
    )
