"""The doctor's machinery: findings, the report, the context checks read, the registry.

A check is one function ``check(ctx: Context) -> CheckResult`` registered with
``@check("code")``; :func:`companion.doctor.diagnose` runs the registered checks in
order. The checks themselves live in :mod:`companion.checks`; this module also holds the
helpers they share (recording module calls, comparing outputs, restoring the model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from textwrap import fill, indent

import torch
from torch import Tensor, nn

HUGE = 1e6  # a parameter or output beyond this is "absurdly large"
SAME = 1e-4  # two outputs are "the same" when they differ by < SAME x their scale
BLIND = 1e-4  # position-blind: a shuffle changes the output by < BLIND x sample spread
MEAN_TOL, VAR_TOL = (
    1e-2,
    2e-2,
)  # a normalized row: |mean| < MEAN_TOL, |var - 1| < VAR_TOL

LossFn = Callable[[Tensor, Tensor], Tensor]


# --------------------------------------------------------------------------------------
# Findings and the report
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem: its ``code``, what was measured and how to fix it, and ``where``
    (module/parameter names)."""

    code: str
    message: str
    where: str = "model"

    def __str__(self) -> str:
        return f"[{self.code}] at {self.where}: {self.message}"


@dataclass
class Report:
    """What :func:`~companion.doctor.diagnose` found. ``ok`` when there are no findings;
    ``checked`` lists the checks that ran, ``skipped`` says why the others did not."""

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

    def explain(self, width: int = 88) -> str:
        """The report for a terminal: the headline, then each finding (where, what was
        measured, why it matters, the fix) wrapped to ``width`` columns, then the
        skipped checks."""
        blocks = [self._headline()]
        for i, f in enumerate(self.findings, 1):
            head = fill(f"{i}. [{f.code}] at {f.where}", width, subsequent_indent="   ")
            body = indent(fill(f.message, width - 3), "   ")
            blocks.append(f"{head}\n{body}")
        if self.checked:
            blocks.append(fill("checks that ran: " + ", ".join(self.checked), width))
        for code, why in self.skipped.items():
            blocks.append(
                fill(f"skipped {code}: {why}", width, subsequent_indent="   ")
            )
        return "\n\n".join(blocks)


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """What one check returns: its findings, or why it could not run (``skipped``).

    ``stop`` asks :func:`~companion.doctor.diagnose` not to run the remaining checks
    (their measurements would mean nothing, e.g. on a model full of NaNs).
    """

    findings: tuple[Finding, ...] = ()
    skipped: str | None = None
    stop: bool = False

    @property
    def ran(self) -> bool:
        return self.skipped is None

    @classmethod
    def done(cls, *findings: Finding | None, stop: bool = False) -> CheckResult:
        """The check ran; ``None`` entries (nothing found) are dropped."""
        return cls(tuple(f for f in findings if f is not None), None, stop)

    @classmethod
    def skip(cls, why: str) -> CheckResult:
        """The check could not run on this model or batch, for the reason ``why``."""
        return cls((), why)


Check = Callable[["Context"], CheckResult]
CHECKS: dict[str, Check] = {}  # code -> check, in the order diagnose runs them


def check(code: str) -> Callable[[Check], Check]:
    """Register ``fn(ctx) -> CheckResult`` under ``code`` (checks run in that order)."""

    def register(fn: Check) -> Check:
        if code in CHECKS:
            raise ValueError(f"a check with code {code!r} is already registered")
        CHECKS[code] = fn
        return fn

    return register


# --------------------------------------------------------------------------------------
# Recording module calls
# --------------------------------------------------------------------------------------


@dataclass
class Call:
    """One module call recorded by :func:`record_calls`: tensor inputs and outputs."""

    name: str  # qualified name ("" for the model itself)
    label: str  # name and class, for messages
    inputs: list[Tensor]
    outputs: list[Tensor]
    module: nn.Module | None = None


def tensors(obj) -> list[Tensor]:
    """The tensors in ``obj`` (a tensor, a tuple/list or a dict), detached."""
    if isinstance(obj, Tensor):
        return [obj.detach()]
    if isinstance(obj, (tuple, list)):
        return [t.detach() for t in obj if isinstance(t, Tensor)]
    if isinstance(obj, dict):
        return [t.detach() for t in obj.values() if isinstance(t, Tensor)]
    return []


def label(name: str, module: nn.Module) -> str:
    return f"{name or 'model'} ({type(module).__name__})"


def record_calls(model: nn.Module, run: Callable[[], object]) -> list[Call]:
    """Run ``run()`` without gradients and record every module call (tensor inputs and
    outputs), in the order the calls end."""
    calls: list[Call] = []
    hooks = []
    for name, module in model.named_modules():

        def hook(mod, args, kwargs, out, name=name):
            ins, outs = tensors(args) + tensors(kwargs), tensors(out)
            calls.append(Call(name, label(name, mod), ins, outs, mod))

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return calls


def introduced(
    a: list[Call],
    b: list[Call],
    same_in: Callable[[Tensor, Tensor], bool],
    same_out: Callable[[Tensor, Tensor], bool],
) -> list[str]:
    """Submodules whose outputs differ between two recorded runs although their inputs
    do not (``same_in``/``same_out`` say what "do not differ" means): the innermost
    ones, in call order."""
    found: list[Call] = []
    for x, y in zip(a, b):
        if x.name != y.name or len(x.inputs) != len(y.inputs):
            continue
        if len(x.outputs) != len(y.outputs):
            continue
        pairs_in = zip(x.inputs, y.inputs)
        if not all(s.shape == t.shape and same_in(s, t) for s, t in pairs_in):
            continue
        pairs_out = zip(x.outputs, y.outputs)
        if x.name and any(
            s.shape == t.shape and not same_out(s, t) for s, t in pairs_out
        ):
            found.append(x)
    inner = [
        c for c in found if not any(d.name.startswith(c.name + ".") for d in found)
    ]
    return list(dict.fromkeys(c.label for c in inner))


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


def num(x: float) -> str:
    """Two significant digits: stable across machines for what is reported here."""
    return f"{x:.2g}"


def names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def as_tensor(out) -> Tensor:
    """The per-sample output tensor of a model call (a tensor, or the first tensor in a
    tuple/list/dict; a dict's ``"logits"`` first)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict):
        out = [out["logits"]] if "logits" in out else list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            if isinstance(item, Tensor):
                return item
    raise TypeError(
        "diagnose needs the model to return a tensor (or a tuple/dict holding one), "
        f"got {type(out).__name__}"
    )


def magnitude(y: Tensor) -> float:
    """The largest absolute value of ``y`` (0 for an empty tensor)."""
    return float(y.detach().abs().max()) if y.numel() else 0.0


def close(a: Tensor, b: Tensor) -> bool:
    """Equal up to SAME x the largest finite magnitude (equal infs and NaNs in the same
    places count as equal)."""
    a, b = a.detach().float(), b.detach().float()
    finite = torch.isfinite(a) & torch.isfinite(b)
    scale = 0.0
    if bool(finite.any()):
        scale = max(float(a[finite].abs().max()), float(b[finite].abs().max()))
    near = (a - b).abs() <= SAME * max(scale, 1e-12)
    return bool((near | (a == b) | (a.isnan() & b.isnan())).all())


# --------------------------------------------------------------------------------------
# Leaving the model as it was found
# --------------------------------------------------------------------------------------


def cuda_devices(model: nn.Module) -> list[int]:
    devices = set()
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_cuda:
            index = t.device.index
            devices.add(index if index is not None else torch.cuda.current_device())
    return sorted(devices)


@contextmanager
def preserved(model: nn.Module) -> Iterator[list[int]]:
    """Eval mode inside; afterwards every module's mode, the buffers and the RNG states
    (CPU and the model's CUDA devices, which it yields) are restored."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = cuda_devices(model)
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


def reseed(devices: list[int], seed: int = 0) -> None:
    """Reseed exactly the generators that :func:`preserved` restores."""
    torch.random.default_generator.manual_seed(seed)
    for d in devices:
        with torch.cuda.device(d):
            torch.cuda.manual_seed(seed)


@contextmanager
def no_fastpath() -> Iterator[None]:
    """Make ``nn.TransformerEncoderLayer``/``nn.MultiheadAttention`` take their Python
    path, so that forward hooks see the submodules they call (same results up to
    rounding)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


# --------------------------------------------------------------------------------------
# The context
# --------------------------------------------------------------------------------------


class Context:
    """What every check reads: the model (in eval mode), the batch, and the first pass.

    Attributes:
        model: the model under examination.
        inputs: the batch as a tuple; the model is called as ``model(*inputs)``. Every
            input is ``[batch, ...]``; the last one is the decoder's (per-token outputs
            line up with it).
        targets, loss_fn: as passed to ``diagnose`` (either may be None).
        devices: the CUDA devices whose generators :meth:`forward` reseeds.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: tuple[Tensor, ...],
        targets: Tensor | None = None,
        loss_fn: LossFn | None = None,
        devices: list[int] | None = None,
    ):
        self.model, self.inputs = model, inputs
        self.targets, self.loss_fn = targets, loss_fn
        self.devices = devices or []
        self._y: Tensor | None = None
        self._calls: list[Call] = []

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]

    @property
    def last(self) -> Tensor:
        """The last input (the only one for most models)."""
        return self.inputs[-1]

    def with_last(self, last: Tensor) -> tuple[Tensor, ...]:
        """The inputs with the last one replaced by ``last``."""
        return self.inputs[:-1] + (last,)

    def forward(
        self, inputs: tuple[Tensor, ...] | None = None, seed: int | None = 0
    ) -> Tensor:
        """The model's output tensor on ``inputs`` (default: the batch), no gradients.

        ``seed`` reseeds the generators first, so that random layers draw the same
        numbers in every pass and passes compare; ``None`` keeps drawing new ones."""
        if seed is not None:
            reseed(self.devices, seed)
        with torch.no_grad():
            return as_tensor(self.model(*(self.inputs if inputs is None else inputs)))

    def _first_pass(self) -> None:
        out: list[Tensor] = []
        self._calls = record_calls(self.model, lambda: out.append(self.forward()))
        self._y = out[0]

    @property
    def y(self) -> Tensor:
        """The output of the first (seeded) forward pass on the batch."""
        if self._y is None:
            self._first_pass()
        return self._y

    @property
    def calls(self) -> list[Call]:
        """Every module call of that first pass (tensor inputs and outputs)."""
        if self._y is None:
            self._first_pass()
        return self._calls

    @property
    def per_sample(self) -> bool:
        """Whether the outputs are ``[batch, ...]``, one row per sample."""
        return self.y.dim() >= 1 and self.y.shape[0] == self.batch

    def record(
        self, inputs: tuple[Tensor, ...] | None = None, seed: int | None = 0
    ) -> list[Call]:
        """Every module call of one more forward pass (see :meth:`forward`)."""
        return record_calls(self.model, lambda: self.forward(inputs, seed))
