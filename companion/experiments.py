"""Controlled experiments: the same budget, several seeds, mean ± spread per configuration.

    results = compare(
        {"CLS token": preset("small", pool="cls"), "mean pooling": preset("small", pool="mean")},
        seeds=(0, 1, 2),
        budget=Budget(train_size=4000, epochs=2, batch_size=32),
    )
    results                                          # table: mean ± std over the seeds
    results.plot("accuracy")                         # mean ± std, and one dot per seed
    results.difference("CLS token", "mean pooling")  # paired over seeds, with a t-test

Every run of every configuration sees the same images (a fixed random subset of the training
set and the first ``test_size`` test images, :func:`companion.data.mnist_subset`); the seed
decides the initial weights, the order of the batches and the dropout masks, so one seed
repeats exactly on the same machine (CPU). Every run trains through
:func:`companion.train.train_model`. The edits and measurements used with ``edit=`` and
``measure=`` live in :mod:`companion.edits` and :mod:`companion.probes`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from scipy import stats
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from .data import MNISTTensors, mnist_subset
from .train import (
    OPTIMIZERS,
    TrainConfig,
    cross_entropy,
    default_device,
    eval_mode,
    evaluate,
    set_seed,
    train_model,
)
from .vit import ViT, ViTConfig, preset


@dataclass(frozen=True)
class Budget:
    """What every run of a comparison gets: the same images, epochs and batch size.

    Args:
        train_size: images drawn once (a fixed random sample, seed 0) from the training set;
            ``None`` uses all of it.
        test_size: the first ``test_size`` images of the test set; ``None`` uses all 10,000.
        epochs: passes over the training images.
        batch_size: training batch size (the evaluation batch is ``eval_batch_size``).
    """

    train_size: int | None = 2000
    test_size: int | None = 2000
    epochs: int = 2
    batch_size: int = 64
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"Budget.{name} must be a positive int or None, got {value!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Budget.{name} must be a positive int, got {value!r}")

    def steps(self, train_images: int) -> int:
        """Optimizer steps one run takes on ``train_images`` images."""
        return self.epochs * math.ceil(train_images / self.batch_size)

    def data(self, root: str | os.PathLike | None = None, download: bool = True) -> MNISTTensors:
        """The images every run of this budget sees (loaded once per process)."""
        return mnist_subset(self.train_size, self.test_size, sample="random", seed=0, root=root, download=download)


@dataclass
class Trial:
    """One configuration: which model, how it is trained, and what is measured.

    Args:
        model: a :class:`ViTConfig`, or a function with no arguments that returns a model
            (called after seeding, so its initial weights depend on the seed only).
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (with ``momentum``).
        lr, weight_decay, momentum: the optimizer's settings (3e-3 is the best AdamW rate for
            ``preset("small")`` on the chapter's budget; no weight decay by default).
        schedule, warmup: ``"constant"``, or ``"warmup_cosine"`` with ``warmup`` a fraction of
            all steps (as :class:`companion.train.TrainConfig`).
        normalize: feed ``(pixel - 0.1307) / 0.3081`` (True) or raw pixels in [0, 1] (False).
        edit: ``edit(model)`` changes the built model in place before training (for example
            :func:`companion.edits.post_norm`); also called after seeding.
        target: ``None`` for digit classification (metric ``accuracy``); or a regression
            target ``target(raw_images [N, 1, 28, 28] in [0, 1], labels [N]) -> [N]``, trained
            with the mean squared error on targets standardised with the training mean and std
            (metrics ``r2`` and ``mse``). The model must have one output (``num_classes=1``).
        measure: ``measure(model, test_inputs, test_labels) -> {name: float}``, extra metrics
            computed after training (the inputs are the ones the model was trained on).
    """

    model: ViTConfig | Callable[[], nn.Module] = field(default_factory=lambda: preset("small"))
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup: float = 0.0
    normalize: bool = True
    edit: Callable[[nn.Module], object] | None = None
    target: Callable[[Tensor, Tensor], Tensor] | None = None
    measure: Callable[[nn.Module, Tensor, Tensor], Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, ViTConfig) and not callable(self.model):
            raise TypeError(f"Trial.model must be a ViTConfig or a function returning a model, got {type(self.model).__name__}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Trial.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        self.train_config(Budget())  # TrainConfig checks the optimizer settings and the schedule
        if self.target is not None and isinstance(self.model, ViTConfig) and self.model.num_classes != 1:
            raise ValueError(
                f"a regression Trial needs a model with one output; use ViTConfig(num_classes=1), "
                f"got num_classes={self.model.num_classes}"
            )

    def train_config(self, budget: Budget) -> TrainConfig:
        """How this trial trains on ``budget``."""
        return TrainConfig(
            optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay, momentum=self.momentum,
            schedule=self.schedule, warmup=self.warmup, epochs=budget.epochs, batch_size=budget.batch_size,
        )

    def build(self) -> nn.Module:
        """The model, after ``edit`` (call :func:`companion.train.set_seed` first)."""
        model = ViT(self.model) if isinstance(self.model, ViTConfig) else self.model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trial.model() must return an nn.Module, got {type(model).__name__}")
        if self.edit is not None:
            self.edit(model)
        return model


def run_trial(
    trial: Trial,
    seed: int,
    budget: Budget,
    data: MNISTTensors | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Train ``trial`` once with ``seed`` on ``budget``; return its metrics (and ``seconds``).

    Classification: ``accuracy`` and ``loss`` on the test images, ``train_accuracy`` (the
    running accuracy of the last epoch). Regression: ``r2`` and ``mse`` on the test images
    (standardised targets). Plus whatever ``trial.measure`` returns.
    """
    data = data if data is not None else budget.data()
    device = torch.device(device) if device is not None else default_device()
    x_train, x_test = (data.x_train, data.x_test) if trial.normalize else (data.raw_train, data.raw_test)
    if trial.target is None:
        t_train, t_test = data.y_train, data.y_test
    else:
        t_train = trial.target(data.raw_train, data.y_train).float().reshape(-1)
        t_test = trial.target(data.raw_test, data.y_test).float().reshape(-1)
        if len(t_train) != len(x_train) or len(t_test) != len(x_test):
            raise ValueError("Trial.target must return one number per image")
        mean, std = t_train.mean(), t_train.std()
        t_train, t_test = ((t_train - mean) / std)[:, None], ((t_test - mean) / std)[:, None]  # [N, 1]
    set_seed(seed)
    model = trial.build()
    if trial.target is not None:
        with torch.no_grad(), eval_mode(model):  # no random numbers drawn: the run is unchanged
            shape = tuple(model(x_train[:2]).shape)
        if shape != (2, 1):
            raise ValueError(f"a regression Trial needs a model with one output per image, got outputs of shape {shape} for 2 images")
    history = train_model(
        model, TensorDataset(x_train, t_train), trial.train_config(budget), seed=seed, device=device, progress=False
    )
    test_loader = DataLoader(TensorDataset(x_test, t_test), batch_size=budget.eval_batch_size)
    metrics = evaluate(model, test_loader, cross_entropy, device)
    if trial.target is None:
        out = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "train_accuracy": history.train_acc[-1]}
    else:
        variance = ((t_test - t_test.mean()) ** 2).mean().item()
        out = {"r2": 1.0 - metrics["loss"] / variance, "mse": metrics["loss"]}
    if trial.measure is not None:
        out.update({k: float(v) for k, v in trial.measure(model, x_test, data.y_test).items()})
    out["seconds"] = history.total_seconds
    return out


@dataclass
class Difference:
    """Per-seed differences ``a - b`` of one metric, and a paired t-test of "no difference".

    With 3 seeds the test is weak: only a difference that is large compared with its
    seed-to-seed variation is called ``clear``; "not clear" does not mean "equal". A chapter
    that asks many questions makes many tests: at the 5 % level about one in twenty "clear"
    verdicts on a true null is expected by chance.
    """

    a: str
    b: str
    metric: str
    values: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        n = len(self.values)
        return math.sqrt(sum((v - self.mean) ** 2 for v in self.values) / (n - 1)) if n > 1 else 0.0

    @property
    def t(self) -> float:
        """The paired t statistic ``mean / (std / sqrt(n))`` (``inf`` when every seed agrees exactly)."""
        if len(self.values) < 2:
            return float("nan")
        se = self.std / math.sqrt(len(self.values))
        return self.mean / se if se > 0 else (math.copysign(math.inf, self.mean) if self.mean else float("nan"))

    @property
    def p(self) -> float:
        """Two-sided p-value of the paired t-test (Student's t with ``seeds - 1`` degrees of freedom)."""
        t = self.t
        if math.isnan(t):
            return float("nan")
        return float(2 * stats.t.sf(abs(t), df=len(self.values) - 1))

    @property
    def clear(self) -> bool:
        """True when a paired two-sided t-test rejects "no difference" at the 5 % level."""
        return self.p < 0.05

    @property
    def verdict(self) -> str:
        return "clear at the 5 % level" if self.clear else "not clear"

    @property
    def size(self) -> str:
        """Mean ± std of the differences: ``+5.5 ± 5.0 points`` for accuracies, else 3 decimals."""
        if "accuracy" in self.metric or self.metric.startswith("probe"):
            return f"{100 * self.mean:+.1f} ± {100 * self.std:.1f} points"
        return f"{self.mean:+.3f} ± {self.std:.3f}"

    def words(self, higher: str, lower: str) -> str:
        """``higher`` when ``a`` was ahead of ``b`` on average, else ``lower`` (for prose)."""
        return higher if self.mean > 0 else lower

    def __str__(self) -> str:
        size = self.size
        return (
            f"{self.a} − {self.b}: {size} of {self.metric} over {len(self.values)} seeds "
            f"(paired t = {self.t:.1f}, p = {self.p:.3f}: {self.verdict})"
        )


class Results:
    """Metrics of every (configuration, seed) run, summarised as mean ± std over the seeds.

    ``std`` is the sample standard deviation (divides by ``seeds - 1``); with one seed it is 0.
    ``seconds`` (training wall time) is recorded but not part of the default table.
    """

    def __init__(self, runs: Mapping[str, Mapping[int, Mapping[str, float]]], budget: Budget | None = None, info: str = ""):
        if not runs:
            raise ValueError("Results needs at least one configuration")
        self.runs = {name: {seed: dict(m) for seed, m in by_seed.items()} for name, by_seed in runs.items()}
        self.budget, self.info = budget, info

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    @property
    def seeds(self) -> list[int]:
        return list(next(iter(self.runs.values())))

    @property
    def metrics(self) -> list[str]:
        """Metric names, in the order of the first run, ``seconds`` last."""
        names: list[str] = []
        for by_seed in self.runs.values():
            for m in by_seed.values():
                names += [k for k in m if k not in names]
        return [k for k in names if k != "seconds"] + (["seconds"] if "seconds" in names else [])

    def values(self, name: str, metric: str) -> list[float]:
        """One value per seed (in seed order); NaN where a run did not report ``metric``."""
        if name not in self.runs:
            raise KeyError(f"no configuration {name!r}; have {self.names}")
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; have {self.metrics}")
        return [float(m.get(metric, float("nan"))) for m in self.runs[name].values()]

    def mean(self, name: str, metric: str) -> float:
        v = self.values(name, metric)
        return sum(v) / len(v)

    def std(self, name: str, metric: str) -> float:
        v = self.values(name, metric)
        if len(v) < 2:
            return 0.0
        mu = sum(v) / len(v)
        return math.sqrt(sum((x - mu) ** 2 for x in v) / (len(v) - 1))

    def summary(self, metric: str) -> dict[str, tuple[float, float]]:
        """``{name: (mean, std)}`` for ``metric``."""
        return {name: (self.mean(name, metric), self.std(name, metric)) for name in self.names}

    def best(self, metric: str = "accuracy", higher: bool = True) -> str:
        """The configuration with the best mean ``metric``."""
        means = {name: self.mean(name, metric) for name in self.names}
        means = {k: (v if math.isfinite(v) else (-math.inf if higher else math.inf)) for k, v in means.items()}
        return (max if higher else min)(means, key=means.get)

    def difference(self, a: str, b: str, metric: str = "accuracy") -> "Difference":
        """``a - b`` seed by seed (both were trained with the same seeds, data and order)."""
        va, vb = self.values(a, metric), self.values(b, metric)
        if list(self.runs[a]) != list(self.runs[b]):
            raise ValueError(f"{a!r} and {b!r} were not run with the same seeds")
        return Difference(a, b, metric, [x - y for x, y in zip(va, vb)])

    @staticmethod
    def format(metric: str, mean: float, std: float | None = None) -> str:
        """``91.2 ± 0.4 %`` for accuracies (fractions shown as percent), ``0.812 ± 0.010`` otherwise."""
        if math.isnan(mean):
            return "—"  # a metric this configuration does not report
        if "accuracy" in metric or metric.startswith("probe"):
            text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "") + " %"
        elif metric == "seconds":
            text = f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "") + " s"
        else:
            text = f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
        return text

    def rows(self, metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
        metrics = [m for m in self.metrics if m != "seconds"] if metrics is None else list(metrics)
        header = ["configuration", *metrics]
        body = [[name, *(self.format(m, self.mean(name, m), self.std(name, m)) for m in metrics)] for name in self.names]
        return header, body

    def to_markdown(self, metrics: Sequence[str] | None = None) -> str:
        """A Markdown table: one row per configuration, ``mean ± std`` per metric."""
        header, body = self.rows(metrics)
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)

    @property
    def setting(self) -> str:
        """What every row was averaged over: ``mean ± std over 3 seeds [0, 1, 2]; 2 epochs, batch 32, ...``."""
        seeds = self.seeds
        text = f"mean ± std over {len(seeds)} seed{'s' if len(seeds) > 1 else ''} {seeds}"
        if self.budget is not None:
            b = self.budget
            epochs = f"{b.epochs} epoch{'s' if b.epochs != 1 else ''}"
            train = f"{b.train_size:,}" if b.train_size else "all"
            test = f"{b.test_size:,}" if b.test_size else "all"
            text += f"; {epochs}, batch {b.batch_size}, {train} training images, {test} test images"
        return text

    def __repr__(self) -> str:
        header, body = self.rows()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], f"({self.setting})"])

    def _repr_html_(self) -> str:
        from html import escape

        header, body = self.rows()
        th = "".join(f"<th>{escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><caption>{escape(self.setting)}</caption><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    def plot(
        self,
        metric: str = "accuracy",
        ax=None,
        x: Mapping[str, float] | None = None,
        group: Mapping[str, str] | None = None,
        logx: bool = False,
        title: str | None = None,
    ):
        """Mean ± std of ``metric`` per configuration, with one small dot per seed.

        Without ``x``: one point (the mean) with an error bar per configuration. With ``x`` (a number per configuration, e.g.
        its learning rate) and optionally ``group`` (a line label per configuration): lines.
        Returns the matplotlib Axes.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3))
        scale = 100.0 if ("accuracy" in metric or metric.startswith("probe")) else 1.0
        if x is None:
            # Points, not bars: the axis does not start at 0, and a bar would suggest it does.
            for i, name in enumerate(self.names):
                mu, sd = self.mean(name, metric) * scale, self.std(name, metric) * scale
                ax.errorbar(i, mu, yerr=sd, fmt="s", color="C0", ms=7, capsize=5, zorder=3)
                vals = [v * scale for v in self.values(name, metric)]
                ax.plot([i + 0.15 + 0.06 * j for j in range(len(vals))], vals, "o", color="C1", ms=3, alpha=0.8)
            tilt = len(self.names) > 4 or sum(len(n) for n in self.names) > 60
            ax.set_xticks(range(len(self.names)), self.names, rotation=20 if tilt else 0, ha="right" if tilt else "center")
            ax.set_xlim(-0.5, len(self.names) - 0.3)
        else:
            missing = [n for n in self.names if n not in x]
            if missing:
                raise KeyError(f"x has no value for {missing}")
            groups = group or {n: "" for n in self.names}
            for k, label in enumerate(dict.fromkeys(groups[n] for n in self.names)):
                members = sorted((n for n in self.names if groups[n] == label), key=lambda n: x[n])
                xs = [x[n] for n in members]
                mus = [self.mean(n, metric) * scale for n in members]
                sds = [self.std(n, metric) * scale for n in members]
                ax.errorbar(xs, mus, yerr=sds, marker="o", capsize=3, color=f"C{k}", label=label or None)
                for n in members:
                    ax.plot([x[n]] * len(self.seeds), [v * scale for v in self.values(n, metric)], ".", color=f"C{k}", alpha=0.4)
            if logx:
                ax.set_xscale("log")
            if any(groups.values()):
                ax.legend(fontsize=8)
        ax.set_ylabel(metric + (" (%)" if scale == 100.0 else ""))
        ax.set_title(title if title is not None else self.setting, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        return ax


# Runs already done in this process: (trial, seed, budget, device, which images) -> metrics.
_RUN_CACHE: list[tuple[Trial, int, Budget, str, str, dict[str, float]]] = []


def _cached_run(trial: Trial, seed: int, budget: Budget, data: MNISTTensors, device, cache: bool) -> dict[str, float]:
    device = str(torch.device(device) if device is not None else default_device())
    key = (seed, budget, device, data.info)
    if cache:
        for t, *k, metrics in _RUN_CACHE:
            if tuple(k) == key and t == trial:
                return dict(metrics)
    metrics = run_trial(trial, seed, budget, data, device)
    if cache:
        _RUN_CACHE.append((copy.deepcopy(trial), *key, dict(metrics)))
    return metrics


def compare(
    configs: Mapping[str, Trial | ViTConfig | Callable[[], nn.Module]],
    seeds: Sequence[int] = (0, 1, 2),
    budget: Budget | None = None,
    device: torch.device | str | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = False,
    cache: bool = True,
) -> Results:
    """Train every configuration once per seed on the same ``budget``; return a :class:`Results`.

    ``configs`` maps a name to a :class:`Trial`, a :class:`ViTConfig` (trained with
    ``Trial``'s defaults) or a function returning a model. ``progress`` prints one line per run.
    With ``cache`` (the default) a (trial, seed, budget, device) that an earlier ``compare``
    in this process already ran is not trained again: its metrics (and ``seconds``) are reused.
    Trials are matched by value, so an ``edit`` or ``measure`` must be the same function object.
    """
    if not isinstance(configs, Mapping) or not configs:
        raise ValueError("configs must be a non-empty dict {name: Trial | ViTConfig | model function}")
    trials: dict[str, Trial] = {}
    for name, spec in configs.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"configuration names must be non-empty strings, got {name!r}")
        if isinstance(spec, Trial):
            trials[name] = spec
        elif isinstance(spec, ViTConfig) or (callable(spec) and not isinstance(spec, type)):
            trials[name] = Trial(model=spec)
        else:
            raise TypeError(f"configs[{name!r}] must be a Trial, a ViTConfig or a function returning a model, got {spec!r}")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    budget = budget if budget is not None else Budget()
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    data = budget.data(root)
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for name, trial in trials.items():
        runs[name] = {}
        for seed in seeds:
            runs[name][seed] = m = _cached_run(trial, seed, budget, data, device, cache)
            if progress:
                shown = ", ".join(Results.format(k, v) for k, v in m.items() if k != "seconds")
                print(f"{name} (seed {seed}): {shown} [{m['seconds']:.1f}s]", flush=True)
    return Results(runs, budget, data.info)
