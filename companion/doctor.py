"""A bug detector for models that run but do not learn: ``diagnose(model, inputs, targets, loss_fn)``.

It runs a handful of forward passes (and one backward pass) on a batch you provide and
reports what it measured, as :class:`Finding` objects with one of these codes:

=======================  ==================================================================
``nonfinite-parameter``  NaN/inf or absurdly large (> 1e6) values in parameters or outputs
``dropout-in-eval``      two identical forward passes in eval mode disagree
``batch-mixing``         sample i's output (or a layer's output for it) changes when only sample j != i does
``position-blind``       shuffling the patches (or tokens) of the input leaves the output unchanged
``unnormalized-norm``    a normalization layer's output is not mean 0 / variance 1 (RMS 1 for RMSNorm)
``loss-not-log-prob``    ``loss_fn`` reads the outputs as log-probabilities, but they are not
``unused-parameter``     a trainable parameter receives no gradient from the loss
=======================  ==================================================================

The model must map a batch ``inputs [batch, ...]`` to per-sample outputs ``[batch, ...]``
(a tensor, or a tuple/dict whose first tensor is that). ``diagnose`` puts the model in eval
mode and gives it back with its parameters, buffers, train/eval modes and random-number
generator state (CPU, and CUDA when the model is there) as it found them.

Limits: it sees one batch at initialization (or wherever the weights are), not your training
or evaluation loop (forgetting ``model.eval()`` is invisible to it); an uninitialised parameter
that happens to hold zeros looks initialised; the position check permutes whole patches, and a
convolutional stem (overlapping kernels, zero padding) already tells tokens apart a little, so a
ViT with such a stem and no positional embedding is not reported; and choose a
batch size different from the number of tokens, so that a ``[tokens, batch, dim]`` layout
cannot be mistaken for a ``[batch, tokens, dim]`` one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

CODES = (
    "nonfinite-parameter",
    "dropout-in-eval",
    "batch-mixing",
    "position-blind",
    "unnormalized-norm",
    "loss-not-log-prob",
    "unused-parameter",
)
HUGE = 1e6  # a parameter or output beyond this is "absurdly large"
SAME = 1e-4  # two outputs are "the same" when they differ by less than this fraction of their scale
BLIND = 1e-4  # position-blind: a patch shuffle changes the output by < BLIND x (spread across samples)
MEAN_TOL, VAR_TOL = 1e-2, 2e-2  # a normalized row has |mean| < MEAN_TOL and |variance - 1| < VAR_TOL

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Finding:
    """One problem: its ``code``, what was measured and how to fix it, and ``where`` (module/parameter names)."""

    code: str
    message: str
    where: str = "model"

    def __str__(self) -> str:
        return f"[{self.code}] at {self.where}: {self.message}"


@dataclass
class Report:
    """What :func:`diagnose` found. ``ok`` when there are no findings; ``skipped`` says which checks could not run."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # codes of the checks that ran
    skipped: dict[str, str] = field(default_factory=dict)  # code -> why it did not run

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> list[str]:
        """The codes of the findings, in the order found."""
        return [f.code for f in self.findings]

    def _headline(self) -> str:
        n, k = len(self.findings), len(self.checked)
        found = "no findings" if n == 0 else f"{n} finding{'s' if n > 1 else ''}"
        return f"doctor: {found} ({k} check{'s' if k != 1 else ''} ran)"

    def __str__(self) -> str:
        lines = [self._headline()]
        lines += [f"- {f}" for f in self.findings]
        lines += [f"  (skipped {code}: {why})" for code, why in self.skipped.items()]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        lines = [f"**{self._headline()}**", ""]
        lines += [f"- `{f.code}` at `{f.where}`: {f.message}" for f in self.findings]
        lines += [f"- *skipped* `{code}`: {why}" for code, why in self.skipped.items()]
        return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    """Two significant digits: stable across machines for the quantities reported here."""
    return f"{x:.2g}"


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _as_tensor(out) -> Tensor:
    """The per-sample output tensor of a model call (a tensor, or the first tensor in a tuple/list/dict)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict):
        out = [out["logits"]] if "logits" in out else list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            if isinstance(item, Tensor):
                return item
    raise TypeError(f"diagnose needs the model to return a tensor (or a tuple/dict holding one), got {type(out).__name__}")


def _scale(y: Tensor) -> float:
    return float(y.detach().abs().max()) if y.numel() else 0.0


def _cuda_devices(model: nn.Module) -> list[int]:
    devices = set()
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_cuda:
            devices.add(t.device.index if t.device.index is not None else torch.cuda.current_device())
    return sorted(devices)


@contextmanager
def _preserved(model: nn.Module) -> Iterator[list[int]]:
    """Eval mode inside; afterwards every module's mode, the buffers and the RNG states are restored."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = _cuda_devices(model)
    with torch.random.fork_rng(devices=devices):
        try:
            model.eval()
            yield devices
        finally:
            for m, mode in modes:
                m.training = mode
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)


def _seed(devices: list[int], seed: int = 0) -> None:
    """Reseed exactly the generators that _preserved restores (CPU, and the model's CUDA devices)."""
    torch.random.default_generator.manual_seed(seed)
    for d in devices:
        with torch.cuda.device(d):
            torch.cuda.manual_seed(seed)


@dataclass
class _Call:
    """One module call recorded by :func:`_record`: its name and its tensor inputs and outputs."""

    name: str  # qualified name ("" for the model itself)
    label: str  # name and class, for messages
    inputs: list[Tensor]
    outputs: list[Tensor]


def _tensors(obj) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj.detach()]
    if isinstance(obj, (tuple, list)):
        return [t.detach() for t in obj if isinstance(t, Tensor)]
    if isinstance(obj, dict):
        return [t.detach() for t in obj.values() if isinstance(t, Tensor)]
    return []


def _record(model: nn.Module, run: Callable[[], object]) -> list[_Call]:
    """Run ``run()`` and record every module call (tensor inputs and outputs), in the order calls end."""
    calls: list[_Call] = []
    hooks = []
    for name, module in model.named_modules():

        def hook(mod, args, kwargs, out, name=name):
            label = f"{name or 'model'} ({type(mod).__name__})"
            calls.append(_Call(name, label, _tensors(args) + _tensors(kwargs), _tensors(out)))

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return calls


def _introduced(a: list[_Call], b: list[_Call], same_in: Callable[[Tensor, Tensor], bool],
                same_out: Callable[[Tensor, Tensor], bool]) -> list[str]:
    """Submodules whose outputs differ between two recorded runs although their inputs do not
    (``same_in``/``same_out`` say what "do not differ" means): the innermost ones, in call order."""
    found: list[_Call] = []
    for x, y in zip(a, b):
        if x.name != y.name or len(x.inputs) != len(y.inputs) or len(x.outputs) != len(y.outputs):
            continue
        if not all(s.shape == t.shape and same_in(s, t) for s, t in zip(x.inputs, y.inputs)):
            continue
        if x.name and any(s.shape == t.shape and not same_out(s, t) for s, t in zip(x.outputs, y.outputs)):
            found.append(x)
    inner = [c for c in found if not any(d.name.startswith(c.name + ".") for d in found)]
    return list(dict.fromkeys(c.label for c in inner))


def _close(a: Tensor, b: Tensor) -> bool:
    """Equal up to SAME x the largest finite magnitude (equal infs and NaNs in the same places count as equal)."""
    a, b = a.detach().float(), b.detach().float()
    finite = torch.isfinite(a) & torch.isfinite(b)
    scale = max(float(a[finite].abs().max()), float(b[finite].abs().max())) if bool(finite.any()) else 0.0
    near = (a - b).abs() <= SAME * max(scale, 1e-12)
    return bool((near | (a == b) | (a.isnan() & b.isnan())).all())


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


def _check_parameters(model: nn.Module) -> Finding | None:
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
            nonfinite, huge, total = nonfinite + n_nonfinite, huge + n_huge, total + v.numel()
            if finite.numel():
                worst = max(worst, float(finite.abs().max()))
    if not bad:
        return None
    return Finding(
        "nonfinite-parameter",
        f"{nonfinite} NaN/inf value(s) and {huge} value(s) beyond +-{HUGE:.0e} (largest {_num(worst)}) in "
        f"{total} entries of {len(bad)} parameter(s). Such values swamp everything added to them (in float32, "
        f"1e21 + 1 == 1e21), so the output stops depending on the input. The usual cause is torch.empty "
        f"(it returns whatever bytes were in memory) without an initialisation: use torch.zeros, torch.randn "
        f"or an nn.init function. The other checks were skipped: fix this first.",
        _names(bad),
    )


def _check_outputs(y: Tensor) -> Finding | None:
    if not y.is_floating_point():
        return None
    nonfinite = int((~torch.isfinite(y)).sum())
    finite = y[torch.isfinite(y)]
    worst = float(finite.abs().max()) if finite.numel() else 0.0
    if not nonfinite and worst <= HUGE:
        return None
    return Finding(
        "nonfinite-parameter",
        f"the outputs at initialization hold {nonfinite} NaN/inf value(s) of {y.numel()} and reach {_num(worst)}. "
        f"Look for an uninitialised (torch.empty) or overflowing parameter, a division by zero or a log of 0. "
        f"The other checks were skipped: fix this first.",
        "outputs",
    )


def _check_dropout(model: nn.Module, forward: Callable[[], Tensor], y: Tensor) -> Finding | None:
    y2 = forward()  # not reseeded: a random layer draws new numbers
    if y2.shape == y.shape and _close(y, y2):
        return None
    diff = (y.float() - y2.float()).abs()
    frac = float((diff > SAME * max(_scale(y), 1e-12)).float().mean())
    culprits = _introduced(_record(model, forward), _record(model, forward), _close, _close)
    return Finding(
        "dropout-in-eval",
        f"two identical forward passes in eval mode disagree: {frac:.0%} of the outputs differ, by up to "
        f"{_num(float(diff.max()))}. Something random still runs after model.eval(): F.dropout(x, p) without "
        f"training=self.training, or a layer that ignores self.training. Use nn.Dropout (or pass "
        f"training=self.training), and evaluate with model.eval() (companion.evaluate does).",
        _names(culprits) if culprits else "model",
    )


def _changed_sample(inputs: Tensor, j: int) -> Tensor | None:
    """A copy of ``inputs`` where only sample ``j`` differs (taken from another sample, or perturbed)."""
    for k in range(inputs.shape[0]):
        if k != j and not torch.equal(inputs[k], inputs[j]):
            out = inputs.clone()
            out[j] = inputs[k]
            return out
    if inputs.is_floating_point():
        out = inputs.clone()
        noise = torch.randn(inputs[j].shape, generator=torch.Generator().manual_seed(1)).to(inputs.device, inputs.dtype)
        out[j] = inputs[j] + noise * (inputs.float().std() if inputs.numel() > 1 else 1.0) + 1.0
        return out
    return None


def _check_batch_mixing(model: nn.Module, forward: Callable[[Tensor], Tensor], inputs: Tensor, y: Tensor) -> Finding | None:
    """Change sample j only; look at the other samples' outputs, and at every layer's outputs for them."""
    b, j = inputs.shape[0], inputs.shape[0] - 1
    changed = _changed_sample(inputs, j)
    if changed is None:
        return None
    others = [i for i in range(b) if i != j]

    def same_rows(s: Tensor, t: Tensor) -> bool:  # per-sample tensors: compare the other samples only
        return _close(s[others], t[others]) if s.dim() > 0 and s.shape[0] == b else _close(s, t)

    def same_rows_out(s: Tensor, t: Tensor) -> bool:
        return not (s.dim() > 0 and s.shape[0] == b) or _close(s[others], t[others])

    calls = _record(model, lambda: forward(inputs)), _record(model, lambda: forward(changed))
    culprits = _introduced(*calls, same_rows, same_rows_out)
    y2 = forward(changed)
    scale = max(_scale(y[others]), 1e-12)
    diff = (y[others].float() - y2[others].float()).abs().reshape(b - 1, -1).amax(dim=1)  # [batch - 1]
    moved = diff > SAME * scale
    if not bool(moved.any()) and not culprits:
        return None
    if bool(moved.any()):
        seen = (
            f"changing only sample {j} of {b} changed the outputs of {int(moved.sum())} of the {b - 1} other "
            f"samples, by up to {_num(float(diff.max()))} ({float(diff.max()) / scale:.0%} of the output scale)."
        )
    else:
        seen = (
            f"changing only sample {j} of {b} changed what {culprits[0]} computes for the other samples, "
            f"although their inputs to it did not change (the model's outputs do not show it here, but the "
            f"layer mixes samples)."
        )
    suspects = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention) and not m.batch_first]
    hint = f" Suspects: nn.MultiheadAttention without batch_first=True: {_names(suspects)}." if suspects else ""
    return Finding(
        "batch-mixing",
        f"{seen} Each sample's output must depend on that sample alone. A layer mixes the batch axis: typically "
        f"nn.MultiheadAttention (or nn.TransformerEncoderLayer) fed [batch, tokens, dim] without batch_first=True, "
        f"so it attends across the images of the batch; or a reshape/transpose that moves the batch axis.{hint} "
        f"Fix: pass batch_first=True, or transpose to [tokens, batch, dim] before the call and back after it.",
        _names(culprits) if culprits else "model",
    )


def _patch_sizes(model: nn.Module, h: int, w: int) -> list[tuple[int, int]]:
    """Patch sizes the model declares (a ``patch_size`` attribute, a Conv2d with stride == kernel > 1)
    that tile an ``h x w`` image; else every square block size that does."""
    found: list[tuple[int, int]] = []
    for m in model.modules():
        p = getattr(m, "patch_size", None)
        if isinstance(p, int) and not isinstance(p, bool):
            found.append((p, p))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(v, int) for v in p):
            found.append((int(p[0]), int(p[1])))
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == tuple(m.stride) and max(m.kernel_size) > 1:
            found.append((int(m.kernel_size[0]), int(m.kernel_size[1])))
    sizes = [s for s in dict.fromkeys(found) if 0 < s[0] < h and 0 < s[1] < w and h % s[0] == 0 and w % s[1] == 0]
    if not sizes:
        g = math.gcd(h, w)
        sizes = [(d, d) for d in range(2, min(h, w)) if g % d == 0]
    return sizes


def _shuffle_blocks(images: Tensor, ph: int, pw: int) -> Tensor:
    """Reverse the order of the ``ph x pw`` blocks of ``images [batch, C, H, W]`` (block contents kept)."""
    b, c, h, w = images.shape
    gh, gw = h // ph, w // pw
    blocks = images.reshape(b, c, gh, ph, gw, pw).permute(0, 1, 2, 4, 3, 5).reshape(b, c, gh * gw, ph, pw)
    blocks = blocks.flip(2)
    return blocks.reshape(b, c, gh, gw, ph, pw).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def _check_position(
    model: nn.Module, forward: Callable[[Tensor], Tensor], inputs: Tensor, y: Tensor, report: Report
) -> Finding | None:
    code = "position-blind"
    spread = float((y.float() - y[:1].float()).abs().max())  # how much outputs differ between samples
    if inputs.shape[0] < 2 or spread <= SAME * max(_scale(y), 1e-12):
        report.skipped[code] = "the outputs do not depend on the inputs (all samples give the same output)"
        return None
    if inputs.dim() == 4 and inputs.is_floating_point():
        sizes = _patch_sizes(model, *inputs.shape[2:])
        trials = [(f"the {ph}x{pw} patches", _shuffle_blocks(inputs, ph, pw), False) for ph, pw in sizes]
    elif inputs.dim() == 3 or (inputs.dim() == 2 and not inputs.is_floating_point()):
        trials = [("the tokens", inputs.flip(1), True)] if inputs.shape[1] > 1 else []
    else:
        trials = []
    if not trials:
        report.skipped[code] = f"inputs of shape {tuple(inputs.shape)} are neither images [B, C, H, W] nor tokens"
        return None
    report.checked.append(code)
    for what, shuffled, tokens in trials:
        moved = (shuffled != inputs).flatten(1).any(dim=1)  # samples the shuffle actually changed
        if not bool(moved.any()):
            continue
        y2 = forward(shuffled)
        change = float((y2[moved].float() - y[moved].float()).abs().max())
        if tokens and y.dim() >= 2 and y.shape[1] == inputs.shape[1]:  # per-token outputs: compare un-shuffled
            change = min(change, float((y2.flip(1)[moved].float() - y[moved].float()).abs().max()))
        if change <= BLIND * spread:
            return Finding(
                code,
                f"reversing the order of {what} of the input changed the outputs by less than {BLIND:.0e} of how much "
                f"they differ between samples ({_num(spread)}): the model sees a bag of {what.split()[-1]} and cannot "
                f"tell where each one is. Fix: add a positional embedding to the tokens, e.g. a learned "
                f"nn.Parameter of shape [1, tokens, dim] (initialised with small random values) or a sinusoidal table.",
            )
    return None


def _norm_kind(module: nn.Module) -> str | None:
    """'layer' (mean 0, variance 1), 'rms' (mean square 1) or None (not a per-sample normalization)."""
    name = type(module).__name__
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LocalResponseNorm)) or any(
        word in name for word in ("Batch", "Instance", "Group", "LocalResponse", "Spectral", "Weight")
    ):
        return None  # statistics over the batch, over groups or over space, or a reparametrisation
    if isinstance(module, getattr(nn, "RMSNorm", ())) or "RMS" in name:
        return "rms"
    if isinstance(module, nn.LayerNorm) or "LayerNorm" in name:
        return "layer"
    if "Norm" in name and not any(True for _ in module.children()):  # a leaf, not a wrapper like PreNorm
        return "layer"
    return None


def _affine(module: nn.Module, size: int, names: tuple[str, ...]) -> Tensor | None:
    for n in names:
        p = getattr(module, n, None)
        if isinstance(p, Tensor) and p.numel() == size:
            return p.detach().reshape(size).double()
    return None


def _norm_rows(module: nn.Module, x: Tensor, y: Tensor, kind: str) -> tuple[float, float] | None:
    """Worst (|mean|, |variance - 1|) (or (0, |mean square - 1|) for RMS) of the rows of ``y``, after undoing
    the affine weight and bias; the normalized axis is the trailing ``normalized_shape`` or the channel axis,
    whichever fits best. None when no row can be measured."""
    shape = getattr(module, "normalized_shape", None)
    ndims = len(shape) if isinstance(shape, (tuple, list, torch.Size)) else 1
    layouts = [(x.flatten(-ndims) if ndims > 1 else x, y.flatten(-ndims) if ndims > 1 else y)]
    if x.dim() >= 3:
        layouts.append((x.movedim(1, -1), y.movedim(1, -1)))
    eps = float(getattr(module, "eps", None) or getattr(module, "variance_epsilon", None) or 1e-5)
    best = None
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
        rows = torch.isfinite(xs).all(-1) & (xs.abs().amax(-1) <= HUGE) & (spread >= 1e3 * eps)
        if not bool(rows.any()) or size < 2:
            continue
        z = z[rows]
        if kind == "rms":
            stats = (0.0, float((z.pow(2).mean(-1) - 1).abs().max()))
        else:
            stats = (float(z.mean(-1).abs().max()), float((z.var(-1, unbiased=False) - 1).abs().max()))
        if best is None or max(stats[0] / MEAN_TOL, stats[1] / VAR_TOL) < max(best[0] / MEAN_TOL, best[1] / VAR_TOL):
            best = stats
    return best


def _check_norms(records: list[tuple[str, nn.Module, str, Tensor, Tensor]], report: Report) -> Finding | None:
    if not records:
        report.skipped["unnormalized-norm"] = "no normalization layer (LayerNorm, RMSNorm, ...) ran"
        return None
    report.checked.append("unnormalized-norm")
    bad, worst_mean, worst_var, rms = [], 0.0, 0.0, False
    for name, module, kind, x, y in records:
        stats = _norm_rows(module, x, y, kind)
        if stats is None:
            continue
        m, v = stats
        if m > MEAN_TOL or v > VAR_TOL:
            if name not in bad:
                bad.append(name)
            worst_mean, worst_var, rms = max(worst_mean, m), max(worst_var, v), rms or kind == "rms"
    if not bad:
        return None
    target = "mean square 1" if rms else "mean 0 and variance 1"
    return Finding(
        "unnormalized-norm",
        f"{len(bad)} normalization layer(s) do not normalize: after undoing their weight and bias, a row's mean "
        f"reaches {_num(worst_mean)} and its variance is off 1 by up to {_num(worst_var)} (a LayerNorm gives "
        f"{target} over its normalized dimension). Check the forward: (x - mean) / sqrt(var + eps), "
        f"with both the subtraction and the parentheses, statistics over the last dimension; or use nn.LayerNorm.",
        _names(bad),
    )


def _check_loss(y: Tensor, targets: Tensor, loss_fn: LossFn) -> Finding | None:
    with torch.no_grad():
        base = float(loss_fn(y, targets).sum())
        d1 = float(loss_fn(y + 1.0, targets).sum()) - base
        d2 = float(loss_fn(y + 2.0, targets).sum()) - base
    reads_log_probs = d1 < 0 and abs(d2 - 2 * d1) <= 1e-3 * abs(d1)  # lower by a fixed amount per unit shift
    if not reads_log_probs or y.dim() < 2:
        return None
    lse = torch.logsumexp(y.double(), dim=1)  # 0 for log-probabilities over the class axis
    if float(lse.abs().max()) <= 1e-3:
        return None
    classes = y.shape[1]
    return Finding(
        "loss-not-log-prob",
        f"loss_fn reads the outputs as log-probabilities (raising every output by 1 lowers the loss by "
        f"{_num(-d1)}), but they are not: logsumexp over the {classes} classes ranges from {_num(float(lse.min()))} "
        f"to {_num(float(lse.max()))} (0 for log-probabilities). The loss here is {_num(base)}, against "
        f"ln({classes}) = {math.log(classes):.2f} for a uniform guess; training can push it to -infinity by making "
        f"every logit large, without learning the task. Fix: F.cross_entropy(logits, targets) (it applies "
        f"log_softmax itself), or end the model with log_softmax before F.nll_loss.",
        "loss_fn",
    )


def _check_unused(model: nn.Module, y: Tensor, targets: Tensor | None, loss_fn: LossFn | None) -> Finding | None:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return None
    if loss_fn is not None and targets is not None:
        loss, what = loss_fn(y, targets).sum(), "the loss"
    else:
        r = torch.randn(y.shape, generator=torch.Generator().manual_seed(0)).to(y.device, y.dtype)
        loss, what = (y * r).sum(), "a random projection of the outputs (pass loss_fn and targets to use your loss)"
    if not loss.requires_grad:
        grads = [None] * len(named)
    else:
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    unused = [(n, p) for (n, p), g in zip(named, grads) if g is None]
    if not unused:
        return None
    values = sum(p.numel() for _, p in unused)
    return Finding(
        "unused-parameter",
        f"{len(unused)} trainable parameter(s) ({values} values) get no gradient from {what}: they never change "
        f"in training, and DistributedDataParallel stops with an error about unused parameters. Typical cause: a "
        f"module used in place of its twin (norm1 twice, norm2 never), or a layer created but left out of forward. "
        f"Use them where they were meant to be used, or delete them.",
        _names([n for n, _ in unused]),
    )


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def diagnose(model: nn.Module, inputs: Tensor, targets: Tensor | None = None, loss_fn: LossFn | None = None) -> Report:
    """Look for the bugs that let a model run but stop it from learning.

    Args:
        model: any module mapping ``inputs [batch, ...]`` to per-sample outputs ``[batch, ...]``;
            for the position check, images ``[batch, C, H, W]`` or tokens ``[batch, tokens(, dim)]``.
        inputs: one batch, at least 2 samples (8 or more is better), on any device (moved to the model's).
        targets: optional ``[batch]`` targets, used with ``loss_fn``.
        loss_fn: optional ``loss_fn(outputs, targets) -> loss``, e.g. ``F.cross_entropy``.

    Returns:
        a :class:`Report`; ``report.ok`` when nothing was found. The model's parameters, buffers,
        modes and the random-number generators are left as they were.
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a tensor [batch, ...], got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] < 2:
        raise ValueError(f"inputs must be a batch of at least 2 samples, got shape {tuple(inputs.shape)}")
    first = next(iter(model.parameters()), None)
    if first is not None:
        inputs = inputs.to(first.device)
        targets = targets.to(first.device) if isinstance(targets, Tensor) else targets
    report = Report()
    with _preserved(model) as devices:

        def forward(x: Tensor, seed: int | None = 0) -> Tensor:
            if seed is not None:
                _seed(devices, seed)  # the same random draws in every pass, so passes compare
            with torch.no_grad():
                return _as_tensor(model(x))

        report.checked.append("nonfinite-parameter")
        finding = _check_parameters(model)
        if finding is not None:
            report.findings.append(finding)
            return report

        # First pass, recording what every normalization layer received and returned.
        norm_records: list[tuple[str, nn.Module, str, Tensor, Tensor]] = []
        hooks = []
        for name, module in model.named_modules():
            kind = _norm_kind(module)
            if kind is not None:
                def hook(mod, args, out, name=name, kind=kind):
                    if args and isinstance(args[0], Tensor) and isinstance(out, Tensor) and out.shape == args[0].shape:
                        norm_records.append((name, mod, kind, args[0].detach(), out.detach()))

                hooks.append(module.register_forward_hook(hook))
        try:
            y = forward(inputs)
        finally:
            for h in hooks:
                h.remove()
        finding = _check_outputs(y)
        if finding is not None:
            report.findings.append(finding)
            return report

        report.checked.append("dropout-in-eval")
        finding = _check_dropout(model, lambda: forward(inputs, seed=None), y)
        if finding is not None:
            report.findings.append(finding)

        if y.dim() >= 1 and y.shape[0] == inputs.shape[0]:
            report.checked.append("batch-mixing")
            finding = _check_batch_mixing(model, forward, inputs, y)
            if finding is not None:
                report.findings.append(finding)
            finding = _check_position(model, forward, inputs, y, report)
            if finding is not None:
                report.findings.append(finding)
        else:
            why = f"the outputs {tuple(y.shape)} are not per-sample (first dim != batch {inputs.shape[0]})"
            report.skipped["batch-mixing"] = report.skipped["position-blind"] = why

        finding = _check_norms(norm_records, report)
        if finding is not None:
            report.findings.append(finding)

        if loss_fn is not None and targets is not None:
            report.checked.append("loss-not-log-prob")
            finding = _check_loss(y, targets, loss_fn)
            if finding is not None:
                report.findings.append(finding)
        else:
            report.skipped["loss-not-log-prob"] = "needs loss_fn and targets"

        report.checked.append("unused-parameter")
        _seed(devices)
        with torch.enable_grad():
            y_grad = _as_tensor(model(inputs))
            finding = _check_unused(model, y_grad, targets, loss_fn)
        if finding is not None:
            report.findings.append(finding)
    return report
