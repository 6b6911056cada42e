"""A bug detector for models that run but do not learn:
``diagnose(model, inputs, targets, loss_fn)``.

It runs a handful of forward passes (and one backward pass) on a batch you provide and
reports what it measured, as :class:`Finding` objects with one of these codes:

=======================  ===============================================================
``nonfinite-parameter``  NaN/inf or absurdly large (> 1e6) values in parameters or
                         outputs
``dropout-in-eval``      two identical forward passes in eval mode disagree
``batch-mixing``         sample i's output (or a layer's output for it) changes when
                         only sample j != i does
``position-blind``       shuffling the patches (or tokens) of the input leaves the
                         output unchanged
``unnormalized-norm``    a normalization layer's output is not mean 0 / variance 1 (RMS
                         1 for RMSNorm)
``loss-not-log-prob``    ``loss_fn`` reads the outputs as log-probabilities, but they
                         are not
``unused-parameter``     a trainable parameter receives no gradient from the loss
``future-leak``          the targets are the input tokens shifted by s >= 0, and the
                         prediction at t changes when input tokens at >= t + s do
``not-token-attention``  an attention layer is not permutation-equivariant over tokens
                         (it attends across features, or scrambles tokens)
``linear-ffn``           two nn.Linear layers of one module (an MLP) run back to back
                         with no nonlinearity between them
=======================  ===============================================================

Each code is one check, a function ``check_x(ctx: Context) -> CheckResult`` in
:mod:`companion.checks`, registered in :data:`CHECKS` (in the order above): it reads the
model, the batch and the first forward pass from the :class:`Context` and returns its
findings, or why it could not run (the report lists it as skipped). Adding a check is
adding one such function.

The model is called as ``model(*inputs)``: ``inputs`` is one tensor ``[batch, ...]`` or
a tuple of them (an encoder-decoder's ``(src, tgt_in)``; the last one is the decoder's
input). It must return per-sample outputs ``[batch, ...]`` (a tensor, or a tuple/dict
whose first tensor is that). ``diagnose`` puts the model in eval mode and gives it back
with its parameters, buffers, train/eval modes and random-number generator state (CPU,
and CUDA when the model is there) as it found them.

Limits: it sees one batch at initialization (or wherever the weights are), not your
training or evaluation loop (forgetting ``model.eval()`` is invisible to it); an
uninitialised parameter that happens to hold zeros looks initialised; the position check
permutes whole patches, and a convolutional stem (overlapping kernels, zero padding)
already tells tokens apart a little, so a ViT with such a stem and no positional
embedding is not reported; attention layers are found by name (``*Attention*`` classes,
``nn.MultiheadAttention``) and probed only when called on ``[batch, tokens, dim]``
without a mask other than a causal one; attention with rotary or relative positions
inside is not permutation-equivariant by design and would be reported; ``linear-ffn``
sees ``nn.Linear`` modules that are children of one module, not ``F.linear`` calls, and
leaves out bottlenecks narrower than both ends (LoRA). Choose a batch size different
from the number of tokens, so that a ``[tokens, batch, dim]`` layout cannot be mistaken
for a ``[batch, tokens, dim]`` one.
"""

from __future__ import annotations

from torch import Tensor, nn

from . import checks  # noqa: F401  (registers the checks, in order)
from .checkup import (
    CHECKS,
    CheckResult,
    Context,
    Finding,
    LossFn,
    Report,
    check,
    preserved,
)

CODES: tuple[str, ...] = tuple(CHECKS)

__all__ = [
    "CHECKS",
    "CODES",
    "CheckResult",
    "Context",
    "Finding",
    "Report",
    "check",
    "diagnose",
]


def _as_inputs(inputs) -> tuple[Tensor, ...]:
    """``inputs`` as a tuple of tensors of one batch size >= 2, or a clear error."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    elif not isinstance(inputs, tuple):
        hint = (
            "; pass tuple(inputs) if the model takes them as separate arguments"
            if isinstance(inputs, list)
            else ""
        )
        raise TypeError(
            "inputs must be a tensor [batch, ...] or a tuple of tensors (the model is "
            f"called as model(*inputs)), got {type(inputs).__name__}{hint}"
        )
    if not inputs:
        raise ValueError(
            "inputs is an empty tuple: pass at least one tensor [batch, ...]"
        )
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(
                "inputs must be a tensor [batch, ...] or a tuple of tensors, but item "
                f"{i} is a {type(x).__name__}"
            )
        if x.dim() == 0 or x.shape[0] < 2:
            raise ValueError(
                "inputs must be a batch of at least 2 samples, got shape "
                f"{tuple(x.shape)}"
            )
    sizes = [x.shape[0] for x in inputs]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"every input must hold the same number of samples (first dim), got {sizes}"
        )
    return tuple(inputs)


def diagnose(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    targets: Tensor | None = None,
    loss_fn: LossFn | None = None,
) -> Report:
    """Look for the bugs that let a model run but stop it from learning.

    Args:
        model: any module mapping ``inputs`` to per-sample outputs ``[batch, ...]``; for
            the position check, images ``[batch, C, H, W]`` or tokens
            ``[batch, tokens(, dim)]``.
        inputs: one batch ``[batch, ...]``, at least 2 samples (8 or more is better), or
            a tuple of such tensors (``model(*inputs)``; the last is the decoder's
            input), on any device (moved to the model's).
        targets: optional targets (``[batch]`` labels, or ``[batch, tokens]`` token
            ids), used with ``loss_fn`` (and by the ``future-leak`` check).
        loss_fn: optional ``loss_fn(outputs, targets) -> loss``, e.g.
            ``F.cross_entropy``.

    Returns:
        a :class:`Report`; ``report.ok`` when nothing was found. The model's parameters,
        buffers, modes and the random-number generators are left as they were.
    """
    inputs = _as_inputs(inputs)
    first = next(iter(model.parameters()), None)
    if first is not None:
        inputs = tuple(x.to(first.device) for x in inputs)
        if isinstance(targets, Tensor):
            targets = targets.to(first.device)
    report = Report()
    with preserved(model) as devices:
        ctx = Context(model, inputs, targets, loss_fn, devices)
        for code, run in CHECKS.items():
            result: CheckResult = run(ctx)
            if result.ran:
                report.checked.append(code)
            else:
                report.skipped[code] = result.skipped or "skipped"
            report.findings.extend(result.findings)
            if result.stop:
                break
    return report
