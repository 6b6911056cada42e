"""companion.experiments: compare() trains each configuration once per seed on one budget."""

import math
import statistics

import pytest
import torch
from torch import nn

from companion.edits import dropout_at, no_positions, post_norm
from companion.experiments import Budget, Results, Trial, compare
from companion.probes import (
    count_macs,
    ink_mass,
    linear_probe,
    position_probe,
    top_half_share,
)
from companion.vit import ViT, preset

TINY = Budget(train_size=96, test_size=64, epochs=1, batch_size=32, eval_batch_size=64)


def tiny(**changes):
    return preset("tiny", **changes)


@pytest.fixture(scope="module")
def results(mnist_root):
    configs = {"cls": tiny(), "mean": Trial(model=tiny(pool="mean"), optimizer="sgd", lr=0.05)}
    return compare(configs, seeds=(0, 1), budget=TINY, device="cpu", root=mnist_root)


def test_compare_returns_one_run_per_config_and_seed(results):
    assert results.names == ["cls", "mean"] and results.seeds == [0, 1]
    assert results.metrics == ["accuracy", "loss", "train_accuracy", "seconds"]
    for name in results.names:
        for metric in ("accuracy", "train_accuracy"):
            assert all(0.0 <= v <= 1.0 for v in results.values(name, metric))
        assert all(v > 0 for v in results.values(name, "seconds"))
    # accuracies are whole numbers of the 64 test images
    assert all(abs(v * 64 - round(v * 64)) < 1e-9 for v in results.values("cls", "accuracy"))


def test_same_seed_repeats_exactly_and_different_seeds_differ(results, mnist_root):
    again = compare({"cls": tiny()}, seeds=(1, 0), budget=TINY, device="cpu", root=mnist_root, cache=False)
    for seed in (0, 1):
        first, second = results.runs["cls"][seed], again.runs["cls"][seed]
        assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}
    assert results.runs["cls"][0]["loss"] != results.runs["cls"][1]["loss"]


def test_cache_reuses_a_run_only_when_trial_seed_and_budget_match(results, mnist_root, monkeypatch):
    import companion.experiments as ex

    calls = []
    real = ex.run_trial
    monkeypatch.setattr(ex, "run_trial", lambda trial, seed, *a: calls.append((trial, seed)) or real(trial, seed, *a))
    again = compare({"same": Trial(model=tiny())}, seeds=(0, 1), budget=TINY, device="cpu", root=mnist_root)
    assert calls == [] and again.runs["same"] == results.runs["cls"]  # seconds too: nothing was retrained
    compare({"other lr": Trial(model=tiny(), lr=1e-3)}, seeds=(0,), budget=TINY, device="cpu", root=mnist_root)
    compare({"other seed": tiny()}, seeds=(2,), budget=TINY, device="cpu", root=mnist_root)
    compare({"no cache": tiny()}, seeds=(0,), budget=TINY, device="cpu", root=mnist_root, cache=False)
    assert [(t.lr, s) for t, s in calls] == [(1e-3, 0), (3e-3, 2), (3e-3, 0)]


def test_mean_and_std_match_a_hand_computation():
    runs = {"a": {0: {"accuracy": 0.5}, 1: {"accuracy": 0.7}, 2: {"accuracy": 0.9}}, "b": {0: {"accuracy": 0.25}}}
    r = Results(runs)
    # (0.5 + 0.7 + 0.9) / 3 = 0.7; sample variance ((-0.2)^2 + 0 + 0.2^2) / (3 - 1) = 0.04
    assert r.mean("a", "accuracy") == pytest.approx(0.7)
    assert r.std("a", "accuracy") == pytest.approx(0.2)
    assert r.std("a", "accuracy") == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))
    assert r.std("b", "accuracy") == 0.0  # one seed: no spread
    assert r.summary("accuracy") == {"a": pytest.approx((0.7, 0.2)), "b": (0.25, 0.0)}
    assert r.best("accuracy") == "a" and r.best("accuracy", higher=False) == "b"
    assert "| a | 70.0 ± 20.0 % |" in r.to_markdown()
    assert "70.0 ± 20.0 %" in repr(r) and "<td>70.0 ± 20.0 %</td>" in r._repr_html_()
    # a metric that only some configurations report is shown as missing for the others
    partial = Results({"a": {0: {"r2": 0.5}}, "b": {0: {"accuracy": 0.5}}})
    assert partial.metrics == ["r2", "accuracy"] and math.isnan(partial.mean("b", "r2"))
    assert "| b | — | 50.0 ± 0.0 % |" in partial.to_markdown()


def test_paired_difference_and_its_t_test_match_a_hand_computation():
    a = {0: {"accuracy": 0.5}, 1: {"accuracy": 0.7}, 2: {"accuracy": 0.9}}
    b = {0: {"accuracy": 0.4}, 1: {"accuracy": 0.5}, 2: {"accuracy": 0.6}}
    c = {0: {"accuracy": 0.39}, 1: {"accuracy": 0.59}, 2: {"accuracy": 0.78}}
    r = Results({"a": a, "b": b, "c": c})
    d = r.difference("a", "b")  # per seed 0.1, 0.2, 0.3: mean 0.2, std 0.1, t = 0.2 / (0.1 / sqrt(3))
    assert d.values == pytest.approx([0.1, 0.2, 0.3])
    assert (d.mean, d.std, d.t) == (pytest.approx(0.2), pytest.approx(0.1), pytest.approx(2 * math.sqrt(3)))
    # two-sided p of t = 2 sqrt(3) with 2 degrees of freedom: 1 - t / sqrt(t^2 + 2) (closed form for df = 2)
    assert d.p == pytest.approx(1 - d.t / math.sqrt(d.t**2 + 2)) and 0.05 < d.p < 0.1
    assert not d.clear
    e = r.difference("a", "c")  # 0.11, 0.11, 0.12: small but consistent
    assert e.t > 4.303 and e.p < 0.05 and e.clear  # 4.303: the 95 % critical value with 2 degrees of freedom
    assert str(d) == "a − b: +20.0 ± 10.0 points of accuracy over 3 seeds (paired t = 3.5, p = 0.074: not clear)"
    assert r.difference("b", "a").mean == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="not run with the same seeds"):
        Results({"a": a, "d": {5: {"accuracy": 0.1}, 6: {"accuracy": 0.1}, 7: {"accuracy": 0.1}}}).difference("a", "d")


def test_results_table_and_plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    md = results.to_markdown()
    assert md.splitlines()[0] == "| configuration | accuracy | loss | train_accuracy |"
    assert len(md.splitlines()) == 2 + len(results.names)
    ax = results.plot("accuracy")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cls", "mean"]
    ax = results.plot("loss", x={"cls": 1.0, "mean": 2.0}, group={"cls": "g1", "mean": "g2"})
    assert len(ax.get_legend().get_texts()) == 2
    plt.close("all")


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: compare({}, budget=TINY), ValueError, "non-empty dict"),
        (lambda: compare({"x": 3}, budget=TINY), TypeError, "must be a Trial, a ViTConfig or a function"),
        (lambda: compare({"x": tiny()}, seeds=(), budget=TINY), ValueError, "non-empty sequence of ints"),
        (lambda: compare({"x": tiny()}, seeds=(0, 0), budget=TINY), ValueError, "distinct"),
        (lambda: compare({"x": tiny()}, budget={"epochs": 1}), TypeError, "budget must be a Budget"),
        (lambda: Budget(epochs=0), ValueError, "Budget.epochs must be a positive int"),
        (lambda: Budget(train_size=-5), ValueError, "Budget.train_size"),
        (lambda: Trial(optimizer="rmsprop"), ValueError, "Trial.optimizer must be one of"),
        (lambda: Trial(lr=0), ValueError, "lr must be a positive number"),
        (lambda: Trial(model=tiny(), target=ink_mass), ValueError, "num_classes=1"),
        (lambda: Trial(model="vit"), TypeError, "Trial.model must be"),
        (lambda: dropout_at(0.1, "everywhere"), ValueError, "unknown dropout place"),
        (lambda: Results({"a": {0: {"accuracy": 1.0}}}).values("b", "accuracy"), KeyError, "no configuration 'b'"),
        (lambda: Results({"a": {0: {"accuracy": 1.0}}}).values("a", "acc"), KeyError, "no metric 'acc'"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_budget_larger_than_the_data_is_refused(mnist_root):
    with pytest.raises(ValueError, match="the test set has 10,000 images"):
        compare({"x": tiny()}, budget=Budget(test_size=20_000), device="cpu", root=mnist_root)


def test_a_model_function_and_a_regression_target_and_a_measure(mnist_root):
    def flat():
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 1))

    r = compare(
        {"ink": Trial(model=flat, target=ink_mass, lr=0.01, normalize=False, measure=lambda m, x, y: {"n": len(x)})},
        seeds=(0,),
        budget=TINY,
        device="cpu",
        root=mnist_root,
    )
    assert r.metrics == ["r2", "mse", "n", "seconds"] and r.values("ink", "n") == [64.0]
    assert math.isfinite(r.mean("ink", "r2")) and r.mean("ink", "mse") > 0


def test_a_regression_model_with_several_outputs_is_refused(mnist_root):
    trial = Trial(model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3)), target=ink_mass)
    with pytest.raises(ValueError, match="one output per image, got outputs of shape \\(2, 3\\)"):
        compare({"three outputs": trial}, seeds=(0,), budget=TINY, device="cpu", root=mnist_root)


def test_targets_on_known_images():
    raw = torch.zeros(2, 1, 28, 28)
    raw[0, 0, 3, 5] = 1.0  # one ink pixel in row 3
    raw[1, 0, 10:20, :] = 0.5  # a band over rows 10..19: 4 of its 10 rows in the top half
    assert top_half_share(raw, None).tolist() == pytest.approx([1.0, 0.4])
    assert ink_mass(raw, None).tolist() == pytest.approx([1 / 784, 0.5 * 280 / 784])


def test_edits_change_the_model_as_described():
    torch.manual_seed(0)
    model = dropout_at(0.3, "attention", "ffn")(ViT(tiny(depth=2)))
    for block in model.encoder.blocks:
        assert (block.attn.dropout, block.drop1.p, block.ffn.drop.p, block.drop2.p) == (0.3, 0.0, 0.3, 0.0)
    assert model.dropout.p == 0.0
    model = post_norm(ViT(tiny(depth=3)))
    assert [b.norm_first for b in model.encoder.blocks] == [False] * 3
    assert isinstance(model.encoder.norm, nn.Identity)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = no_positions(ViT(tiny()))
    assert not model.pos_embedding.requires_grad and model.pos_embedding.abs().sum() == 0


def test_count_macs_of_a_linear_layer_and_of_attention():
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), torch.zeros(3, 1, 28, 28)) == 7840
    config = tiny()  # 16 patches + CLS = 17 tokens of dim 8, one block, MLP 8
    # written out: patch embedding, q/k/v/out projections, QK^T and weights @ V, MLP, head
    n, d, p = 17, 8, 49
    expected = 16 * p * d + n * (3 * d * d + d * d) + 2 * n * n * d + n * (d * 8 + 8 * d) + d * 10
    assert count_macs(ViT(config), torch.zeros(2, 1, 28, 28)) == expected


def test_linear_probe_finds_a_linear_signal_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(100)  # [400]
    signal = torch.nn.functional.one_hot(labels, 4).float() * 3 + torch.randn(400, 4, generator=g)
    assert linear_probe(signal, labels, n_train=200) > 0.9
    noise = torch.randn(400, 4, generator=g)
    assert linear_probe(noise, labels, n_train=200) < 0.45  # chance is 0.25


def test_position_probe_reads_positions_from_the_embedding_and_not_from_noise():
    torch.manual_seed(0)
    images, labels = torch.randn(40, 1, 28, 28), torch.zeros(40, dtype=torch.long)
    model = ViT(preset("small", depth=2))  # dim 32: room for 16 linearly separable positions
    with torch.no_grad():
        model.pos_embedding.mul_(50)  # make positions dominate the tokens
    out = position_probe(images=40)(model, images, labels)
    assert list(out) == ["probe L0", "probe L1", "probe L2"]
    assert out["probe L0"] > 0.95
    blind = position_probe(images=40)(no_positions(ViT(preset("small", depth=2))), images, labels)
    assert max(blind.values()) < 0.25  # random pixels, no positions: chance is 1/16
