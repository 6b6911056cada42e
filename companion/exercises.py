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


# ---------------------------------------------------------------------------- chapter 3


def _ch3_block():
    """A pre-norm EncoderBlock without dropout, its LayerNorms' scale and shift not 1 and
    0, and tokens with an offset and a spread, the same for every check; the global
    random generators are left as they were."""
    from .encoder import EncoderBlock

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        block = EncoderBlock(dim=16, num_heads=4, mlp_dim=32, norm_first=True).eval()
        with torch.no_grad():
            for norm in (block.norm1, block.norm2):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
        x = torch.randn(2, 5, 16) * 3 + 1  # [batch, tokens, dim]
    return block, x


@exercise(
    "ch3-prenorm",
    task="write a pre-norm block's two residual lines from block.attn, block.ffn, "
    "block.norm1 and block.norm2",
    explain="each sub-layer reads a normalised copy of x and adds its output to x "
    "itself, x + attn(norm1(x)), then x + ffn(norm2(x)): the residual stream runs from "
    "input to output without passing a LayerNorm, which is what keeps the gradient "
    "path of a deep pre-norm stack open.",
)
def _ch3_prenorm(pre_norm_block) -> str | None:
    if not callable(pre_norm_block):
        return (
            f"the answer is a function pre_norm_block(x, block), got a "
            f"{type(pre_norm_block).__name__}"
        )
    block, x = _ch3_block()
    a, f, n1, n2 = block.attn, block.ffn, block.norm1, block.norm2
    with torch.no_grad():
        want = type(block).forward(block, x)

        def refuse(*args, **kwargs):
            raise RuntimeError("block(x) was called")

        block.forward = refuse  # the answer must use the parts, not the whole block
        try:
            out = pre_norm_block(x.clone(), block)
        except RuntimeError as exc:
            if "block(x) was called" in str(exc):
                return (
                    "that calls the whole block, block(x): write its two lines with "
                    "block.attn, block.ffn, block.norm1 and block.norm2"
                )
            raise
        if not isinstance(out, torch.Tensor):
            return f"pre_norm_block returned a {type(out).__name__}, not a tensor"
        if out.shape != x.shape:
            return (
                f"the output has shape {tuple(out.shape)}, the input {tuple(x.shape)}: "
                "a block keeps [batch, tokens, dim]"
            )
        if _close(out, want):
            return None
        h = n1(x + a(x))
        if _close(out, n2(h + f(h))):
            return (
                "that is post-norm, norm(x + sublayer(x)): in pre-norm the LayerNorm "
                "goes on the branch, x + sublayer(norm(x))"
            )
        h = a(n1(x))
        if _close(out, f(n2(h))):
            return (
                "the residual connections are missing: add each sub-layer's output to "
                "x, x = x + ..."
            )
        h = n1(x) + a(n1(x))
        if _close(out, n2(h) + f(n2(h))):
            return (
                "you add the branch to the normalised x, norm(x) + sublayer(norm(x)): "
                "add it to x itself, so the residual stream never passes a LayerNorm"
            )
        h = x + a(n1(x))
        if _close(out, h + f(n1(h))):
            return (
                "the FFN's branch reads norm1: each sub-layer has its own LayerNorm, "
                "norm2 for the FFN"
            )
        if _close(out, h):
            return "that is only the attention line: add the FFN line after it"
        h = x + f(n2(x))
        if _close(out, h + a(n1(h))):
            return "attention comes first in the block, then the FFN"
    gap = (out - want).abs().max().item()
    return (
        f"your block's output differs from the pre-norm block's by up to {gap:.2f}: "
        "the first line is x = x + block.attn(block.norm1(x)), what is the second?"
    )


# ---------------------------------------------------------------------------- chapter 0


@exercise(
    "ch0-shapes",
    task="the pair (out shape, weights shape) that scaled_dot_product_attention(x, x, x) "
    "returns for x of shape [2, 5, 4]",
    explain="out keeps the shape of x, [batch, tokens, dim]: one blended vector per "
    "token; the weights hold one row per query and one column per key, "
    "[batch, tokens_q, tokens_k].",
)
def _ch0_shapes(answer) -> str | None:
    from companion.attention import scaled_dot_product_attention

    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    out, weights = scaled_dot_product_attention(x, x, x)
    try:
        out_shape, weights_shape = (tuple(int(n) for n in s) for s in answer)
    except (TypeError, ValueError):
        return (
            f"the answer is a pair of shapes (out_shape, weights_shape), each a tuple "
            f"of integers; got {answer!r}"
        )
    if out_shape == tuple(out.shape) and weights_shape == tuple(weights.shape):
        return None
    if out_shape != tuple(out.shape):
        return (
            f"out is not {out_shape}: attention returns one vector per token, as wide "
            "as the values, and keeps the batch axis"
        )
    if len(weights_shape) == 2:
        return "the weights keep the batch axis: one matrix per sequence"
    return (
        f"the weights are not {weights_shape}: each of the 5 queries has one weight per "
        "key, so the last two axes are [tokens_q, tokens_k]"
    )


# ---------------------------------------------------------------------------- chapter 1


@exercise(
    "ch1-patches",
    task="to_patches(images, p): [B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], patches "
    "numbered row by row, each read pixel by pixel with its C channels",
    explain="it gives exactly what companion.patchify gives, for one channel and for "
    "three, for 7x7 and for 4x4 patches: the pattern "
    "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c).",
)
def _ch1_patches(to_patches) -> str | None:
    from einops import rearrange

    if not callable(to_patches):
        return (
            f"the answer is a function to_patches(images, p), got a "
            f"{type(to_patches).__name__}"
        )
    g = torch.Generator().manual_seed(1)
    for channels, p in ((1, 7), (3, 7), (3, 4)):
        images = torch.randn(2, channels, 28, 28, generator=g)
        out = to_patches(images.clone(), p)
        if not isinstance(out, torch.Tensor):
            return f"to_patches returned a {type(out).__name__}, not a tensor"

        def pattern(right: str) -> torch.Tensor:
            return rearrange(images, f"b c (gh p1) (gw p2) -> {right}", p1=p, p2=p)

        want = pattern("b (gh gw) (p1 p2 c)")
        setting = f"{channels} channel{'s' if channels > 1 else ''}, p={p}"
        if out.shape != want.shape:
            return (
                f"with {setting} the output has shape {tuple(out.shape)}, expected "
                f"{tuple(want.shape)}: [batch, (28/p)^2 patches, p*p*channels]"
            )
        if torch.equal(out, want):
            continue
        if torch.equal(out, images.reshape(want.shape)):
            return (
                "reshape keeps memory order, so each 'patch' is a run of consecutive "
                "pixels (strips of image rows), not a square: split H and W into "
                "(gh p1) and (gw p2) first, then move the axes"
            )
        if torch.equal(out, pattern("b (gw gh) (p1 p2 c)")):
            return "the patches are numbered column by column: number them row by row"
        if torch.equal(out, pattern("b (gh gw) (p2 p1 c)")):
            return "each patch is transposed: read its pixels row by row, (p1 p2)"
        if torch.equal(out, pattern("b (gh gw) (c p1 p2)")):
            return (
                f"with {setting}: all of a patch's first channel comes first (the order "
                "F.unfold uses); keep each pixel's channels together, (p1 p2 c)"
            )
        return f"with {setting} the patches hold the right numbers in the wrong places"
    return None


# ---------------------------------------------------------------------------- chapter 2


@exercise(
    "ch2-attention",
    task="attention(q, k, v) = softmax(q k^T / sqrt(d_k)) v in one line, for "
    "[..., tokens, d] tensors",
    explain="it matches F.scaled_dot_product_attention with queries and keys of "
    "different counts and values of a different width: the scores are scaled by "
    "sqrt(d_k) and each query's softmax runs over the keys (dim=-1).",
)
def _ch2_attention(attention) -> str | None:
    import math

    if not callable(attention):
        return (
            f"the answer is a function attention(q, k, v), got a "
            f"{type(attention).__name__}"
        )
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 3, 5, 8, generator=g)  # [batch, heads, tokens_q, d_k]
    k = torch.randn(2, 3, 6, 8, generator=g)  # [batch, heads, tokens_k, d_k]
    v = torch.randn(2, 3, 6, 4, generator=g)  # [batch, heads, tokens_k, d_v]
    out = attention(q, k, v)
    if not isinstance(out, torch.Tensor):
        return f"attention returned a {type(out).__name__}, not a tensor"
    want = F.scaled_dot_product_attention(q, k, v)
    if out.shape != want.shape:
        return (
            f"the output has shape {tuple(out.shape)} for 5 queries, 6 keys and values "
            f"of width 4; expected {tuple(want.shape)}, [..., tokens_q, d_v]"
        )
    if _close(out, want):
        return None
    scores = q @ k.transpose(-2, -1)  # [2, 3, 5, 6]
    if _close(out, scores.softmax(-1) @ v):
        return "the scores are not scaled: divide them by sqrt(d_k) = sqrt(q.shape[-1])"
    if _close(out, (scores / 8).softmax(-1) @ v):
        return "that divides by d_k; divide by its square root, sqrt(d_k)"
    if _close(out, (scores / math.sqrt(8)).softmax(-2) @ v):
        return (
            "the softmax runs over the queries (dim=-2): each query's weights must sum "
            "to 1 over the keys, dim=-1"
        )
    if _close(out, (scores / 2).softmax(-1) @ v):
        return "that scales by sqrt(d_v), the values' width; d_k is the queries' width"
    diff = (out - want).abs().max().item()
    return f"your output differs from softmax(q k^T / sqrt(d_k)) v by up to {diff:.3f}"


# ---------------------------------------------------------------------------- chapter 6


@exercise(
    "ch6-absorb",
    task="the weight and bias that make a Linear layer on raw pixels equal the same "
    "layer on normalised pixels",
    explain="W (x - mu) / sigma + b = (W / sigma) x + (b - (mu / sigma) W 1): divide "
    "the weight by sigma and subtract (mu / sigma) times each row's sum from the bias. "
    "Normalisation is a change of parameters the first layer can absorb exactly.",
)
def _ch6_absorb(absorb) -> str | None:
    if not callable(absorb):
        return (
            "the answer is a function absorb(W, b, mu, sigma) returning (weight, bias), "
            f"got a {type(absorb).__name__}"
        )
    g = torch.Generator().manual_seed(6)
    W, b = torch.randn(32, 49, generator=g), torch.randn(32, generator=g)  # [out, in]
    mu, sigma = 0.1307, 0.3081
    answer = absorb(W.clone(), b.clone(), mu, sigma)
    if not (isinstance(answer, tuple | list) and len(answer) == 2):
        return "return two tensors: (weight, bias)"
    W_raw, b_raw = answer
    if not isinstance(W_raw, torch.Tensor) or not isinstance(b_raw, torch.Tensor):
        return "return two tensors: (weight, bias)"
    if W_raw.shape != W.shape:
        return (
            f"the weight has shape {tuple(W_raw.shape)}, the layer's {tuple(W.shape)} "
            "([out, in]): scale it, do not reduce it"
        )
    if b_raw.shape != b.shape:
        return (
            f"the bias has shape {tuple(b_raw.shape)}, the layer's {tuple(b.shape)}: "
            "one number per output, so sum each row of W (dim=1), not each column"
        )
    x = torch.rand(8, 49, generator=g)  # raw pixels in [0, 1]
    want = F.linear((x - mu) / sigma, W, b)
    if _close(F.linear(x, W_raw, b_raw), want):
        return None
    if not _close(W_raw, W / sigma):
        if _close(W_raw, W * sigma):
            return "the weight is multiplied by sigma: divide it by sigma"
        return "the weight should be W / sigma (the division by sigma moves into W)"
    if _close(b_raw, b):
        return (
            "the bias is unchanged: the subtraction of mu also moves into the bias, "
            "b - (mu / sigma) * W.sum(dim=1)"
        )
    if _close(b_raw, b + (mu / sigma) * W.sum(dim=1)):
        return "the bias correction has the wrong sign: subtract (mu / sigma) * W.sum(1)"
    if _close(b_raw, b - mu * W.sum(dim=1)):
        return "the bias correction needs mu / sigma, not mu: the pixels are divided too"
    got = F.linear(x, W_raw, b_raw)
    return (
        f"on random raw images your layer's outputs differ from the normalised layer's "
        f"by up to {(got - want).abs().max():.3f}"
    )


# ---------------------------------------------------------------------------- chapter 5


def _raw_digits() -> torch.Tensor:
    """[3, 28, 28] uint8 pixels 0..255, mostly blank like MNIST, the same every check."""
    g = torch.Generator().manual_seed(5)
    raw = torch.randint(0, 256, (3, 28, 28), generator=g, dtype=torch.uint8)
    blank = torch.rand(3, 28, 28, generator=g) < 0.8
    return raw.masked_fill(blank, 0)


@exercise(
    "ch5-normalise",
    task="map raw uint8 digits [N, 28, 28] to the model's input [N, 1, 28, 28]",
    explain="pixels scaled to [0, 1], then standardised with the training set's mean "
    "and std, (x / 255 - MNIST_MEAN) / MNIST_STD, with the channel dimension the "
    "model expects: a blank pixel becomes the negative background value.",
)
def _ch5_normalise(normalise) -> str | None:
    from companion.data import MNIST_MEAN, MNIST_STD

    if not callable(normalise):
        return (
            f"the answer is a function normalise(raw), got a {type(normalise).__name__}"
        )
    raw = _raw_digits()
    out = normalise(raw.clone())
    if not isinstance(out, torch.Tensor):
        return f"normalise(raw) returned a {type(out).__name__}, not a tensor"
    if not out.is_floating_point():
        return (
            f"the output is {out.dtype}: integer pixels cannot hold the normalised "
            "values; divide (raw / 255 gives floats) before subtracting the mean"
        )
    out = out.float()
    if out.shape == raw.shape:
        return (
            f"the output has shape {tuple(out.shape)}: the model takes "
            "[N, 1, 28, 28]; add the channel dimension with .unsqueeze(1)"
        )
    if out.shape != (3, 1, 28, 28):
        return f"the output has shape {tuple(out.shape)}, expected (3, 1, 28, 28)"
    x = raw.float().unsqueeze(1)
    candidates = {
        None: (x / 255 - MNIST_MEAN) / MNIST_STD,
        "the pixels are standardised without being scaled to [0, 1] first: divide "
        "by 255 (the constants are statistics of pixels in [0, 1])": (x - MNIST_MEAN)
        / MNIST_STD,
        "the pixels are scaled to [0, 1] but not standardised: subtract MNIST_MEAN "
        "and divide by MNIST_STD": x / 255,
        "mean and std are swapped: subtract MNIST_MEAN, divide by MNIST_STD": (
            x / 255 - MNIST_STD
        )
        / MNIST_MEAN,
        "only the mean is divided by the std (operator precedence): put parentheses "
        "around x / 255 - MNIST_MEAN": x / 255 - MNIST_MEAN / MNIST_STD,
    }
    for hint, expected in candidates.items():
        if torch.allclose(out, expected, atol=1e-4, rtol=1e-4):
            return hint
    background = out[x == 0]
    return (
        f"your blank pixels become {background.min():.4f} to {background.max():.4f} "
        f"and your largest value is {out.max():.4f}; the normalised background is "
        f"{-MNIST_MEAN / MNIST_STD:.4f} and a full-ink pixel "
        f"{(1 - MNIST_MEAN) / MNIST_STD:.4f}"
    )


# ---------------------------------------------------------------------------- chapter 7


@exercise(
    "ch7-causal-mask",
    task="return the [T, T] boolean causal mask (True: the query may attend to the key)",
    explain="row t is True at columns 0..t and False after t: every query sees itself "
    "and the tokens before it, never a later one, in the convention of "
    "F.scaled_dot_product_attention (True = may attend).",
)
def _ch7_causal_mask(causal_mask) -> str | None:
    if not callable(causal_mask):
        return (
            f"the answer is a function causal_mask(T), got a "
            f"{type(causal_mask).__name__}"
        )
    for T in (5, 8, 1):
        mask = causal_mask(T)
        if not isinstance(mask, torch.Tensor):
            return f"causal_mask({T}) returned a {type(mask).__name__}, not a tensor"
        if mask.shape != (T, T):
            return (
                f"causal_mask({T}) has shape {tuple(mask.shape)}: it should be "
                f"[queries, keys] = ({T}, {T})"
            )
        if mask.dtype != torch.bool:
            return (
                f"the mask is {mask.dtype}: make it boolean (dtype=torch.bool), True "
                "where attention is allowed"
            )
        right = torch.ones(T, T, dtype=torch.bool).tril()
        if torch.equal(mask, right):
            continue
        if torch.equal(mask, ~right):
            return (
                "True is where attention is BLOCKED here (nn.MultiheadAttention's "
                "convention): the companion's mask is True where a query may attend"
            )
        if torch.equal(mask, right.T):
            return (
                "that is the upper triangle: query t would see the tokens after it "
                "(the future) and not those before it. Use tril, not triu"
            )
        if torch.equal(mask, right.tril(-1)):
            return (
                "the diagonal is blocked: query t must see its own position (token 0 "
                "would have nothing to attend to). Use tril() with diagonal=0"
            )
        leaks = int((mask & ~right).sum())
        missing = int((~mask & right).sum())
        return (
            f"for T = {T}, {leaks} entries let a query see a later key and {missing} "
            "block a key at or before the query; row t should be True at columns 0..t"
        )
    return None


# ---------------------------------------------------------------------------- chapter 8


@exercise(
    "ch8-ffn",
    task="the Spanish encoder's MLP, Linear(49, 196) then Linear(196, 49), made nonlinear",
    explain="an activation between the two Linear layers makes the MLP a nonlinear "
    "function of each token (f(a + b) is no longer f(a) + f(b) - f(0)), so the "
    "detour through 196 features can compute what one Linear(49, 49) cannot.",
)
def _ch8_ffn(ffn) -> str | None:
    if not callable(ffn):
        return f"the answer is a module (an nn.Sequential), got {ffn!r}"
    if isinstance(ffn, torch.nn.Module):
        shapes = [
            (m.in_features, m.out_features)
            for m in ffn.modules()
            if isinstance(m, torch.nn.Linear)
        ]
        if shapes != [(49, 196), (196, 49)]:
            return (
                f"its Linear layers are {shapes or 'none'}: keep the post's two, "
                "Linear(49, 196) and Linear(196, 49), and add what goes between them"
            )
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(2, 16, 49, generator=g), torch.randn(2, 16, 49, generator=g)
    with torch.no_grad():
        out = ffn(a)
        if not isinstance(out, torch.Tensor) or out.shape != a.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            return f"[2, 16, 49] tokens came out as {shape}: keep [batch, tokens, 49]"
        zero = ffn(torch.zeros_like(a))
        additive = ffn(a + b) - ffn(b) - (out - zero)
    if additive.abs().max() < 1e-4 * max(1.0, out.abs().max().item()):
        return (
            "it is still one linear map: f(a + b) = f(a) + f(b) - f(0) on random "
            "tokens. Put an activation (nn.GELU() or nn.ReLU()) between the two "
            "Linear layers"
        )
    return None
