"""companion.doctor: every bug of the zoo is caught with its own code, correct models pass,
nothing is disturbed; the registry of checks; the sequence and attention checks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer

from companion import (
    GPT,
    GPTConfig,
    PatchEmbedding,
    Seq2Seq,
    SinusoidalPositionalEncoding,
    ViT,
    ViTConfig,
)
from companion.baselines import MLP, ExampleCNN
from companion.bugs import (
    BUDGET,
    SMALL,
    ZOO,
    AlwaysDropout,
    LayerNormNoMean,
    leftover_bytes,
    vit_torch_attention,
)
from companion.data import mnist_subset
from companion.doctor import (
    CHECKS,
    CODES,
    CheckResult,
    Context,
    Finding,
    Report,
    check,
    diagnose,
)
from companion.train import evaluate, loader, train_model


def images(n=16, channels=1, size=28, seed=0):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def labels(n=16):
    return torch.arange(n) % 10


# The checks that need what image classifiers do not have: token targets, attention, Linears.
SEQUENCE_CODES = ("future-leak", "not-token-attention", "linear-ffn")
CLASSIC_CODES = tuple(c for c in CODES if c not in SEQUENCE_CODES)


# ---------------------------------------------------------------------------------------------
# Correct models of several families: none may be flagged
# ---------------------------------------------------------------------------------------------


class MNISTNet(nn.Module):
    """The CNN of the PyTorch examples' MNIST script (ends in log_softmax, trained with nll_loss)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.relu(self.fc1(torch.flatten(self.dropout1(x), 1)))
        return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)


class GapCNN(nn.Module):
    """Convolutions, BatchNorm and global average pooling: translation-equivariant, not position-blind."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)


class TorchEncoderViT(nn.Module):
    """Patches + learned positions + nn.TransformerEncoder(batch_first=True) + mean pooling."""

    def __init__(self, norm_first=True, dropout=0.1, dim=32):
        super().__init__()
        self.patches = PatchEmbedding(28, 7, 1, dim)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.encoder(self.patches(x) + self.pos).mean(dim=1))


def torchvision_vit(size=28, random_head=True):
    """torchvision's VisionTransformer, small; 28x28 MNIST gets a 1 -> 3 channel adapter.

    torchvision initialises the head to zeros, which makes every output 0 at initialization;
    with random_head the comparisons between outputs measure something.
    """
    if size == 28:
        vit = VisionTransformer(image_size=28, patch_size=7, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
        model = nn.Sequential(nn.Conv2d(1, 3, kernel_size=1), vit)
    else:
        vit = VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
        model = vit
    if random_head:
        nn.init.normal_(vit.heads.head.weight, std=0.02)
    return model


def vit(**kw):
    return ViT(ViTConfig(**{**SMALL.to_dict(), **kw}))


CORRECT = {
    "vit-cls": lambda: vit(),
    "vit-mean": lambda: vit(pool="mean"),
    "vit-cls-dropout": lambda: vit(dropout=0.1),
    "vit-mean-dropout": lambda: vit(pool="mean", dropout=0.2),
    "vit-default": lambda: ViT(),
    "torch-encoder-prenorm": lambda: TorchEncoderViT(norm_first=True),
    "torch-encoder-postnorm": lambda: TorchEncoderViT(norm_first=False),
    "torchvision-vit-28": lambda: torchvision_vit(28),
    "mnist-cnn": MNISTNet,
    "gap-cnn": GapCNN,
    "mha-transposed": lambda: vit_torch_attention(batch_first=False, transpose=True),
    "mha-batch-first": lambda: vit_torch_attention(batch_first=True),
}
LOSS = {"mnist-cnn": F.nll_loss}  # the CNN ends in log_softmax


@pytest.mark.parametrize("name", CORRECT)
def test_correct_models_get_an_empty_report(name):
    model = CORRECT[name]()
    report = diagnose(model, images(), labels(), LOSS.get(name, F.cross_entropy))
    assert report.ok, str(report)
    # the comparisons really ran (an empty report from skipped checks would prove nothing)
    expected_skips = {"future-leak"}  # class labels, not token targets
    if name.endswith("cnn"):
        expected_skips |= {"unnormalized-norm", "not-token-attention"}  # no LayerNorm, attention
    if name == "gap-cnn":
        expected_skips.add("linear-ffn")  # a single nn.Linear
    assert set(report.skipped) == expected_skips, str(report)
    assert set(report.checked) == set(CODES) - expected_skips


def test_torchvision_vit_32_rgb_and_zero_head_are_not_flagged():
    report = diagnose(torchvision_vit(32), images(8, 3, 32), labels(8), F.cross_entropy)
    assert report.ok and set(report.skipped) == {"future-leak"}, str(report)
    zero_head = diagnose(torchvision_vit(28, random_head=False), images(), labels(), F.cross_entropy)
    assert zero_head.ok and "position-blind" in zero_head.skipped  # every output is 0: nothing to compare


# ---------------------------------------------------------------------------------------------
# The zoo: each buggy twin is flagged with its code and only that code; each fixed twin passes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bug", ZOO, ids=lambda b: b.name)
def test_each_bug_is_flagged_with_its_code_only_and_its_fix_is_clean(bug):
    x, y = images(), labels()
    buggy = diagnose(bug.build(), x, y, bug.loss())
    assert buggy.codes == [bug.code], str(buggy)
    finding = buggy.findings[0]
    assert finding.where and any(ch.isdigit() for ch in finding.message)  # says where, and what it measured
    fixed = diagnose(bug.build(fixed=True), x, y, bug.loss(fixed=True))
    assert fixed.ok, str(fixed)


def test_zoo_is_flagged_on_a_real_mnist_batch_too(mnist_root):
    data = mnist_subset(test_size=2000, root=mnist_root)
    x, y = next(iter(loader(data.train, BUDGET.batch_size)))
    x, y = x[:16], y[:16]
    for bug in ZOO:
        assert diagnose(bug.build(), x, y, bug.loss()).codes == [bug.code], bug.name
        assert diagnose(bug.build(fixed=True), x, y, bug.loss(fixed=True)).ok, bug.name


def test_zoo_covers_every_classic_code_and_the_tests_here_the_others():
    codes = [bug.code for bug in ZOO]
    assert set(codes) == set(CLASSIC_CODES) and len({bug.name for bug in ZOO}) == len(ZOO)
    planted = {  # the planted-bug tests of the sequence and attention checks, below
        "future-leak": test_future_leak_flags_the_toy_encoder_decoder_fed_its_targets,
        "not-token-attention": test_not_token_attention_flags_attention_across_features,
        "linear-ffn": test_linear_ffn_flags_linears_back_to_back,
    }
    assert set(planted) == set(SEQUENCE_CODES)


def test_twins_start_from_the_same_weights_where_the_bug_allows():
    for name in ("layernorm-no-mean", "layernorm-parens", "shared-norm", "dropout-in-eval", "mha-batch-first"):
        bug = next(b for b in ZOO if b.name == name)
        a, b = bug.build().state_dict(), bug.build(fixed=True).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# ---------------------------------------------------------------------------------------------
# Each check on its own, beyond the zoo
# ---------------------------------------------------------------------------------------------


def test_nonfinite_parameter_and_output():
    model = vit()
    with torch.no_grad():
        model.head.bias[3] = float("nan")
    report = diagnose(model, images())
    assert report.codes == ["nonfinite-parameter"] and report.findings[0].where == "head.bias"

    class LogOfNegative(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 10)

        def forward(self, x):
            return torch.log(self.lin(x.flatten(1)))  # NaN wherever the linear output is negative

    report = diagnose(LogOfNegative(), images())
    assert report.codes == ["nonfinite-parameter"] and report.findings[0].where == "outputs"


def test_leftover_bytes_look_like_uninitialised_memory():
    garbage = leftover_bytes(1, 1, 4096)
    again = leftover_bytes(1, 1, 4096)
    assert garbage.dtype == torch.float32 and torch.equal(garbage.view(torch.int32), again.view(torch.int32))  # NaN != NaN
    huge = (garbage.abs() > 1e6) & torch.isfinite(garbage)
    assert 0.3 < huge.float().mean() < 0.6 and (~torch.isfinite(garbage)).sum() > 0


def test_functional_batch_statistics_are_batch_mixing_but_batchnorm_in_eval_is_not():
    class CentreOnBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 10)

        def forward(self, x):
            h = self.lin(x.flatten(1))
            return h - h.mean(dim=0)  # uses the other samples

    assert diagnose(CentreOnBatch(), images()).codes == ["batch-mixing"]
    model = GapCNN().train()  # BatchNorm mixes the batch in train mode; diagnose evaluates in eval mode
    assert diagnose(model, images()).ok


def test_dropout_that_ignores_eval_is_found_and_located():
    model = vit(dropout=0.1)
    model.encoder.blocks[1].drop2 = AlwaysDropout(0.1)
    report = diagnose(model, images())
    assert report.codes == ["dropout-in-eval"]
    assert report.findings[0].where.startswith("encoder.blocks.1.drop2")


class TokenModel(nn.Module):
    """Token ids [batch, tokens] -> per-token logits [batch, tokens, vocab] (or pooled [batch, vocab])."""

    def __init__(self, positions: bool, causal: bool = False, pool: bool = False, vocab=20, dim=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = SinusoidalPositionalEncoding(dim) if positions else nn.Identity()
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(dim, 2, 32, 0.0, batch_first=True), 1, enable_nested_tensor=False
        )
        self.head = nn.Linear(dim, vocab)
        self.causal, self.pool = causal, pool

    def forward(self, ids):
        n = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n) if self.causal else None
        h = self.encoder(self.pos(self.embed(ids)), mask=mask, is_causal=self.causal)
        return self.head(h.mean(dim=1) if self.pool else h)


@pytest.mark.parametrize(
    "positions, causal, pool, blind",
    [(False, False, False, True), (False, False, True, True), (True, False, False, False), (False, True, False, False)],
    ids=["no-pos-per-token", "no-pos-pooled", "sinusoidal", "causal-mask-no-pos"],
)
def test_position_blindness_on_token_inputs(positions, causal, pool, blind):
    ids = torch.randint(0, 20, (8, 12), generator=torch.Generator().manual_seed(0))
    report = diagnose(TokenModel(positions, causal, pool), ids)
    assert report.codes == (["position-blind"] if blind else []), str(report)


def test_norm_detection_is_generic_and_respects_affine_and_rms():
    class MyNorm(nn.Module):  # any leaf module with "Norm" in its class name is checked
        def __init__(self, dim):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x / x.norm(dim=-1, keepdim=True) * self.scale  # unit length, not unit variance: a bug

    class PreNorm(nn.Module):  # a wrapper whose name contains "Norm": its output is not normalized, by design
        def __init__(self, dim, fn):
            super().__init__()
            self.norm, self.fn = nn.LayerNorm(dim), fn

        def forward(self, x):
            return self.fn(self.norm(x))

    def model_with(norm):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 24), norm, nn.Linear(24, 10))

    assert diagnose(model_with(MyNorm(24)), images()).codes == ["unnormalized-norm"]
    assert diagnose(model_with(PreNorm(24, nn.Sequential(nn.Linear(24, 24), nn.GELU()))), images()).ok
    assert diagnose(model_with(nn.RMSNorm(24)), images()).ok
    assert diagnose(model_with(nn.BatchNorm1d(24)), images()).ok
    trained_looking = nn.LayerNorm(24)
    with torch.no_grad():  # weight and bias far from 1 and 0: undone before measuring
        trained_looking.weight.uniform_(0.5, 2.0)
        trained_looking.bias.normal_(0, 1.0)
    assert diagnose(model_with(trained_looking), images()).ok
    buggy = LayerNormNoMean(24)
    with torch.no_grad():
        buggy.weight.uniform_(0.5, 2.0)
    report = diagnose(model_with(buggy), images())
    assert report.codes == ["unnormalized-norm"] and report.findings[0].where == "2"


def test_loss_check_knows_log_probabilities_from_logits():
    model = vit()
    x, y = images(), labels()
    assert diagnose(model, x, y, F.nll_loss).codes == ["loss-not-log-prob"]
    assert diagnose(model, x, y, F.cross_entropy).ok
    log_probs = nn.Sequential(vit(), nn.LogSoftmax(dim=-1))
    assert diagnose(log_probs, x, y, F.nll_loss).ok
    assert diagnose(log_probs, x, y, F.cross_entropy).ok  # log_softmax twice is harmless
    assert diagnose(model, x, F.one_hot(y, 10).float(), F.mse_loss).ok  # not a log-probability loss at all
    message = diagnose(model, x, y, F.nll_loss).findings[0].message
    assert f"ln(10) = {math.log(10):.2f}" in message and "F.cross_entropy" in message


def test_unused_parameter_without_a_loss_uses_a_random_projection():
    model = vit()
    model.spare = nn.Linear(4, 4)  # created, never used in forward
    report = diagnose(model, images())
    assert report.codes == ["unused-parameter"] and report.findings[0].where == "spare.weight, spare.bias"


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 2 samples"):
        diagnose(vit(), images(1))
    with pytest.raises(TypeError, match="inputs must be a tensor .* got list; pass tuple"):
        diagnose(vit(), [images()])
    with pytest.raises(ValueError, match=r"same number of samples .* \[16, 8\]"):
        diagnose(vit(), (images(), images(8)))
    with pytest.raises(TypeError, match="item 1 is a NoneType"):
        diagnose(vit(), (images(), None))
    with pytest.raises(ValueError, match="empty tuple"):
        diagnose(vit(), ())


# ---------------------------------------------------------------------------------------------
# diagnose leaves the model and the random generators as it found them
# ---------------------------------------------------------------------------------------------


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {name: m.training for name, m in model.named_modules()},
        {name: (None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()},
        {name: p.requires_grad for name, p in model.named_parameters()},
    )


def assert_same(before, after):
    (s0, m0, g0, r0), (s1, m1, g1, r1) = before, after
    assert s0.keys() == s1.keys() and all(torch.equal(s0[k], s1[k]) for k in s0)
    assert m0 == m1 and r0 == r1
    assert all((g0[k] is None and g1[k] is None) or torch.equal(g0[k], g1[k]) for k in g0)


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("name", ["dropout-in-eval", "empty-cls", "mha-batch-first", "gap-cnn"])
def test_diagnose_leaves_parameters_modes_grads_and_rng_unchanged(name, mode):
    model = GapCNN() if name == "gap-cnn" else next(b for b in ZOO if b.name == name).build()
    model.train(mode != "eval")
    if mode == "mixed":
        list(model.children())[0].eval()
    if name == "gap-cnn":  # give it gradients and running statistics worth protecting
        F.cross_entropy(model(images()), labels()).backward()
    before = snapshot(model)
    rng = torch.get_rng_state()
    diagnose(model, images(), labels(), F.cross_entropy)
    assert torch.equal(torch.get_rng_state(), rng)
    assert_same(before, snapshot(model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_diagnose_on_cuda_restores_the_cuda_generator_and_finds_the_same_bugs():
    for bug in ZOO:
        model = bug.build().cuda()
        rng, cpu_rng = torch.cuda.get_rng_state(), torch.get_rng_state()
        report = diagnose(model, images(), labels(), bug.loss())  # CPU inputs are moved to the model
        assert report.codes == [bug.code], (bug.name, str(report))
        assert torch.equal(torch.cuda.get_rng_state(), rng) and torch.equal(torch.get_rng_state(), cpu_rng)
        assert diagnose(bug.build(fixed=True).cuda(), images(), labels(), bug.loss(fixed=True)).ok, bug.name


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def test_report_renders_as_text_and_markdown_deterministically():
    bug = next(b for b in ZOO if b.name == "shared-norm")
    a, b = (diagnose(bug.build(), images(), labels(), F.cross_entropy) for _ in range(2))
    assert str(a) == str(b) == repr(a) and a._repr_markdown_() == b._repr_markdown_()
    assert str(a).startswith("doctor: 1 finding (9 checks ran)")
    assert "[unused-parameter] at encoder.blocks.0.norm2.weight" in str(a)
    assert "`unused-parameter`" in a._repr_markdown_()
    clean = diagnose(vit(), images(), labels(), F.cross_entropy)
    assert str(clean) == (
        "doctor: no findings (9 checks ran)\n  (skipped future-leak: the targets (16,) are not "
        "token ids shaped like the last input (16, 1, 28, 28) (not sequence training))"
    )
    assert clean.ok and clean.codes == []
    text = a.explain(width=60)
    assert text.startswith("doctor: 1 finding (9 checks ran)\n\n1. [unused-parameter] at ")
    assert max(len(line) for line in text.splitlines()) <= 60 and "skipped future-leak" in text
    assert Report([Finding("batch-mixing", "m", "x")]).codes == ["batch-mixing"]


# ---------------------------------------------------------------------------------------------
# Training: a fixed twin learns where a harmful bug does not, under the chapter's budget
# ---------------------------------------------------------------------------------------------


_RUNS: dict = {}


def brief(bug, fixed, data):
    key = (bug.fixed, bug.fixed_loss) if fixed else (bug.name,)
    if key not in _RUNS:
        model = bug.build(fixed=fixed)
        torch.manual_seed(0)  # the same dropout masks for every run, as chapter 4 trains them
        train_model(model, data.train, BUDGET, seed=0, loss_fn=bug.loss(fixed), device="cpu", progress=False)
        _RUNS[key] = evaluate(model, data.test_loader(), bug.loss(fixed), "cpu")
    return _RUNS[key]


@pytest.fixture(scope="module")
def data(mnist_root):
    return mnist_subset(test_size=2000, root=mnist_root)


@pytest.mark.slow
@pytest.mark.parametrize("bug", [b for b in ZOO if b.hurts], ids=lambda b: b.name)
def test_fixed_twin_learns_where_its_buggy_twin_does_not(bug, data):
    # (the bugs that do not hurt in this budget are trained and checked in chapter 4's summary cell)
    buggy, fixed = brief(bug, False, data)["accuracy"], brief(bug, True, data)["accuracy"]
    assert fixed >= 0.45, fixed  # chance is 0.10; measured 0.60-0.68 after 160 steps
    assert fixed - buggy >= 0.15, (buggy, fixed)  # measured gaps: 0.25 (parens on raw pixels) to 0.59


# ---------------------------------------------------------------------------------------------
# The registry: one function per check
# ---------------------------------------------------------------------------------------------


def test_every_code_is_one_registered_check_listed_in_the_module_doc():
    import companion.doctor as doctor

    assert CODES == tuple(CHECKS) and len(set(CODES)) == len(CODES) == 10
    assert CODES[: len(CLASSIC_CODES)] == CLASSIC_CODES  # the new checks run after the old
    for code, fn in CHECKS.items():
        assert callable(fn) and f"``{code}``" in doctor.__doc__, code
    with pytest.raises(ValueError, match="already registered"):
        check("batch-mixing")(lambda ctx: CheckResult.done())


def test_adding_a_check_is_adding_one_function():
    @check("wide-output")
    def check_wide_output(ctx: Context) -> CheckResult:
        if ctx.y.dim() != 2:
            return CheckResult.skip("outputs are not [batch, classes]")
        wide = ctx.y.shape[1] > 5
        return CheckResult.done(Finding("wide-output", f"{ctx.y.shape[1]} outputs") if wide else None)

    try:
        report = diagnose(vit(), images(), labels(), F.cross_entropy)
        assert report.codes == ["wide-output"] and report.checked[-1] == "wide-output"
        tokens = diagnose(TokenModel(True), torch.randint(0, 20, (8, 12)))
        assert tokens.skipped["wide-output"] == "outputs are not [batch, classes]"
    finally:
        del CHECKS["wide-output"]


def test_a_check_that_stops_ends_the_run():
    model = vit()
    with torch.no_grad():
        model.head.bias[3] = float("nan")
    report = diagnose(model, images(), labels(), F.cross_entropy)
    assert report.checked == ["nonfinite-parameter"] and not report.skipped
    assert str(report).startswith("doctor: 1 finding (1 check ran)")


# ---------------------------------------------------------------------------------------------
# Several inputs: model(*inputs)
# ---------------------------------------------------------------------------------------------


def seq_ce(logits, targets):
    """Cross-entropy for per-token logits [batch, tokens, vocab] and targets [batch, tokens]."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def test_a_single_tensor_and_a_one_tuple_give_the_same_report():
    x, y = images(), labels()
    for bug in ZOO[:3]:
        assert str(diagnose(bug.build(), x, y, bug.loss())) == str(diagnose(bug.build(), (x,), y, bug.loss()))


def test_batch_mixing_is_found_through_any_of_several_inputs():
    class TwoInputs(nn.Module):
        def __init__(self, mix: bool):
            super().__init__()
            self.lin, self.emb, self.mix = nn.Linear(784, 10), nn.Embedding(5, 10), mix

        def forward(self, image, tag):  # [batch, 1, 28, 28], [batch] -> [batch, 10]
            t = self.emb(tag)
            return self.lin(image.flatten(1)) + (t.mean(dim=0) if self.mix else t)

    tags = torch.arange(16) % 4  # sample 15 differs from sample 0 in both inputs
    assert diagnose(TwoInputs(mix=True), (images(), tags)).codes == ["batch-mixing"]
    assert diagnose(TwoInputs(mix=False), (images(), tags)).ok


def test_per_token_log_probabilities_are_recognised_on_the_last_axis():
    ids = torch.randint(0, 20, (8, 13), generator=torch.Generator().manual_seed(0))
    x, y = ids[:, :-1], ids[:, 1:]

    def seq_nll(logp, t):
        return F.nll_loss(logp.flatten(0, 1), t.flatten())

    log_probs = nn.Sequential(TokenModel(True, causal=True), nn.LogSoftmax(dim=-1))
    assert diagnose(log_probs, x, y, seq_nll).ok
    report = diagnose(TokenModel(True, causal=True), x, y, seq_nll)
    assert report.codes == ["loss-not-log-prob"] and "over the 20 classes" in report.findings[0].message


# ---------------------------------------------------------------------------------------------
# future-leak
# ---------------------------------------------------------------------------------------------


class ToyEncoderDecoder(nn.Module):
    """The learners' toy model (chapter 7): one embedding shared by source and target, an
    nn.Transformer, a Linear to 2 classes; no positions and no causal mask (smaller here)."""

    def __init__(self, vocab=2, dim=32, heads=4, layers=2, causal=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.transformer = nn.Transformer(dim, heads, layers, layers, 64, dropout=0.0, batch_first=True)
        self.out = nn.Linear(dim, vocab)
        self.causal = causal

    def forward(self, src, tgt):  # [batch, S], [batch, T] -> [batch, T, vocab]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1]) if self.causal else None
        h = self.transformer(self.embed(src), self.embed(tgt), tgt_mask=mask, tgt_is_causal=self.causal)
        return self.out(h)


class TorchDecoderModel(nn.Module):
    """Encoder-decoder from nn.TransformerEncoder/nn.TransformerDecoder, learned positions,
    a causal tgt_mask: a correct model."""

    def __init__(self, vocab=20, dim=32, max_len=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.1)
        enc = nn.TransformerEncoderLayer(dim, 2, 64, 0.0, batch_first=True)
        dec = nn.TransformerDecoderLayer(dim, 2, 64, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc, 1, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec, 2)
        self.head = nn.Linear(dim, vocab)

    def forward(self, src, tgt_in):
        memory = self.encoder(self.embed(src) + self.pos[:, : src.shape[1]])
        n = tgt_in.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n)
        h = self.decoder(self.embed(tgt_in) + self.pos[:, :n], memory, tgt_mask=mask, tgt_is_causal=True)
        return self.head(h)


def token_batch(batch=8, tokens=12, vocab=20, seed=0):
    return torch.randint(0, vocab, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def next_token(batch=8, tokens=12, vocab=20):
    """(inputs, targets) of next-token training: targets[:, t] == inputs[:, t + 1]."""
    ids = token_batch(batch, tokens + 1, vocab)
    return ids[:, :-1], ids[:, 1:]


def translation(batch=8, src_len=10, tgt_len=9, vocab=20, start=0):
    """((src, tgt_in), targets) of teacher forcing: tgt_in is the target shifted right."""
    src = token_batch(batch, src_len, vocab, seed=1)
    tgt = token_batch(batch, tgt_len, vocab, seed=2).clamp(min=1)
    tgt_in = torch.cat([torch.full((batch, 1), start), tgt[:, :-1]], dim=1)
    return (src, tgt_in), tgt


def test_future_leak_flags_the_toy_encoder_decoder_fed_its_targets():
    source = torch.tensor([[1, 0] * 5] * 4)  # the learners' single source, 4 times
    target = source[:, 1:]  # fed both as the decoder's input and as the labels
    report = diagnose(ToyEncoderDecoder(), (source, target), target, seq_ce)
    assert report.codes == ["future-leak"], str(report)  # (all samples equal: no position check)
    message = report.findings[0].message
    assert "the targets are the last input itself" in message and "no causal mask either" in message
    assert "shifted right behind a start token" in message
    assert report.findings[0].where.startswith("transformer.decoder.layers.0.self_attn")
    # random binary sequences: it is also position-blind (no positional encoding)
    src = token_batch(8, 10, vocab=2)
    report = diagnose(ToyEncoderDecoder(), (src, src[:, 1:]), src[:, 1:], seq_ce)
    assert report.codes == ["position-blind", "future-leak"], str(report)


def test_future_leak_sees_the_target_fed_even_with_a_causal_mask():
    src = token_batch(8, 10, vocab=2)
    report = diagnose(ToyEncoderDecoder(causal=True), (src, src[:, 1:]), src[:, 1:], seq_ce)
    assert report.codes == ["future-leak"], str(report)
    assert "no causal mask either" not in report.findings[0].message and report.findings[0].where == "model"


def test_future_leak_flags_a_decoder_only_model_without_a_mask():
    x, y = next_token()
    report = diagnose(TokenModel(positions=True, causal=False), x, y, seq_ce)
    assert report.codes == ["future-leak"], str(report)
    finding = report.findings[0]
    assert "shifted by 1" in finding.message and "8 of 8 cut positions leak" in finding.message
    assert finding.where == "encoder.layers.0.self_attn (MultiheadAttention)"


@pytest.mark.parametrize("name", ["gpt", "seq2seq", "torch-decoder", "causal-encoder-stack"])
def test_future_leak_finds_nothing_in_causal_models(name):
    if name == "gpt":
        model = GPT(GPTConfig(vocab_size=20, block_size=16, dim=32, depth=2, heads=2, mlp_dim=64))
        inputs, targets = next_token()
    elif name == "seq2seq":
        model = Seq2Seq(vocab_size=20, dim=32, depth=2, heads=2, mlp_dim=64, max_len=16)
        inputs, targets = translation()
    elif name == "torch-decoder":
        model = TorchDecoderModel()
        inputs, targets = translation()
    else:
        model = TokenModel(positions=True, causal=True)
        inputs, targets = next_token()
    report = diagnose(model, inputs, targets, seq_ce)
    assert report.ok and not report.skipped, str(report)  # every check ran, future-leak included


def test_future_leak_is_skipped_when_targets_are_not_the_shifted_input():
    report = diagnose(vit(), images(), labels(), F.cross_entropy)
    assert "not token ids shaped like the last input" in report.skipped["future-leak"]
    ids = token_batch()
    pooled = diagnose(TokenModel(True, pool=True), ids, torch.arange(8) % 20, F.cross_entropy)
    assert "future-leak" in pooled.skipped  # an encoder classifying whole sequences
    tags = token_batch(seed=5)  # per-token labels that are not the input shifted
    tagger = diagnose(TokenModel(True), ids, tags, seq_ce)
    assert tagger.ok and "not the last input shifted" in tagger.skipped["future-leak"]
    assert "needs targets" in diagnose(TokenModel(True), ids).skipped["future-leak"]


# ---------------------------------------------------------------------------------------------
# not-token-attention and linear-ffn: the Spanish encoder post (issue 14, case 3)
# ---------------------------------------------------------------------------------------------


class FeatureAttention(nn.Module):
    """The post's attention: key/query/value each Linear(49, 49 * 16), reshaped with
    view(B, L, 49, 16).transpose(1, 3), so the scores are [B, 16, 49, 49] over features;
    recombined with transpose(1, 2).contiguous().view(B, L, 49 * 16). ``fixed`` splits
    heads over tokens instead ([B, 16, L, L] scores)."""

    def __init__(self, dim=49, n_heads=16, fixed=False, causal=False):
        super().__init__()
        self.dim, self.n_heads, self.fixed, self.causal = dim, n_heads, fixed, causal
        self.key = nn.Linear(dim, dim * n_heads)
        self.query = nn.Linear(dim, dim * n_heads)
        self.value = nn.Linear(dim, dim * n_heads)
        self.proj = nn.Linear(dim * n_heads, dim)

    def heads(self, t, B, L):
        if self.fixed:
            return t.view(B, L, self.n_heads, self.dim).transpose(1, 2)  # [B, 16, L, 49]
        return t.view(B, L, self.dim, self.n_heads).transpose(1, 3)  # [B, 16, 49, L]: BUG

    def forward(self, x, causal=False):  # [B, L, 49] -> [B, L, 49]
        B, L, _ = x.shape
        k, q, v = (self.heads(f(x), B, L) for f in (self.key, self.query, self.value))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if causal:
            n = att.shape[-1]
            att = att.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        y = att.softmax(dim=-1) @ v
        y = y.transpose(1, 2).contiguous().view(B, L, self.dim * self.n_heads)
        return self.proj(y)


class PostBlock(nn.Module):
    def __init__(self, fixed=False):
        super().__init__()
        self.attn = FeatureAttention(fixed=fixed)
        self.ln1, self.ln2 = nn.LayerNorm(49), nn.LayerNorm(49)
        act = [nn.GELU()] if fixed else []  # BUG: no activation in the MLP
        self.mlp = nn.Sequential(nn.Linear(49, 196), *act, nn.Linear(196, 49))

    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class SpanishEncoder(nn.Module):
    """16 patch tokens of 49 pixels, Linear(49, 49) + learned positions initialised to
    zeros, 3 post-norm blocks, the 16 tokens flattened into Linear(784, 10)."""

    def __init__(self, fixed=False):
        super().__init__()
        self.embed = nn.Linear(49, 49)
        self.pos = nn.Parameter(torch.zeros(1, 16, 49))
        self.blocks = nn.Sequential(*(PostBlock(fixed) for _ in range(3)))
        self.head = nn.Linear(16 * 49, 10)

    def forward(self, images):  # [B, 1, 28, 28] -> [B, 10]
        B = images.shape[0]
        patches = images.view(B, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(B, 16, 49)
        return self.head(self.blocks(self.embed(patches) + self.pos).flatten(1))


def test_not_token_attention_flags_attention_across_features():
    report = diagnose(SpanishEncoder(), images(), labels(), F.cross_entropy)
    assert report.codes == ["not-token-attention", "linear-ffn"], str(report)
    attention = report.findings[0]
    assert attention.where == (
        "blocks.0.attn (FeatureAttention), blocks.1.attn (FeatureAttention), blocks.2.attn (FeatureAttention)"
    )
    assert "3 attention layer(s)" in attention.message and "transpose(1, 2)" in attention.message
    fixed = diagnose(SpanishEncoder(fixed=True), images(), labels(), F.cross_entropy)
    assert fixed.ok and "not-token-attention" in fixed.checked, str(fixed)


def test_not_token_attention_probes_causal_layers_on_the_last_token():
    class Causal(nn.Module):
        def __init__(self, fixed):
            super().__init__()
            self.embed, self.attn = nn.Embedding(20, 49), FeatureAttention(fixed=fixed)
            self.pos = nn.Parameter(torch.randn(1, 12, 49) * 0.1)
            self.head = nn.Linear(49, 20)

        def forward(self, ids):
            return self.head(self.attn(self.embed(ids) + self.pos, causal=True))

    x, y = next_token()
    buggy = diagnose(Causal(fixed=False), x, y, seq_ce)
    assert "not-token-attention" in buggy.codes, str(buggy)
    fixed = diagnose(Causal(fixed=True), x, y, seq_ce)
    assert fixed.ok and "not-token-attention" in fixed.checked, str(fixed)


def test_attention_called_with_a_padding_mask_is_not_probed():
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
            self.head = nn.Linear(16, 10)

        def forward(self, x):  # [batch, tokens, 16]
            pad = torch.zeros(x.shape[:2], dtype=torch.bool)
            pad[:, -1] = True
            return self.head(self.mha(x, x, x, key_padding_mask=pad)[0].mean(1))

    x = torch.randn(8, 6, 16)
    report = diagnose(Padded(), x)
    assert "mha (called with a mask)" in report.skipped["not-token-attention"], str(report)


def torchvision_vit_3ch():
    model = VisionTransformer(image_size=28, patch_size=7, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


NO_FALSE_POSITIVES = {
    "companion-vit": (vit, "images"),
    "companion-gpt": (lambda: GPT(GPTConfig(vocab_size=20, block_size=16, dim=32, depth=2, heads=2, mlp_dim=64)), "next"),
    "companion-seq2seq": (lambda: Seq2Seq(20, 32, 2, 2, 64, 16), "translation"),
    "mha-batch-first": (lambda: vit_torch_attention(batch_first=True), "images"),
    "mha-tokens-batch-dim": (lambda: vit_torch_attention(batch_first=False, transpose=True), "images"),
    "torch-encoder": (TorchEncoderViT, "images"),
    "torch-decoder": (TorchDecoderModel, "translation"),
    "torchvision-vit": (torchvision_vit_3ch, "images3"),
    "gap-cnn-batchnorm": (GapCNN, "images"),
    "example-cnn": (ExampleCNN, "images"),
    "mlp": (MLP, "images"),
}


@pytest.mark.parametrize("name", NO_FALSE_POSITIVES)
def test_attention_and_ffn_checks_find_nothing_in_correct_models(name):
    make, data = NO_FALSE_POSITIVES[name]
    inputs, targets = {
        "images": lambda: (images(), labels()),
        "images3": lambda: (images(16, 3), labels()),
        "next": next_token,
        "translation": translation,
    }[data]()
    report = diagnose(make(), inputs, targets, seq_ce if data in ("next", "translation") else F.cross_entropy)
    assert report.ok, str(report)
    has_attention = not name.endswith(("cnn", "cnn-batchnorm", "mlp"))
    assert ("not-token-attention" in report.checked) == has_attention, str(report)
    assert ("linear-ffn" in report.checked) == (name != "gap-cnn-batchnorm"), str(report)


def test_linear_ffn_flags_linears_back_to_back():
    class FC(nn.Module):  # forward calls fc1 then fc2 directly
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(49, 196), nn.Linear(196, 49)

        def forward(self, x):
            return self.fc2(self.fc1(x))

    def classifier(ffn):
        return nn.Sequential(nn.Flatten(), nn.Unflatten(1, (16, 49)), ffn, nn.Flatten(), nn.Linear(784, 10))

    planted = {
        "sequential": nn.Sequential(nn.Linear(49, 196), nn.Linear(196, 49)),
        "fc1-fc2": FC(),
        "through-dropout": nn.Sequential(nn.Linear(49, 196), nn.Dropout(0.1), nn.Linear(196, 49)),
    }
    for name, ffn in planted.items():
        report = diagnose(classifier(ffn), images())
        assert report.codes == ["linear-ffn"], (name, str(report))
        assert "Linear(49 -> 196) then Linear(196 -> 49)" in report.findings[0].message
    assert diagnose(classifier(FC()), images()).findings[0].where == "2.fc1 -> 2.fc2"


class SwiGLU(nn.Module):
    def __init__(self, dim=49, hidden=128):
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(dim, hidden), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LoRALinear(nn.Module):
    """A frozen Linear plus a low-rank update B(A(x)): linear on purpose, and narrower."""

    def __init__(self, dim=49, rank=4):
        super().__init__()
        self.base, self.A, self.B = nn.Linear(dim, dim), nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim, bias=False)

    def forward(self, x):
        return self.base(x) + self.B(self.A(x))


@pytest.mark.parametrize("name", ["gelu", "relu", "relu-inplace", "silu", "swiglu", "lora"])
def test_linear_ffn_finds_nothing_with_a_nonlinearity_or_a_bottleneck(name):
    ffn = {
        "gelu": lambda: nn.Sequential(nn.Linear(49, 196), nn.GELU(), nn.Linear(196, 49)),
        "relu": lambda: nn.Sequential(nn.Linear(49, 196), nn.ReLU(), nn.Linear(196, 49)),
        "relu-inplace": lambda: nn.Sequential(nn.Linear(49, 196), nn.ReLU(inplace=True), nn.Linear(196, 49)),
        "silu": lambda: nn.Sequential(nn.Linear(49, 196), nn.SiLU(), nn.Linear(196, 49)),
        "swiglu": SwiGLU,
        "lora": LoRALinear,
    }[name]()
    model = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (16, 49)), ffn, nn.Flatten(), nn.Linear(784, 10))
    report = diagnose(model, images())
    assert report.ok and "linear-ffn" in report.checked, str(report)


# ---------------------------------------------------------------------------------------------
# The new checks leave the model and the generators as they found them too
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["spanish", "gpt", "toy-encoder-decoder", "seq2seq-dropout"])
def test_sequence_checks_leave_parameters_modes_grads_and_rng_unchanged(name):
    if name == "spanish":
        model, inputs, targets, loss = SpanishEncoder(), images(), labels(), F.cross_entropy
    elif name == "gpt":
        model = GPT(GPTConfig(vocab_size=20, block_size=16, dim=32, depth=2, heads=2, mlp_dim=64, dropout=0.1))
        (inputs, targets), loss = next_token(), seq_ce
    elif name == "toy-encoder-decoder":
        src = token_batch(8, 10, vocab=2)
        model, inputs, targets, loss = ToyEncoderDecoder(), (src, src[:, 1:]), src[:, 1:], seq_ce
    else:
        model = Seq2Seq(20, 32, 2, 2, 64, 16, dropout=0.1)
        (inputs, targets), loss = translation(), seq_ce
    model.train()
    loss(model(*(inputs if isinstance(inputs, tuple) else (inputs,))), targets).backward()
    before = snapshot(model)
    rng = torch.get_rng_state()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    diagnose(model, inputs, targets, loss)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.backends.mha.get_fastpath_enabled() == fastpath
    assert_same(before, snapshot(model))
