"""The doctor's checks: one function each, ``check_x(ctx: Context) -> CheckResult``.

Each is registered with ``@check("code")``, and :func:`companion.doctor.diagnose` runs
them in the order of this file; the table of codes is in :mod:`companion.doctor`. To add
a check, add one function here.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checkup import (
    BLIND,
    HUGE,
    MEAN_TOL,
    SAME,
    VAR_TOL,
    Call,
    CheckResult,
    Context,
    Finding,
    as_tensor,
    check,
    close,
    introduced,
    label,
    magnitude,
    names,
    no_fastpath,
    num,
    reseed,
)

# --------------------------------------------------------------------------------------
# nonfinite-parameter
# --------------------------------------------------------------------------------------


def _bad_parameters(model: nn.Module) -> Finding | None:
    bad = []
    worst, nonfinite, huge, total = 0.0, 0, 0, 0
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        v = p.detach()
        n_nonfinite = int((~torch.isfinite(v)).sum())
        finite = v[torch.isfinite(v)]
        n_huge = int((finite.abs() > HUGE).sum())
        if n_nonfinite or n_huge:
            bad.append(name)
            nonfinite, huge = nonfinite + n_nonfinite, huge + n_huge
            total += v.numel()
            if finite.numel():
                worst = max(worst, float(finite.abs().max()))
    if not bad:
        return None
    return Finding(
        "nonfinite-parameter",
        f"{nonfinite} NaN/inf value(s) and {huge} value(s) beyond +-{HUGE:.0e} "
        f"(largest {num(worst)}) in {total} entries of {len(bad)} parameter(s). Such "
        "values swamp everything added to them (in float32, 1e21 + 1 == 1e21), so the "
        "output stops depending on the input. The usual cause is torch.empty (it "
        "returns whatever bytes were in memory) without an initialisation: use "
        "torch.zeros, torch.randn or an nn.init function. The other checks were "
        "skipped: fix this first.",
        names(bad),
    )


def _bad_outputs(y: Tensor) -> Finding | None:
    if not y.is_floating_point():
        return None
    nonfinite = int((~torch.isfinite(y)).sum())
    finite = y[torch.isfinite(y)]
    worst = float(finite.abs().max()) if finite.numel() else 0.0
    if not nonfinite and worst <= HUGE:
        return None
    return Finding(
        "nonfinite-parameter",
        f"the outputs at initialization hold {nonfinite} NaN/inf value(s) of "
        f"{y.numel()} and reach {num(worst)}. Look for an uninitialised (torch.empty) "
        "or overflowing parameter, a division by zero or a log of 0. The other checks "
        "were skipped: fix this first.",
        "outputs",
    )


@check("nonfinite-parameter")
def check_nonfinite(ctx: Context) -> CheckResult:
    """NaN/inf or absurdly large values in the parameters, else in the outputs."""
    finding = _bad_parameters(ctx.model)
    if finding is None:  # the first forward pass runs only on finite parameters
        finding = _bad_outputs(ctx.y)
    return CheckResult.done(finding, stop=finding is not None)


# --------------------------------------------------------------------------------------
# dropout-in-eval
# --------------------------------------------------------------------------------------


@check("dropout-in-eval")
def check_dropout(ctx: Context) -> CheckResult:
    """Two forward passes in eval mode, not reseeded, must agree."""
    y = ctx.y
    y2 = ctx.forward(seed=None)  # not reseeded: a random layer draws new numbers
    if y2.shape == y.shape and close(y, y2):
        return CheckResult.done()
    diff = (y.float() - y2.float()).abs()
    frac = float((diff > SAME * max(magnitude(y), 1e-12)).float().mean())
    culprits = introduced(ctx.record(seed=None), ctx.record(seed=None), close, close)
    return CheckResult.done(
        Finding(
            "dropout-in-eval",
            f"two identical forward passes in eval mode disagree: {frac:.0%} of the "
            f"outputs differ, by up to {num(float(diff.max()))}. Something random "
            "still runs after model.eval(): F.dropout(x, p) without "
            "training=self.training, or a layer that ignores self.training. Use "
            "nn.Dropout (or pass training=self.training), and evaluate with "
            "model.eval() (companion.evaluate does).",
            names(culprits) if culprits else "model",
        )
    )


# --------------------------------------------------------------------------------------
# batch-mixing
# --------------------------------------------------------------------------------------


def _not_per_sample(ctx: Context) -> str:
    return (
        f"the outputs {tuple(ctx.y.shape)} are not per-sample (first dim != batch "
        f"{ctx.batch})"
    )


def _changed_sample(inputs: tuple[Tensor, ...], j: int) -> tuple[Tensor, ...] | None:
    """A copy of ``inputs`` where only sample ``j`` differs (taken from another sample,
    or perturbed)."""
    for k in range(inputs[0].shape[0]):
        if k != j and any(not torch.equal(x[k], x[j]) for x in inputs):
            out = tuple(x.clone() for x in inputs)
            for o, x in zip(out, inputs):
                o[j] = x[k]
            return out
    if not any(x.is_floating_point() for x in inputs):
        return None
    out = tuple(x.clone() for x in inputs)
    for o, x in zip(out, inputs):
        if x.is_floating_point():
            gen = torch.Generator().manual_seed(1)
            noise = torch.randn(x[j].shape, generator=gen).to(x.device, x.dtype)
            o[j] = x[j] + noise * (x.float().std() if x.numel() > 1 else 1.0) + 1.0
    return out


@check("batch-mixing")
def check_batch_mixing(ctx: Context) -> CheckResult:
    """Change sample j only; look at the other samples' outputs, and at every layer's
    outputs for them."""
    if not ctx.per_sample:
        return CheckResult.skip(_not_per_sample(ctx))
    y, b = ctx.y, ctx.batch
    j = b - 1
    changed = _changed_sample(ctx.inputs, j)
    if changed is None:
        return CheckResult.done()
    others = [i for i in range(b) if i != j]

    def per_sample(s: Tensor) -> bool:
        return s.dim() > 0 and s.shape[0] == b

    def same_rows(
        s: Tensor, t: Tensor
    ) -> bool:  # per-sample tensors: other samples only
        return close(s[others], t[others]) if per_sample(s) else close(s, t)

    def same_rows_out(s: Tensor, t: Tensor) -> bool:
        return not per_sample(s) or close(s[others], t[others])

    culprits = introduced(ctx.record(), ctx.record(changed), same_rows, same_rows_out)
    y2 = ctx.forward(changed)
    scale = max(magnitude(y[others]), 1e-12)
    diff = (y[others].float() - y2[others].float()).abs().reshape(b - 1, -1).amax(dim=1)
    moved = diff > SAME * scale  # [batch - 1]
    if not bool(moved.any()) and not culprits:
        return CheckResult.done()
    if bool(moved.any()):
        seen = (
            f"changing only sample {j} of {b} changed the outputs of "
            f"{int(moved.sum())} of the {b - 1} other samples, by up to "
            f"{num(float(diff.max()))} ({float(diff.max()) / scale:.0%} of the output "
            "scale)."
        )
    else:
        seen = (
            f"changing only sample {j} of {b} changed what {culprits[0]} computes for "
            "the other samples, although their inputs to it did not change (the "
            "model's outputs do not show it here, but the layer mixes samples)."
        )
    suspects = [
        n
        for n, m in ctx.model.named_modules()
        if isinstance(m, nn.MultiheadAttention) and not m.batch_first
    ]
    hint = (
        f" Suspects: nn.MultiheadAttention without batch_first=True: {names(suspects)}."
        if suspects
        else ""
    )
    return CheckResult.done(
        Finding(
            "batch-mixing",
            f"{seen} Each sample's output must depend on that sample alone. A layer "
            "mixes the batch axis: typically nn.MultiheadAttention (or "
            "nn.TransformerEncoderLayer) fed [batch, tokens, dim] without "
            "batch_first=True, so it attends across the images of the batch; or a "
            f"reshape/transpose that moves the batch axis.{hint} Fix: pass "
            "batch_first=True, or transpose to [tokens, batch, dim] before the call "
            "and back after it.",
            names(culprits) if culprits else "model",
        )
    )


# --------------------------------------------------------------------------------------
# position-blind
# --------------------------------------------------------------------------------------


def _patch_sizes(model: nn.Module, h: int, w: int) -> list[tuple[int, int]]:
    """Patch sizes the model declares (a ``patch_size`` attribute, a Conv2d with
    stride == kernel > 1) that tile an ``h x w`` image; else every square block size
    that does."""
    found: list[tuple[int, int]] = []
    for m in model.modules():
        p = getattr(m, "patch_size", None)
        if isinstance(p, int) and not isinstance(p, bool):
            found.append((p, p))
        elif (
            isinstance(p, (tuple, list))
            and len(p) == 2
            and all(isinstance(v, int) for v in p)
        ):
            found.append((int(p[0]), int(p[1])))
        if (
            isinstance(m, nn.Conv2d)
            and tuple(m.kernel_size) == tuple(m.stride)
            and max(m.kernel_size) > 1
        ):
            found.append((int(m.kernel_size[0]), int(m.kernel_size[1])))
    sizes = [
        s
        for s in dict.fromkeys(found)
        if 0 < s[0] < h and 0 < s[1] < w and h % s[0] == 0 and w % s[1] == 0
    ]
    if not sizes:
        g = math.gcd(h, w)
        sizes = [(d, d) for d in range(2, min(h, w)) if g % d == 0]
    return sizes


def _shuffle_blocks(images: Tensor, ph: int, pw: int) -> Tensor:
    """Reverse the order of the ``ph x pw`` blocks of ``images [batch, C, H, W]`` (block
    contents kept)."""
    b, c, h, w = images.shape
    gh, gw = h // ph, w // pw
    blocks = images.reshape(b, c, gh, ph, gw, pw).permute(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(b, c, gh * gw, ph, pw).flip(2)
    return (
        blocks.reshape(b, c, gh, gw, ph, pw)
        .permute(0, 1, 2, 4, 3, 5)
        .reshape(b, c, h, w)
    )


@check("position-blind")
def check_position(ctx: Context) -> CheckResult:
    """Reverse the order of the patches (images) or tokens of the last input; the output
    must change by more than a tiny fraction of how much it differs between samples."""
    if not ctx.per_sample:
        return CheckResult.skip(_not_per_sample(ctx))
    y, x = ctx.y, ctx.last
    spread = float((y.float() - y[:1].float()).abs().max())  # how much samples differ
    if x.shape[0] < 2 or spread <= SAME * max(magnitude(y), 1e-12):
        return CheckResult.skip(
            "the outputs do not depend on the inputs (all samples give the same output)"
        )
    if x.dim() == 4 and x.is_floating_point():
        sizes = _patch_sizes(ctx.model, *x.shape[2:])
        trials = [
            (f"the {ph}x{pw} patches", _shuffle_blocks(x, ph, pw), False)
            for ph, pw in sizes
        ]
    elif x.dim() == 3 or (x.dim() == 2 and not x.is_floating_point()):
        trials = [("the tokens", x.flip(1), True)] if x.shape[1] > 1 else []
    else:
        trials = []
    if not trials:
        return CheckResult.skip(
            f"inputs of shape {tuple(x.shape)} are neither images [B, C, H, W] nor "
            "tokens"
        )
    of_input = "of the input" if len(ctx.inputs) == 1 else "of the last input"
    for what, shuffled, tokens in trials:
        moved = (shuffled != x).flatten(1).any(dim=1)  # samples the shuffle changed
        if not bool(moved.any()):
            continue
        y2 = ctx.forward(ctx.with_last(shuffled))
        change = float((y2[moved].float() - y[moved].float()).abs().max())
        if tokens and y.dim() >= 2 and y.shape[1] == x.shape[1]:
            # per-token outputs: also compare with the shuffle undone
            unshuffled = y2.flip(1)[moved].float()
            change = min(change, float((unshuffled - y[moved].float()).abs().max()))
        if change <= BLIND * spread:
            return CheckResult.done(
                Finding(
                    "position-blind",
                    f"reversing the order of {what} {of_input} changed the outputs by "
                    f"less than {BLIND:.0e} of how much they differ between samples "
                    f"({num(spread)}): the model sees a bag of {what.split()[-1]} and "
                    "cannot tell where each one is. Fix: add a positional embedding "
                    "to the tokens, e.g. a learned nn.Parameter of shape [1, tokens, "
                    "dim] (initialised with small random values) or a sinusoidal "
                    "table.",
                )
            )
    return CheckResult.done()


# --------------------------------------------------------------------------------------
# unnormalized-norm
# --------------------------------------------------------------------------------------


def _norm_kind(module: nn.Module) -> str | None:
    """'layer' (mean 0, variance 1), 'rms' (mean square 1) or None (not a per-sample
    normalization)."""
    name = type(module).__name__
    over_batch = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LocalResponseNorm)
    words = ("Batch", "Instance", "Group", "LocalResponse", "Spectral", "Weight")
    if isinstance(module, over_batch) or any(word in name for word in words):
        return (
            None  # statistics over the batch, groups or space, or a reparametrisation
        )
    if isinstance(module, getattr(nn, "RMSNorm", ())) or "RMS" in name:
        return "rms"
    if isinstance(module, nn.LayerNorm) or "LayerNorm" in name:
        return "layer"
    if "Norm" in name and not any(True for _ in module.children()):
        return "layer"  # a leaf, not a wrapper like PreNorm
    return None


def _affine(module: nn.Module, size: int, attrs: tuple[str, ...]) -> Tensor | None:
    for n in attrs:
        p = getattr(module, n, None)
        if isinstance(p, Tensor) and p.numel() == size:
            return p.detach().reshape(size).double()
    return None


def _norm_rows(
    module: nn.Module, x: Tensor, y: Tensor, kind: str
) -> tuple[float, float] | None:
    """Worst (|mean|, |variance - 1|) (or (0, |mean square - 1|) for RMS) of the rows of
    ``y``, after undoing the affine weight and bias; the normalized axis is the trailing
    ``normalized_shape`` or the channel axis, whichever fits best. None when no row can
    be measured."""
    shape = getattr(module, "normalized_shape", None)
    ndims = len(shape) if isinstance(shape, (tuple, list, torch.Size)) else 1
    layouts = [
        (x.flatten(-ndims) if ndims > 1 else x, y.flatten(-ndims) if ndims > 1 else y)
    ]
    if x.dim() >= 3:
        layouts.append((x.movedim(1, -1), y.movedim(1, -1)))
    eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None)
    eps = float(eps or 1e-5)
    best = None

    def badness(stats: tuple[float, float]) -> float:
        return max(stats[0] / MEAN_TOL, stats[1] / VAR_TOL)

    for xs, ys in layouts:
        size = xs.shape[-1]
        xs, ys = xs.reshape(-1, size).double(), ys.reshape(-1, size).double()
        w = _affine(module, size, ("weight", "gamma", "scale", "g"))
        b = _affine(module, size, ("bias", "beta", "b"))
        z = ys - b if b is not None else ys
        if w is not None:
            keep = w.abs() > 1e-6 * float(w.abs().max() or 1.0)
            z = z[:, keep] / w[keep]
        spread = xs.pow(2).mean(-1) if kind == "rms" else xs.var(-1, unbiased=False)
        finite = torch.isfinite(xs).all(-1) & (xs.abs().amax(-1) <= HUGE)
        rows = finite & (spread >= 1e3 * eps)
        if not bool(rows.any()) or size < 2:
            continue
        z = z[rows]
        if kind == "rms":
            stats = (0.0, float((z.pow(2).mean(-1) - 1).abs().max()))
        else:
            var = z.var(-1, unbiased=False)
            stats = (float(z.mean(-1).abs().max()), float((var - 1).abs().max()))
        if best is None or badness(stats) < badness(best):
            best = stats
    return best


def _norm_calls(calls: list[Call]) -> list[tuple[Call, str]]:
    """The calls of normalization layers mapping one tensor to one of its shape."""
    found = []
    for c in calls:
        kind = _norm_kind(c.module) if c.module is not None else None
        if kind is None or not c.inputs or len(c.outputs) != 1:
            continue
        if c.outputs[0].shape == c.inputs[0].shape:
            found.append((c, kind))
    return found


@check("unnormalized-norm")
def check_norms(ctx: Context) -> CheckResult:
    """Every normalization layer's output, its affine part undone, has mean 0 and
    variance 1 (mean square 1 for RMSNorm) per row."""
    records = _norm_calls(ctx.calls)
    if not records:
        return CheckResult.skip("no normalization layer (LayerNorm, RMSNorm, ...) ran")
    bad, worst_mean, worst_var, rms = [], 0.0, 0.0, False
    for c, kind in records:
        stats = _norm_rows(c.module, c.inputs[0], c.outputs[0], kind)
        if stats is None:
            continue
        m, v = stats
        if m > MEAN_TOL or v > VAR_TOL:
            if c.name not in bad:
                bad.append(c.name)
            worst_mean, worst_var = max(worst_mean, m), max(worst_var, v)
            rms = rms or kind == "rms"
    if not bad:
        return CheckResult.done()
    target = "mean square 1" if rms else "mean 0 and variance 1"
    return CheckResult.done(
        Finding(
            "unnormalized-norm",
            f"{len(bad)} normalization layer(s) do not normalize: after undoing their "
            f"weight and bias, a row's mean reaches {num(worst_mean)} and its variance "
            f"is off 1 by up to {num(worst_var)} (a LayerNorm gives {target} over its "
            "normalized dimension). Check the forward: (x - mean) / sqrt(var + eps), "
            "with both the subtraction and the parentheses, statistics over the last "
            "dimension; or use nn.LayerNorm.",
            names(bad),
        )
    )


# --------------------------------------------------------------------------------------
# loss-not-log-prob
# --------------------------------------------------------------------------------------


@check("loss-not-log-prob")
def check_loss(ctx: Context) -> CheckResult:
    """A loss that drops by a fixed amount when every output rises by 1 reads the
    outputs as log-probabilities; then they must be log-probabilities (logsumexp 0)."""
    if ctx.loss_fn is None or ctx.targets is None:
        return CheckResult.skip("needs loss_fn and targets")
    y, targets, loss_fn = ctx.y, ctx.targets, ctx.loss_fn
    with torch.no_grad():
        base = float(loss_fn(y, targets).sum())
        d1 = float(loss_fn(y + 1.0, targets).sum()) - base
        d2 = float(loss_fn(y + 2.0, targets).sum()) - base
    # lower by a fixed amount per unit shift
    reads_log_probs = d1 < 0 and abs(d2 - 2 * d1) <= 1e-3 * abs(d1)
    if not reads_log_probs or y.dim() < 2:
        return CheckResult.done()
    # the class axis: 1 ([batch, classes, ...]), or the last one for per-token outputs
    # [batch, tokens, classes] whose targets are [batch, tokens]
    per_token = y.dim() > 2 and tuple(targets.shape) == tuple(y.shape[:-1])
    dim = -1 if per_token else 1
    lse = torch.logsumexp(y.double(), dim=dim)  # 0 for log-probabilities
    if float(lse.abs().max()) <= 1e-3:
        return CheckResult.done()
    classes = y.shape[dim]
    return CheckResult.done(
        Finding(
            "loss-not-log-prob",
            "loss_fn reads the outputs as log-probabilities (raising every output by "
            f"1 lowers the loss by {num(-d1)}), but they are not: logsumexp over the "
            f"{classes} classes ranges from {num(float(lse.min()))} to "
            f"{num(float(lse.max()))} (0 for log-probabilities). The loss here is "
            f"{num(base)}, against ln({classes}) = {math.log(classes):.2f} for a "
            "uniform guess; training can push it to -infinity by making every logit "
            "large, without learning the task. Fix: F.cross_entropy(logits, targets) "
            "(it applies log_softmax itself), or end the model with log_softmax "
            "before F.nll_loss.",
            "loss_fn",
        )
    )


# --------------------------------------------------------------------------------------
# unused-parameter
# --------------------------------------------------------------------------------------


@check("unused-parameter")
def check_unused(ctx: Context) -> CheckResult:
    """One backward pass (of the loss, or of a random projection of the outputs): a
    trainable parameter whose gradient is None is not in the graph at all."""
    named = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
    if not named:
        return CheckResult.done()
    reseed(ctx.devices)  # the same random draws as the other passes
    with torch.enable_grad():
        y = as_tensor(ctx.model(*ctx.inputs))
        if ctx.loss_fn is not None and ctx.targets is not None:
            loss, what = ctx.loss_fn(y, ctx.targets).sum(), "the loss"
        else:
            gen = torch.Generator().manual_seed(0)
            r = torch.randn(y.shape, generator=gen).to(y.device, y.dtype)
            loss = (y * r).sum()
            what = (
                "a random projection of the outputs (pass loss_fn and targets to use "
                "your loss)"
            )
        if not loss.requires_grad:
            grads = [None] * len(named)
        else:
            params = [p for _, p in named]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    unused = [(n, p) for (n, p), g in zip(named, grads) if g is None]
    if not unused:
        return CheckResult.done()
    values = sum(p.numel() for _, p in unused)
    return CheckResult.done(
        Finding(
            "unused-parameter",
            f"{len(unused)} trainable parameter(s) ({values} values) get no gradient "
            f"from {what}: they never change in training, and DistributedDataParallel "
            "stops with an error about unused parameters. Typical cause: a module "
            "used in place of its twin (norm1 twice, norm2 never), or a layer created "
            "but left out of forward. Use them where they were meant to be used, or "
            "delete them.",
            names([n for n, _ in unused]),
        )
    )


# --------------------------------------------------------------------------------------
# future-leak
# --------------------------------------------------------------------------------------

MAX_CUTS = 8  # future-leak: how many cut positions are probed (evenly spaced)


def _shift(inputs: Tensor, targets: Tensor) -> int | None:
    """The smallest ``s >= 0`` with ``targets[:, t] == inputs[:, t + s]`` wherever
    both exist (at least two positions), or None."""
    n = inputs.shape[1]
    for s in range(n - 1):
        if torch.equal(targets[:, : n - s], inputs[:, s:]):
            return s
    return None


def _other_tokens(x: Tensor, vocab: Tensor) -> Tensor:
    """Each token of ``x`` replaced by the next one of the sorted ``vocab`` (cyclic)."""
    i = torch.searchsorted(vocab, x.contiguous())
    return vocab[(i + 1) % vocab.numel()]


def _cuts(s: int, n: int) -> list[int]:
    """At most MAX_CUTS cut positions in ``s .. n - 1``, evenly spaced."""
    cuts = list(range(s, n))
    if len(cuts) > MAX_CUTS:
        step = (len(cuts) - 1) / (MAX_CUTS - 1)
        cuts = sorted({cuts[round(i * step)] for i in range(MAX_CUTS)})
    return cuts


def _leaks(ctx: Context, s: int, vocab: Tensor) -> list[tuple[int, float]]:
    """For each cut position ``c`` (:func:`_cuts`): change the last input's tokens at
    positions >= c and return (c, change) where a prediction at a position t <= c - s
    moved (by ``change``)."""
    x, y = ctx.last, ctx.y
    tol = SAME * max(magnitude(y), 1e-12)
    found = []
    for c in _cuts(s, x.shape[1]):
        changed = x.clone()
        changed[:, c:] = _other_tokens(x[:, c:], vocab)
        y2 = ctx.forward(ctx.with_last(changed))
        seen = c - s + 1  # positions 0 .. c - s must not see the change
        change = float((y2[:, :seen].float() - y[:, :seen].float()).abs().max())
        if change > tol:
            found.append((c, change))
    return found


def _leaking_layers(ctx: Context, s: int, c: int, vocab: Tensor) -> list[str]:
    """The innermost modules whose outputs at positions <= c - s move although their
    inputs there do not, when the tokens at positions >= c change."""
    x = ctx.last
    b, n, upto = x.shape[0], x.shape[1], c - s + 1
    changed = x.clone()
    changed[:, c:] = _other_tokens(x[:, c:], vocab)

    def per_token(t: Tensor) -> bool:
        return t.dim() >= 2 and t.shape[0] == b and t.shape[1] == n

    def same_in(p: Tensor, q: Tensor) -> bool:
        return close(p[:, :upto], q[:, :upto]) if per_token(p) else close(p, q)

    def same_out(p: Tensor, q: Tensor) -> bool:
        return not per_token(p) or close(p[:, :upto], q[:, :upto])

    with no_fastpath():  # so that hooks see nn.TransformerEncoderLayer's attention
        runs = ctx.record(), ctx.record(ctx.with_last(changed))
    return introduced(*runs, same_in, same_out)


@check("future-leak")
def check_future_leak(ctx: Context) -> CheckResult:
    """When the targets are the last input shifted by ``s >= 0`` positions, the
    prediction at position t must not change when the input tokens at positions
    >= t + s do."""
    x, targets = ctx.last, ctx.targets
    if targets is None:
        return CheckResult.skip("needs targets (token ids aligned with the last input)")
    integer = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    if not (integer and x.dim() == 2 and targets.shape == x.shape and x.shape[1] >= 2):
        return CheckResult.skip(
            f"the targets {tuple(targets.shape)} are not token ids shaped like the "
            f"last input {tuple(x.shape)} (not sequence training)"
        )
    if targets.dtype != x.dtype:
        return CheckResult.skip(
            "the targets are not token ids of the last input's dtype"
        )
    s = _shift(x, targets)
    if s is None:
        return CheckResult.skip(
            "the targets are not the last input shifted by s >= 0 positions (not "
            "next-token or copy training)"
        )
    y = ctx.y
    if not (y.dim() >= 2 and y.shape[:2] == x.shape):
        return CheckResult.skip(
            f"the outputs {tuple(y.shape)} are not one prediction per token of the "
            f"last input {tuple(x.shape)}"
        )
    vocab = torch.unique(torch.cat([x.flatten(), targets.flatten()]))
    if vocab.numel() < 2:
        return CheckResult.skip("the batch holds a single token id: nothing to change")
    leaks = _leaks(ctx, s, vocab)
    if not leaks:
        return CheckResult.done()
    c, change = leaks[0]
    worst = max(ch for _, ch in leaks)
    scale = max(magnitude(y), 1e-12)
    probes = f"{len(leaks)} of {len(_cuts(s, x.shape[1]))}"
    if s == 0:
        # The model reads the token it must predict. Does it also look ahead?
        ahead = _leaks(ctx, 1, vocab) if x.shape[1] > 1 else []
        where = _leaking_layers(ctx, 1, ahead[0][0], vocab) if ahead else []
        seen = (
            "the targets are the last input itself (targets[:, t] == inputs[:, t]): "
            "the model is fed the tokens it must predict, and changing the tokens "
            f"from position {c} on changed the prediction at position {c} (by up to "
            f"{num(worst)}, {worst / scale:.0%} of the output scale)."
        )
        if ahead:
            seen += (
                " It has no causal mask either: the prediction at position t also "
                "changes when only tokens after t change (e.g. position "
                f"{ahead[0][0] - 1} when tokens {ahead[0][0]}.. change)."
            )
        fix = (
            "Fix: teacher forcing feeds the target shifted right behind a start token "
            "(tgt_in = [start, y_0, ..., y_{T-2}], labels y_0 .. y_{T-1}), with a "
            "causal mask in the decoder's self-attention "
            "(tgt_mask=nn.Transformer.generate_square_subsequent_mask(T), "
            "is_causal=True, or companion.DecoderBlock); then generate token by token "
            "from the start token."
        )
    else:
        where = _leaking_layers(ctx, s, c, vocab)
        seen = (
            f"the targets are the last input shifted by {s} (targets[:, t] == "
            f"inputs[:, t + {s}]{', next-token training' if s == 1 else ''}), but the "
            f"prediction at position {c - s} changed when only the tokens from "
            f"position {c} on changed ({probes} cut positions leak, by up to "
            f"{num(worst)}, {worst / scale:.0%} of the output scale): the model sees "
            "the tokens it must predict."
        )
        fix = (
            "Fix: a causal mask in every self-attention over the sequence "
            "(mask=nn.Transformer.generate_square_subsequent_mask(T) with "
            "is_causal=True, F.scaled_dot_product_attention(..., is_causal=True), or "
            "companion.DecoderBlock), so that position t attends only to positions <= "
            "t."
        )
    return CheckResult.done(
        Finding(
            "future-leak",
            f"{seen} Training then finds each answer in its input (the loss falls "
            "towards zero) and the model fails at generation, where the future tokens "
            f"are not there yet. {fix}",
            names(where) if where else "model",
        )
    )


# --------------------------------------------------------------------------------------
# not-token-attention
# --------------------------------------------------------------------------------------


@dataclass
class _AttentionCall:
    name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    out: object


def _is_attention(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.MultiheadAttention)
        or "Attention" in type(module).__name__
    )


def _first_tensor(obj) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        return next((t for t in obj if isinstance(t, Tensor)), None)
    if isinstance(obj, dict):
        return next((t for t in obj.values() if isinstance(t, Tensor)), None)
    return None


def _arg_names(module: nn.Module, n: int) -> list[str]:
    """The names of the first ``n`` positional parameters of ``module.forward``."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return [f"arg{i}" for i in range(n)]
    positional = [
        p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return (positional + [f"arg{i}" for i in range(len(positional), n)])[:n]


def _is_causal_mask(mask: Tensor) -> bool:
    """A square mask that lets position i see exactly positions <= i (either boolean
    convention, or a float mask of 0 and -inf)."""
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    n = mask.shape[0]
    future = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    if mask.dtype == torch.bool:
        return bool(torch.equal(mask, future) or torch.equal(mask, ~future))
    if mask.is_floating_point():
        return bool(torch.equal(torch.isinf(mask) & (mask < 0), future))
    return False


def _record_attention(ctx: Context) -> list[_AttentionCall]:
    """The first call of every attention module in one seeded pass (raw arguments)."""
    calls: dict[str, _AttentionCall] = {}
    hooks = []
    for name, module in ctx.model.named_modules():
        if not _is_attention(module):
            continue

        def hook(mod, args, kwargs, out, name=name):
            if name not in calls:
                calls[name] = _AttentionCall(name, mod, args, dict(kwargs), out)

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    if not hooks:
        return []
    try:
        with no_fastpath():
            ctx.forward()
    finally:
        for h in hooks:
            h.remove()
    return list(calls.values())


def _permutation(n: int, keep_last: bool) -> Tensor | None:
    """A fixed permutation of ``range(n)`` that moves something (keeping the last index
    in place when ``keep_last``); None when there is none."""
    m = n - 1 if keep_last else n
    if m < 2:
        return None
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(0))
    if torch.equal(perm, torch.arange(m)):
        perm = perm.roll(1)
    return torch.cat([perm, torch.arange(m, n)]) if keep_last else perm


def _probe_attention(ctx: Context, call: _AttentionCall) -> tuple[float | None, str]:
    """Permute the tokens of the call's input; returns (how far the output is from the
    permuted output, as a fraction of its scale; what was compared), or (None, why the
    call could not be probed)."""
    module, args, kwargs = call.module, call.args, call.kwargs
    named = list(zip(_arg_names(module, len(args)), args)) + list(kwargs.items())
    causal = False
    for key, value in named:
        low = key.lower()
        if ("cache" in low or "past" in low) and value is not None:
            return None, "called with a key/value cache"
        if "causal" in low and value is True:
            causal = True
        elif "mask" in low and value is not None:
            if isinstance(value, Tensor) and _is_causal_mask(value):
                causal = True
            else:
                return None, "called with a mask"
    x = next((v for _, v in named if isinstance(v, Tensor)), None)
    if x is None or x.dim() != 3:
        shape = None if x is None else tuple(x.shape)
        return None, f"its input {shape} is not [batch, tokens, dim]"
    batch_first = getattr(module, "batch_first", True)
    axis = 1 if not isinstance(module, nn.MultiheadAttention) or batch_first else 0
    n = x.shape[axis]
    perm = _permutation(n, keep_last=causal)
    if perm is None:
        return None, f"{n} token(s): nothing to permute"
    perm = perm.to(x.device)
    moved: dict[int, Tensor] = {}

    def permuted(v):
        if (
            isinstance(v, Tensor)
            and v.shape == x.shape
            and (v is x or torch.equal(v, x))
        ):
            if id(v) not in moved:
                moved[id(v)] = v.index_select(axis, perm)
            return moved[id(v)]
        return v

    new_args = tuple(permuted(v) for v in args)
    new_kwargs = {k: permuted(v) for k, v in kwargs.items()}
    recorded = _first_tensor(call.out)
    try:
        with torch.no_grad(), no_fastpath():
            reseed(ctx.devices)
            ref = _first_tensor(module(*args, **kwargs))
            reseed(ctx.devices)
            out = _first_tensor(module(*new_args, **new_kwargs))
    except Exception as exc:  # any failure: this layer cannot be probed
        return None, f"calling it again failed ({type(exc).__name__})"
    if ref is None or out is None or recorded is None:
        return None, "it returns no tensor"
    if ref.shape != recorded.shape or not close(ref, recorded):
        return None, "two calls on the same input disagree (randomness)"
    if ref.dim() != 3 or ref.shape[axis] != n or out.shape != ref.shape:
        return None, f"its output {tuple(ref.shape)} is not one row per token"
    if causal:  # the last query sees every key: permuting the others must not move it
        a, b = out.select(axis, n - 1), ref.select(axis, n - 1)
    else:
        a, b = out, ref.index_select(axis, perm)
    off = float((a.float() - b.float()).abs().max()) / max(magnitude(b), 1e-12)
    return (0.0 if close(a, b) else off), "causal" if causal else "all"


@check("not-token-attention")
def check_token_attention(ctx: Context) -> CheckResult:
    """Every attention layer must be permutation-equivariant over tokens: permuting its
    input tokens permutes its output the same way (for a causal layer: permuting the
    earlier tokens leaves the last token's output unchanged)."""
    calls = _record_attention(ctx)
    if not calls:
        return CheckResult.skip(
            "no attention layer ran (a module whose class name contains 'Attention', "
            "or nn.MultiheadAttention)"
        )
    bad: list[tuple[str, float, str]] = []
    unprobed: list[str] = []
    probed = 0
    for call in calls:
        off, what = _probe_attention(ctx, call)
        if off is None:
            unprobed.append(f"{call.name} ({what})")
            continue
        probed += 1
        if off > 0:
            bad.append((call.name, off, what))
    if not probed:
        return CheckResult.skip(
            "no attention layer could be probed: " + names(unprobed, limit=2)
        )
    failing = {n for n, _, _ in bad}
    inner = [b for b in bad if not any(o.startswith(b[0] + ".") for o in failing)]
    if not inner:
        return CheckResult.done()
    labels = [label(n, dict(ctx.model.named_modules())[n]) for n, _, _ in inner]
    worst = max(off for _, off, _ in inner)
    return CheckResult.done(
        Finding(
            "not-token-attention",
            f"{len(inner)} attention layer(s) do not treat their input as a set of "
            "tokens: permuting the tokens of the input did not permute the output the "
            f"same way (off by up to {worst:.0%} of the output scale). Attention mixes "
            "tokens with weights softmax(q k^T / sqrt(d)) of shape [batch, heads, "
            "tokens, tokens] and is equivariant to any reordering of them; a layer "
            "that is not either attends across something else (features, heads) or "
            "scrambles tokens when it splits or merges the heads. Typical: q.view(B, "
            "L, D // H, H).transpose(1, 3), which makes the scores [B, H, D // H, D "
            "// H] over features, or .view(B, L, D) on [B, H, L, D // H] without "
            "transposing back. Fix: q = q.view(B, L, H, D // H).transpose(1, 2) "
            "(likewise k and v), scores q @ k.transpose(-2, -1), and out = (att @ "
            "v).transpose(1, 2).reshape(B, L, D). (Attention with rotary or relative "
            "positions inside is not equivariant by design: ignore this there.)",
            names(labels),
        )
    )


# --------------------------------------------------------------------------------------
# linear-ffn
# --------------------------------------------------------------------------------------


@check("linear-ffn")
def check_linear_ffn(ctx: Context) -> CheckResult:
    """An nn.Linear whose input is a sibling nn.Linear's output, passed on as it is (same
    memory, same values: directly, or through Dropout in eval mode or Identity)."""
    linears = [(n, m) for n, m in ctx.model.named_modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        return CheckResult.skip("fewer than two nn.Linear layers in the model")
    produced: list[tuple[str, nn.Linear, Tensor, Tensor]] = []
    pairs: dict[tuple[str, str], tuple[nn.Linear, nn.Linear]] = {}
    hooks = []
    for name, module in linears:

        def hook(mod, args, kwargs, out, name=name):
            x = args[0] if args else kwargs.get("input")
            if isinstance(x, Tensor) and x.numel():
                for p_name, p_mod, raw, saved in produced:
                    same = raw.data_ptr() == x.data_ptr() and raw.shape == x.shape
                    if same and raw.dtype == x.dtype and torch.equal(x, saved):
                        pairs.setdefault((p_name, name), (p_mod, mod))
            if isinstance(out, Tensor) and out.numel():
                produced.append((name, mod, out, out.detach().clone()))

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        ctx.forward()
    finally:
        for h in hooks:
            h.remove()
        produced.clear()
    # One sub-network: both Linears are children of the same module (an MLP, a
    # Sequential), not, say, an attention's output projection and the model's head. A
    # hidden width below both ends is a deliberate low-rank factorisation (LoRA, a
    # bottleneck): fewer parameters than one Linear. Neither is reported.
    found = [
        (p, c, a, b)
        for (p, c), (a, b) in pairs.items()
        if p.rpartition(".")[0] == c.rpartition(".")[0]
        and a.out_features >= min(a.in_features, b.out_features)
    ]
    if not found:
        return CheckResult.done()
    _, _, a, b = found[0]
    i, h, o = a.in_features, a.out_features, b.out_features
    return CheckResult.done(
        Finding(
            "linear-ffn",
            f"{len(found)} pair(s) of nn.Linear layers run back to back with nothing "
            "nonlinear between them (the second reads the first's output as it is): "
            f"Linear({i} -> {h}) then Linear({h} -> {o}) is one linear map, x W1^T "
            f"W2^T + b, that a single Linear({i} -> {o}) computes with fewer "
            "parameters, so this feed-forward block adds nothing a linear layer could "
            "not, and a stack of linear maps stays linear. Fix: an activation between "
            f"them, e.g. nn.Sequential(nn.Linear({i}, {h}), nn.GELU(), nn.Linear({h}, "
            f"{o})) (ReLU or SiLU work too). (A bottleneck narrower than both ends, as "
            "in LoRA, is a deliberate low-rank factorisation and is not reported.)",
            names([f"{p} -> {c}" for p, c, _, _ in found]),
        )
    )
