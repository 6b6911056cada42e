"""The casebook (chapter 8): learners' own networks as posted, and their fixes.

Each :class:`Case` holds a network built the way its post describes it, the training
settings the post gives (:class:`Settings`: a :class:`~companion.train.TrainConfig`,
the loss and what the pixels look like), the :mod:`companion.doctor` codes it should
raise, and its fixes: :class:`Fix` steps, in order, each changing one thing.
:meth:`Case.step` builds the model after the first ``k`` fixes from the posted model's
own weights, so every step of a case starts from the same initialisation and differs
from the step before by one change:

    case = CASES["forum-bert"]
    model, settings = case.step(0)                 # as posted
    model, settings = case.step(len(case.fixes))   # every fix applied
    result = run(case, 1, data)                    # train after the first fix

The cases: 1. ``forum-bert`` (:class:`ForumBERT`); 2. ``blog-layernorm`` (chapter
4's small ViT with a ViT blog's LayerNorm); 3. ``spanish-encoder``
(:class:`SpanishEncoder`); 4. ``pytorch-cnn`` (:class:`~companion.baselines.ExampleCNN`,
the reference). The fifth post, an encoder-decoder toy Transformer, is in the decoder
chapter.

Images are ``[batch, 1, 28, 28]``, tokens ``[batch, tokens, dim]``, logits
``[batch, 10]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from .baselines import ExampleCNN
from .bugs import BUDGET, SMALL, LayerNormMeanOverStd, swap_modules
from .data import MNIST_MEAN, MNIST_STD, MNISTTensors
from .layers import LayerNorm
from .train import LossFn, TrainConfig, evaluate, loader, set_seed, train_model
from .vit import ViT

LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss}
INPUTS = ("normalised", "pixels")
PATCHES = "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"  # both posts cut 7x7 patches so


# -------------------------------------------------------------------------------------
# Training settings
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How a post trains its network.

    ``config``: optimizer, learning rate, batch size, length. ``loss``: a key of
    :data:`LOSSES`, applied to the model's output as it is. ``inputs``: the pipeline,
    ``"normalised"`` is ``(pixel - 0.1307) / 0.3081`` (what
    :func:`~companion.data.mnist_subset` holds), ``"pixels"`` the pixels in [0, 1].
    """

    config: TrainConfig
    loss: str = "cross_entropy"
    inputs: str = "normalised"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(
                f"Settings.loss must be one of {sorted(LOSSES)}, got {self.loss!r}"
            )
        if self.inputs not in INPUTS:
            raise ValueError(
                f"Settings.inputs must be one of {INPUTS}, got {self.inputs!r}"
            )

    @property
    def loss_fn(self) -> LossFn:
        return LOSSES[self.loss]

    def prepare(self, images: Tensor) -> Tensor:
        """Normalised images ``[batch, 1, 28, 28]`` -> what this pipeline feeds in."""
        if self.inputs == "normalised":
            return images
        return images * MNIST_STD + MNIST_MEAN  # [batch, 1, 28, 28] in [0, 1]

    def train_set(self, data: MNISTTensors) -> TensorDataset:
        """The training pairs ``(image, label)`` as this pipeline delivers them."""
        return TensorDataset(self.prepare(data.x_train), data.y_train)

    def test_loader(self, data: MNISTTensors, batch_size: int = 1000) -> DataLoader:
        """The test images, in order, as this pipeline delivers them."""
        pairs = TensorDataset(self.prepare(data.x_test), data.y_test)
        return DataLoader(pairs, batch_size=batch_size)

    def describe(self) -> str:
        """One line: optimizer, learning rate, batch, steps, loss, inputs."""
        c = self.config
        if self.inputs == "normalised":
            pixels = "(pixel - 0.1307) / 0.3081"
        else:
            pixels = "pixels in [0, 1]"
        return (
            f"{c.optimizer} lr {c.lr:g} (weight decay {c.weight_decay:g}), "
            f"batch {c.batch_size}, {c.steps} steps, {self.loss}, {pixels}"
        )


def posted_config(optimizer: str, lr: float, batch_size: int) -> TrainConfig:
    """A post's optimizer, learning rate and batch size, for the chapter's length
    (``BUDGET.steps``). ``"adam"`` gets PyTorch's default weight decay, 0."""
    decay = 0.0 if optimizer == "adam" else BUDGET.weight_decay
    return TrainConfig(
        optimizer=optimizer, lr=lr, weight_decay=decay, batch_size=batch_size,
        steps=BUDGET.steps,
    )


def recast(module: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """``module`` with the methods of ``cls``, a subclass of its class that only
    overrides methods (a fix): the same object, submodules and weights; new code."""
    base = cls.__mro__[1]
    if type(module) is not base:
        got = type(module).__name__
        raise TypeError(f"{cls.__name__} fixes {base.__name__}, got {got}")
    module.__class__ = cls
    return module


# -------------------------------------------------------------------------------------
# Case 1: the forum's BERT-like MNIST classifier
# -------------------------------------------------------------------------------------


class ForumAttention(nn.Module):
    """The forum's multi-head self-attention (correct): bias-free q/k/v/o projections,
    dropout after the output projection. ``[batch, tokens, dim]`` -> same shape."""

    def __init__(self, dim: int = 64, heads: int = 8, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[batch, tokens, dim]`` -> ``[batch, tokens, dim]``."""
        split = "b t (h d) -> b h t d"
        q = rearrange(self.q(x), split, h=self.heads)  # [batch, heads, tokens, d]
        k = rearrange(self.k(x), split, h=self.heads)
        v = rearrange(self.v(x), split, h=self.heads)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [b, h, t, t]
        out = rearrange(scores.softmax(-1) @ v, "b h t d -> b t (h d)")
        return self.drop(self.o(out))


class ForumBlock(nn.Module):
    """A post-norm block with a bug: ``norm1`` normalises both residual sums.

    ``z = norm1(x + attn(x))`` is right; ``return norm1(z + ffn(z))`` should use
    ``norm2``. ``norm2`` is built, counted, handed to the optimizer, and never runs:
    its weight and bias get no gradient, and both sums share one scale and shift.
    """

    def __init__(self, dim: int = 64, heads: int = 8, mlp_dim: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.attn = ForumAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[batch, tokens, dim]`` -> same shape."""
        z = self.norm1(x + self.attn(x))
        return self.norm1(z + self.ffn(z))  # BUG: norm1 again; norm2 never runs


class ForumBERT(nn.Module):
    """The forum's BERT-like MNIST classifier, as posted. Its training is in
    ``CASES["forum-bert"].settings``: ``F.nll_loss`` on these raw logits (BUG: they
    are not log-probabilities), Adam 2e-3, batch 128, normalised inputs.

    16 patches of 7x7 pixels -> ``Linear(49, 64)``; a CLS token and 17 learned
    positions, both ``torch.randn`` (standard deviation 1); 6 :class:`ForumBlock`
    (``norm1`` twice, ``norm2`` never); the head ``Linear(64, 128) -> GELU ->
    Linear(128, 10)`` on the CLS token.
    """

    def __init__(self, dim: int = 64, depth: int = 6, heads: int = 8,
                 mlp_dim: int = 128, dropout: float = 0.1, num_classes: int = 10):
        super().__init__()
        self.embed = nn.Linear(7 * 7, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 16 + 1, dim))
        self.blocks = nn.ModuleList(
            ForumBlock(dim, heads, mlp_dim, dropout) for _ in range(depth)
        )
        self.head = nn.Sequential(
            nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, num_classes)
        )

    def forward(self, images: Tensor) -> Tensor:
        """images ``[batch, 1, 28, 28]`` -> logits ``[batch, 10]``."""
        patches = rearrange(images, PATCHES, p1=7, p2=7)  # [batch, 16, 49]
        x = self.embed(patches)  # [batch, 16, dim]
        cls = self.cls.expand(x.shape[0], -1, -1)  # [batch, 1, dim]
        x = torch.cat([cls, x], dim=1) + self.pos  # [batch, 17, dim]
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])  # [batch, 10]: raw logits


class ForumBlockFixed(ForumBlock):
    """The fix of :class:`ForumBlock`: the second residual sum goes through norm2."""

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[batch, tokens, dim]`` -> same shape."""
        z = self.norm1(x + self.attn(x))
        return self.norm2(z + self.ffn(z))


def use_norm2(model: nn.Module) -> nn.Module:
    """Every :class:`ForumBlock` becomes a :class:`ForumBlockFixed` (same weights)."""
    return swap_modules(model, ForumBlock, lambda b: recast(b, ForumBlockFixed))


# -------------------------------------------------------------------------------------
# Case 2: a ViT blog's LayerNorms
# -------------------------------------------------------------------------------------


class LayerNormBlogParens(LayerNorm):
    """The blog's second LayerNorm: the parentheses around the wrong terms.

    ``w * (x - x.mean(-1, keepdim=True) / (x.std(-1, keepdim=True) + eps)) + b``
    subtracts ``mean / std`` (one number per token) from ``x`` and divides nothing: the
    token's spread passes through. Meant: ``w * (x - mean) / (std + eps) + b``.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps, fused=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[..., dim]`` -> ``[..., dim]``: shifted by mean / std, not scaled."""
        mean = x.mean(-1, keepdim=True)  # [..., 1]
        std = x.std(-1, keepdim=True)  # [..., 1]
        return self.weight * (x - mean / (std + self.eps)) + self.bias


def swap_norm(old: type[nn.Module], new: Callable[[int], nn.Module]):
    """A model edit: every ``old`` layer becomes ``new(dim)``, same weight and bias."""

    def make(norm: nn.Module) -> nn.Module:
        layer = new(norm.weight.shape[0])
        layer.load_state_dict(norm.state_dict())
        return layer

    return lambda model: swap_modules(model, old, make)


def blog_vit() -> ViT:
    """Chapter 4's small ViT (``SMALL``) with the blog's first LayerNorm in all five
    places: ``w * x.mean(-1, keepdim=True) / (x.std(-1, keepdim=True) + eps) + b``,
    ``eps=1e-6`` (:class:`~companion.bugs.LayerNormMeanOverStd`)."""
    return swap_norm(LayerNorm, LayerNormMeanOverStd)(ViT(SMALL))


# -------------------------------------------------------------------------------------
# Case 3: the Spanish encoder post
# -------------------------------------------------------------------------------------


class SpanishAttention(nn.Module):
    """The post's multi-head attention, which attends across *features*, not tokens.

    ``key``, ``query`` and ``value`` are each ``Linear(49, 49 * 16)``: 16 heads of the
    full width 49. The bug is one line, :meth:`split`: ``view(B, L, 49, 16)
    .transpose(1, 3)`` gives ``[B, 16, 49, L]``, so the scores ``q @ k^T`` are
    ``[B, 16, 49, 49]``, feature against feature summed over the tokens;
    ``1 / sqrt(k.size(-1))`` divides by the root of the number of tokens (16), not of
    the head width (49); ``att @ v`` mixes features. The recombination
    ``transpose(1, 2).contiguous().view(B, L, 49 * 16)``, right for ``[B, 16, L, 49]``,
    reads ``[B, 49, 16, L]`` memory as tokens: each output "token" is a slice of
    features from every input token. Permuting the input tokens does not permute the
    output: the layer does not treat its tokens as tokens.
    """

    def __init__(self, dim: int = 49, n_heads: int = 16):
        super().__init__()
        self.dim, self.n_heads = dim, n_heads
        self.key = nn.Linear(dim, dim * n_heads)
        self.query = nn.Linear(dim, dim * n_heads)
        self.value = nn.Linear(dim, dim * n_heads)
        self.proj = nn.Linear(dim * n_heads, dim)

    def split(self, t: Tensor) -> Tensor:
        """``[B, L, 49 * 16]`` -> ``[B, 16, 49, L]``. BUG: features where tokens go."""
        B, L, _ = t.shape
        return t.view(B, L, self.dim, self.n_heads).transpose(1, 3)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, L, 49]`` -> ``[B, L, 49]``."""
        B, L, _ = x.shape
        k = self.split(self.key(x))
        q = self.split(self.query(x))
        v = self.split(self.value(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # [B,16,49,49]
        att = F.softmax(att, dim=-1)
        y = att @ v  # [B, 16, 49, L]
        y = y.transpose(1, 2).contiguous().view(B, L, self.dim * self.n_heads)
        return self.proj(y)  # [B, L, 49]


class SpanishBlock(nn.Module):
    """A post-norm block, ``x = ln1(x + attn(x)); x = ln2(x + mlp(x))``, whose MLP is
    ``Linear(49, 196) -> Linear(196, 49)``. BUG: no activation between them, so the two
    layers are one linear map of rank at most 49: a wide detour that adds nothing."""

    def __init__(self, dim: int = 49, n_heads: int = 16):
        super().__init__()
        self.attn = SpanishAttention(dim, n_heads)
        self.ln1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim))
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, L, 49]`` -> same shape."""
        x = self.ln1(x + self.attn(x))
        x = self.ln2(x + self.mlp(x))
        return x


class SpanishEncoder(nn.Module):
    """The Spanish encoder post, as posted. Its training is in
    ``CASES["spanish-encoder"].settings``: Adam 3e-4, batch 64, cross-entropy, pixels in
    [0, 1] (not normalised: the LayerNorms cope).

    16 patch tokens of 49 pixels -> ``Linear(49, 49)`` plus learned positions
    initialised to zeros (they start equal and learn to differ: not a bug); 3
    :class:`SpanishBlock` (attention over features, a linear MLP); the head flattens
    the 16 tokens into ``Linear(784, 10)``.
    """

    def __init__(self, dim: int = 49, depth: int = 3, n_heads: int = 16,
                 num_classes: int = 10):
        super().__init__()
        self.embed = nn.Linear(7 * 7, dim)
        self.pos = nn.Parameter(torch.zeros(1, 16, dim))
        self.blocks = nn.ModuleList(SpanishBlock(dim, n_heads) for _ in range(depth))
        self.head = nn.Linear(16 * dim, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """images ``[B, 1, 28, 28]`` -> logits ``[B, 10]``."""
        patches = rearrange(images, PATCHES, p1=7, p2=7)  # [B, 16, 49]
        x = self.embed(patches) + self.pos  # [B, 16, 49]
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))  # [B, 16 * 49] -> [B, 10]


class TokenAttention(SpanishAttention):
    """The fix of :class:`SpanishAttention`, one line: ``view(B, L, 16, 49)
    .transpose(1, 2)`` gives ``[B, 16, L, 49]``. The scores are ``[B, 16, L, L]``
    (token against token), the scale ``1 / sqrt(49)``, and the post's recombination is
    right. Same weights."""

    def split(self, t: Tensor) -> Tensor:
        """``[B, L, 49 * 16]`` -> ``[B, 16, L, 49]``: heads, tokens, features."""
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, self.dim).transpose(1, 2)


def attend_over_tokens(model: nn.Module) -> nn.Module:
    """Every :class:`SpanishAttention` becomes a :class:`TokenAttention` (weights
    kept)."""
    return swap_modules(model, SpanishAttention, lambda a: recast(a, TokenAttention))


def add_activation(model: nn.Module) -> nn.Module:
    """A GELU between the two ``Linear`` layers of every :class:`SpanishBlock`'s MLP
    (the same two layers, the same weights)."""
    for block in model.modules():
        if isinstance(block, SpanishBlock) and len(block.mlp) == 2:
            first, second = block.mlp
            block.mlp = nn.Sequential(first, nn.GELU(), second)
    return model


# -------------------------------------------------------------------------------------
# The cases
# -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """One fix: a short ``name``, the doctor ``code`` it answers, what it changes
    (``change``), and how: ``model`` edits the model in place keeping its weights, or
    ``settings`` returns changed training settings (exactly one of the two)."""

    name: str
    code: str | None
    change: str
    model: Callable[[nn.Module], nn.Module] | None = None
    settings: Callable[[Settings], Settings] | None = None

    def __post_init__(self) -> None:
        if (self.model is None) == (self.settings is None):
            raise ValueError(
                f"Fix {self.name!r}: give exactly one of model and settings"
            )


@dataclass(frozen=True)
class Case:
    """A learner's network: how to build it as posted, how it was trained, what the
    doctor should find in it (``codes``), and its ordered fixes."""

    number: int
    name: str
    title: str
    build: Callable[[], nn.Module]
    settings: Settings
    codes: tuple[str, ...] = ()
    fixes: tuple[Fix, ...] = ()

    def step(self, k: int = 0, seed: int = 0) -> tuple[nn.Module, Settings]:
        """The model and settings after the first ``k`` fixes (0: as posted), built
        after ``set_seed(seed)``: every ``k`` starts from the posted model's weights."""
        if not 0 <= k <= len(self.fixes):
            n = len(self.fixes)
            raise ValueError(f"case {self.name!r} has {n} fixes: k in 0..{n}, got {k}")
        set_seed(seed)
        model, settings = self.build(), self.settings
        for fix in self.fixes[:k]:
            if fix.model is not None:
                model = fix.model(model)
            else:
                settings = fix.settings(settings)  # type: ignore[misc]
        return model, settings

    def expected(self, k: int = 0) -> list[str]:
        """The doctor codes left after the first ``k`` fixes: those of the fixes still
        to apply (``k = 0``: ``codes``; after the last fix: none)."""
        left = {fix.code for fix in self.fixes[k:]}
        return [code for code in self.codes if code in left]

    def labels(self) -> list[str]:
        """``"as posted"``, then the name of each fix."""
        return ["as posted", *(fix.name for fix in self.fixes)]


def _loss(name: str) -> Callable[[Settings], Settings]:
    return lambda settings: dataclasses.replace(settings, loss=name)


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case(
            1, "forum-bert", "The forum's BERT-like MNIST classifier", ForumBERT,
            Settings(posted_config("adam", 2e-3, 128), loss="nll_loss"),
            codes=("loss-not-log-prob", "unused-parameter"),
            fixes=(
                Fix("cross_entropy", "loss-not-log-prob",
                    "F.nll_loss(logits, y) -> F.cross_entropy(logits, y)",
                    settings=_loss("cross_entropy")),
                Fix("norm2", "unused-parameter",
                    "return norm1(z + ffn(z)) -> return norm2(z + ffn(z))",
                    model=use_norm2),
            ),
        ),
        Case(
            2, "blog-layernorm", "A ViT blog's LayerNorm in chapter 4's small ViT",
            blog_vit, Settings(BUDGET),
            codes=("unnormalized-norm",),
            fixes=(
                Fix("x - mean / std", "unnormalized-norm",
                    "w * mean / (std + eps) + b -> w * (x - mean / (std + eps)) + b",
                    model=swap_norm(LayerNormMeanOverStd, LayerNormBlogParens)),
                Fix("(x - mean) / std", "unnormalized-norm",
                    "-> LayerNorm: w * (x - mean) / sqrt(var + eps) + b",
                    model=swap_norm(LayerNormBlogParens, LayerNorm)),
            ),
        ),
        Case(
            3, "spanish-encoder", "The Spanish encoder post", SpanishEncoder,
            Settings(posted_config("adam", 3e-4, 64), inputs="pixels"),
            codes=("not-token-attention", "linear-ffn"),
            fixes=(
                Fix("attend over tokens", "not-token-attention",
                    "view(B, L, 49, 16).transpose(1, 3)"
                    " -> view(B, L, 16, 49).transpose(1, 2)",
                    model=attend_over_tokens),
                Fix("GELU in the MLP", "linear-ffn",
                    "Linear(49, 196), Linear(196, 49) -> Linear, GELU, Linear",
                    model=add_activation),
            ),
        ),
        Case(
            4, "pytorch-cnn", "PyTorch's MNIST example CNN (the reference)",
            ExampleCNN, Settings(BUDGET),
        ),
    )
}


def get_case(case: Case | str) -> Case:
    """``case`` itself, or the case of that name in :data:`CASES`."""
    if isinstance(case, Case):
        return case
    if case not in CASES:
        raise KeyError(f"no case {case!r}; choose from {sorted(CASES)}")
    return CASES[case]


def fixes(case: Case | str) -> list[Fix]:
    """The ordered fixes of ``case`` (a :class:`Case` or its name in :data:`CASES`)."""
    return list(get_case(case).fixes)


# -------------------------------------------------------------------------------------
# Training one step of a case
# -------------------------------------------------------------------------------------


@dataclass
class Result:
    """One trained step of a case: the training loss every ``every`` steps, the test
    loss (the step's own loss function) and the test accuracy."""

    case: str
    label: str
    loss: list[float]
    every: int
    test_loss: float
    accuracy: float


def doctor_batch(data: MNISTTensors, settings: Settings, n: int = 20, seed: int = 0):
    """The first ``n`` images and labels of the first shuffled training batch of 64,
    as ``settings`` delivers them. (20: neither 16 patches nor 17 tokens, so a batch
    axis cannot pass for a token axis.)"""
    images, labels = next(iter(loader(data.train, 64, seed=seed)))
    return settings.prepare(images[:n]), labels[:n]


def run(case: Case | str, k: int, data: MNISTTensors, *, seed: int = 0,
        device: torch.device | str | None = None, log_every: int = 10) -> Result:
    """Train ``case`` after its first ``k`` fixes (:meth:`Case.step`) with its settings
    through :func:`~companion.train.train_model`; test on ``data``'s test images."""
    case = get_case(case)
    model, settings = case.step(k, seed)
    torch.manual_seed(seed)  # the same dropout masks for every step
    history = train_model(
        model, settings.train_set(data), settings.config, seed=seed,
        loss_fn=settings.loss_fn, log_every=log_every, device=device, progress=False,
    )
    test = evaluate(model, settings.test_loader(data), settings.loss_fn, device)
    return Result(case.name, case.labels()[k], history.train_loss, log_every,
                  test["loss"], test["accuracy"])


def table(rows: list[tuple[str, list[str], list[Result]]]) -> str:
    """A markdown table, case | findings | accuracy as posted | after each fix, from
    ``(case, the doctor's codes on the posted model, the Result of every step)``."""
    lines = [
        "| case | findings | accuracy as posted | after each fix |",
        "|---|---|---|---|",
    ]
    for case, codes, results in rows:
        found = ", ".join(f"`{code}`" for code in codes) or "none"
        posted = f"{results[0].accuracy:.1%}" if results else "-"
        after = "; ".join(f"{r.label}: {r.accuracy:.1%}" for r in results[1:]) or "-"
        lines.append(f"| {case} | {found} | {posted} | {after} |")
    return "\n".join(lines)
