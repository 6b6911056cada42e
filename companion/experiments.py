"""Controlled experiments: the same budget, several seeds, mean ± spread per configuration.

    results = compare(
        {"CLS token": small_config(pool="cls"), "mean pooling": small_config(pool="mean")},
        seeds=(0, 1, 2),
        budget=Budget(train_size=4000, epochs=2, batch_size=32),
    )
    results                                          # table: mean ± std over the seeds
    results.plot("accuracy")                         # mean ± std, and one dot per seed
    results.difference("CLS token", "mean pooling")  # paired over seeds, with a t-test

Every run of every configuration sees the same images (a fixed subset of the training set and
the first ``test_size`` test images); the seed decides the initial weights, the order of the
batches and the dropout masks, so one seed repeats exactly on the same machine (CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from .attention import MultiHeadAttention
from .data import MNIST_MEAN, MNIST_STD, describe, mnist, resolve_root, to_tensors
from .encoder import Encoder
from .recipe import warmup_cosine
from .train import default_device, eval_mode, evaluate, fit, set_seed
from .vit import ViT, ViTConfig

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine")
DROPOUT_PLACES = ("embedding", "attention", "attn_out", "ffn", "ffn_out")


def small_config(**changes) -> ViTConfig:
    """The chapter's small ViT (7x7 patches, dim 32, 2 blocks, 4 heads, MLP 64), with ``changes``."""
    base = ViTConfig(patch_size=7, dim=32, depth=2, heads=4, mlp_dim=64)
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class Budget:
    """What every run of a comparison gets: the same images, epochs and batch size.

    Args:
        train_size: images drawn once (a fixed permutation, seed 0) from the training set;
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


@dataclass
class Data:
    """The images every run sees: normalised (``x_*``) and raw pixels in [0, 1] (``raw_*``)."""

    x_train: Tensor  # [N, 1, 28, 28], (pixel - MNIST_MEAN) / MNIST_STD
    y_train: Tensor  # [N] int64
    x_test: Tensor
    y_test: Tensor
    info: str

    @property
    def raw_train(self) -> Tensor:
        return self.x_train * MNIST_STD + MNIST_MEAN  # [N, 1, 28, 28] in [0, 1]

    @property
    def raw_test(self) -> Tensor:
        return self.x_test * MNIST_STD + MNIST_MEAN


_DATA_CACHE: dict[tuple, Data] = {}


def load_data(budget: Budget, root: str | os.PathLike | None = None, download: bool = True) -> Data:
    """MNIST cut to ``budget``'s sizes (cached: a comparison loads the files once)."""
    key = (str(resolve_root(root)), budget.train_size, budget.test_size)
    if key not in _DATA_CACHE:
        train_set, test_set = mnist(True, root, download), mnist(False, root, download)
        x_train, y_train = to_tensors(train_set)
        x_test, y_test = to_tensors(test_set)
        if budget.train_size is not None:
            if budget.train_size > len(x_train):
                raise ValueError(f"Budget.train_size={budget.train_size} but the training set has {len(x_train)} images")
            keep = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[: budget.train_size]
            x_train, y_train = x_train[keep], y_train[keep]
        if budget.test_size is not None:
            if budget.test_size > len(x_test):
                raise ValueError(f"Budget.test_size={budget.test_size} but the test set has {len(x_test)} images")
            x_test, y_test = x_test[: budget.test_size], y_test[: budget.test_size]
        info = (
            f"{describe(train_set)}, {len(x_train):,} used for training; "
            f"{describe(test_set)}, the first {len(x_test):,} used for testing"
        )
        _DATA_CACHE[key] = Data(x_train, y_train, x_test, y_test, info)
    return _DATA_CACHE[key]


@dataclass
class Trial:
    """One configuration: which model, how it is trained, and what is measured.

    Args:
        model: a :class:`ViTConfig`, or a function with no arguments that returns a model
            (called after seeding, so its initial weights depend on the seed only).
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (with ``momentum``).
        lr, weight_decay, momentum: the optimizer's settings (3e-3 is the best AdamW rate for
            :func:`small_config` on the chapter's budget; no weight decay by default).
        schedule: ``"constant"`` or ``"warmup_cosine"`` (linear warm-up over ``warmup_steps``,
            then cosine decay to 0, as :func:`companion.recipe.warmup_cosine`).
        normalize: feed ``(pixel - 0.1307) / 0.3081`` (True) or raw pixels in [0, 1] (False).
        edit: ``edit(model)`` changes the built model in place before training (for example
            :func:`post_norm` or :func:`dropout_at`); also called after seeding.
        target: ``None`` for digit classification (metric ``accuracy``); or a regression
            target ``target(raw_images [N, 1, 28, 28] in [0, 1], labels [N]) -> [N]``, trained
            with the mean squared error on targets standardised with the training mean and std
            (metrics ``r2`` and ``mse``). The model must have one output (``num_classes=1``).
        measure: ``measure(model, test_inputs, test_labels) -> {name: float}``, extra metrics
            computed after training (the inputs are the ones the model was trained on).
    """

    model: ViTConfig | Callable[[], nn.Module] = field(default_factory=small_config)
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_steps: int = 0
    normalize: bool = True
    edit: Callable[[nn.Module], object] | None = None
    target: Callable[[Tensor, Tensor], Tensor] | None = None
    measure: Callable[[nn.Module, Tensor, Tensor], Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, ViTConfig) and not callable(self.model):
            raise TypeError(f"Trial.model must be a ViTConfig or a function returning a model, got {type(self.model).__name__}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Trial.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Trial.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"Trial.lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1 or self.warmup_steps < 0:
            raise ValueError(
                f"need weight_decay >= 0, 0 <= momentum < 1 and warmup_steps >= 0, got "
                f"{self.weight_decay}, {self.momentum}, {self.warmup_steps}"
            )
        if self.target is not None and isinstance(self.model, ViTConfig) and self.model.num_classes != 1:
            raise ValueError(
                f"a regression Trial needs a model with one output; use ViTConfig(num_classes=1), "
                f"got num_classes={self.model.num_classes}"
            )

    def build(self) -> nn.Module:
        """The model, after ``edit`` (call :func:`companion.train.set_seed` first)."""
        model = ViT(self.model) if isinstance(self.model, ViTConfig) else self.model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trial.model() must return an nn.Module, got {type(model).__name__}")
        if self.edit is not None:
            self.edit(model)
        return model

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = [p for p in params if p.requires_grad]
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay)


def _regression_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """outputs ``[batch, 1]``, targets ``[batch, 1]`` -> mean squared error."""
    return F.mse_loss(outputs, targets)


def run_trial(
    trial: Trial,
    seed: int,
    budget: Budget,
    data: Data | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Train ``trial`` once with ``seed`` on ``budget``; return its metrics (and ``seconds``).

    Classification: ``accuracy`` and ``loss`` on the test images, ``train_accuracy`` (the
    running accuracy of the last epoch). Regression: ``r2`` and ``mse`` on the test images
    (standardised targets). Plus whatever ``trial.measure`` returns.
    """
    data = data if data is not None else load_data(budget)
    device = torch.device(device) if device is not None else default_device()
    x_train, x_test = (data.x_train, data.x_test) if trial.normalize else (data.raw_train, data.raw_test)
    if trial.target is None:
        t_train, t_test, loss_fn = data.y_train, data.y_test, F.cross_entropy
    else:
        t_train = trial.target(data.raw_train, data.y_train).float().reshape(-1)
        t_test = trial.target(data.raw_test, data.y_test).float().reshape(-1)
        if len(t_train) != len(x_train) or len(t_test) != len(x_test):
            raise ValueError("Trial.target must return one number per image")
        mean, std = t_train.mean(), t_train.std()
        # [N, 1]: one output per image (companion.train.fit tracks an accuracy that is
        # meaningless here but well defined for a single output).
        t_train, t_test = ((t_train - mean) / std)[:, None], ((t_test - mean) / std)[:, None]
        loss_fn = _regression_loss
    set_seed(seed)
    model = trial.build()
    if trial.target is not None:
        with torch.no_grad(), eval_mode(model):  # no random numbers drawn: the run is unchanged
            shape = tuple(model(x_train[:2]).shape)
        if shape != (2, 1):
            raise ValueError(f"a regression Trial needs a model with one output per image, got outputs of shape {shape} for 2 images")
    loader = DataLoader(
        TensorDataset(x_train, t_train),
        batch_size=budget.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = trial.make_optimizer(model.parameters())
    scheduler = None
    if trial.schedule == "warmup_cosine":
        scheduler = warmup_cosine(optimizer, trial.warmup_steps, budget.epochs * len(loader))
    start = time.perf_counter()
    history = fit(model, loader, budget.epochs, optimizer, scheduler, loss_fn, device=device, progress=False)
    seconds = time.perf_counter() - start
    test_loader = DataLoader(TensorDataset(x_test, t_test), batch_size=budget.eval_batch_size)
    metrics = evaluate(model, test_loader, loss_fn, device)
    if trial.target is None:
        out = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "train_accuracy": history.train_acc[-1]}
    else:
        variance = ((t_test - t_test.mean()) ** 2).mean().item()
        out = {"r2": 1.0 - metrics["loss"] / variance, "mse": metrics["loss"]}
    if trial.measure is not None:
        out.update({k: float(v) for k, v in trial.measure(model, x_test, data.y_test).items()})
    out["seconds"] = seconds
    return out


# Two-sided 95 % critical values of Student's t for 1..10 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass
class Difference:
    """Per-seed differences ``a - b`` of one metric, and a paired t-test of "no difference".

    With 3 seeds the test is weak: only a difference that is large compared with its
    seed-to-seed variation is called ``clear``; "not clear" does not mean "equal".
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
    def clear(self) -> bool:
        """True when a paired two-sided t-test rejects "no difference" at the 5 % level."""
        df = len(self.values) - 1
        if df < 1:
            return False
        critical = _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df  # within 0.01 of the table beyond 10
        return abs(self.t) > critical

    def __str__(self) -> str:
        if "accuracy" in self.metric or self.metric.startswith("probe"):
            size = f"{100 * self.mean:+.1f} ± {100 * self.std:.1f} points"
        else:
            size = f"{self.mean:+.3f} ± {self.std:.3f}"
        verdict = "clear at the 5 % level" if self.clear else "not clear"
        return f"{self.a} − {self.b}: {size} of {self.metric} over {len(self.values)} seeds (paired t = {self.t:.1f}: {verdict})"


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

    def _caption(self) -> str:
        seeds = self.seeds
        text = f"mean ± std over {len(seeds)} seed{'s' if len(seeds) > 1 else ''} {seeds}"
        if self.budget is not None:
            b = self.budget
            text += f"; {b.epochs} epoch(s), batch {b.batch_size}, {b.train_size or 'all'} training images, {b.test_size or 'all'} test images"
        return text

    def __repr__(self) -> str:
        header, body = self.rows()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], f"({self._caption()})"])

    def _repr_html_(self) -> str:
        from html import escape

        header, body = self.rows()
        th = "".join(f"<th>{escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><caption>{escape(self._caption())}</caption><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

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
        ax.set_title(title if title is not None else self._caption(), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        return ax


# (trial, seed, budget, device, data) -> metrics of runs already done in this process
_RUN_CACHE: list[tuple[Trial, int, Budget, str, int, dict[str, float]]] = []


def _cached_run(trial: Trial, seed: int, budget: Budget, data: Data, device: torch.device | str | None, cache: bool):
    device = str(torch.device(device) if device is not None else default_device())
    if cache:
        for t, s, b, d, data_id, metrics in _RUN_CACHE:
            if s == seed and b == budget and d == device and data_id == id(data) and t == trial:
                return dict(metrics)
    metrics = run_trial(trial, seed, budget, data, device)
    if cache:
        _RUN_CACHE.append((copy.deepcopy(trial), seed, budget, device, id(data), dict(metrics)))
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
    data = load_data(budget, root)
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for name, trial in trials.items():
        runs[name] = {}
        for seed in seeds:
            runs[name][seed] = m = _cached_run(trial, seed, budget, data, device, cache)
            if progress:
                shown = ", ".join(Results.format(k, v) for k, v in m.items() if k != "seconds")
                print(f"{name} (seed {seed}): {shown} [{m['seconds']:.1f}s]", flush=True)
    return Results(runs, budget, data.info)


# --- edits used by the chapter's questions ---------------------------------------------------


def post_norm(model: ViT) -> ViT:
    """Replace a :class:`ViT`'s pre-norm encoder by a post-norm one of the same size (in place)."""
    c = model.config
    model.encoder = Encoder(c.depth, c.dim, c.heads, c.mlp_dim, c.dropout, norm_first=False)
    return model


def no_positions(model: ViT) -> ViT:
    """Zero the learned positional embedding and freeze it: the encoder sees no position at all."""
    with torch.no_grad():
        model.pos_embedding.zero_()
    model.pos_embedding.requires_grad_(False)
    return model


def dropout_at(p: float, *places: str) -> Callable[[ViT], ViT]:
    """An ``edit`` that puts dropout ``p`` at ``places`` (and nowhere else) in a :class:`ViT`.

    Places: ``"embedding"`` (tokens + positions), ``"attention"`` (the attention weights),
    ``"attn_out"`` (the attention branch after its output projection, before the residual
    sum), ``"ffn"`` (inside the feed-forward network, after the activation), ``"ffn_out"``
    (the feed-forward branch, before the residual sum).
    """
    unknown = set(places) - set(DROPOUT_PLACES)
    if unknown:
        raise ValueError(f"unknown dropout place(s) {sorted(unknown)}; choose from {DROPOUT_PLACES}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")

    def edit(model: ViT) -> ViT:
        model.dropout.p = p if "embedding" in places else 0.0
        for block in model.encoder.blocks:
            block.attn.dropout = p if "attention" in places else 0.0
            block.drop1.p = p if "attn_out" in places else 0.0
            block.ffn.net[2].p = p if "ffn" in places else 0.0
            block.drop2.p = p if "ffn_out" in places else 0.0
        return model

    return edit


# --- measurements -------------------------------------------------------------------------------


@torch.no_grad()
def layer_tokens(model: ViT, images: Tensor) -> list[Tensor]:
    """The patch tokens entering the encoder and leaving each block: ``depth + 1`` tensors
    ``[batch, patches, dim]`` (the CLS token, if any, is left out)."""
    model.eval()
    x = model.tokens(images)  # [batch, tokens, dim]
    skip = 1 if model.cls_token is not None else 0
    out = [x[:, skip:]]
    for block in model.encoder.blocks:
        x = block(x)
        out.append(x[:, skip:])
    return out


def linear_probe(features: Tensor, labels: Tensor, n_train: int, ridge: float = 1e-3) -> float:
    """Fit a ridge-regression classifier (one-hot targets) on the first ``n_train`` rows and
    return its accuracy on the rest. features ``[N, F]``, labels ``[N]`` int."""
    if not 0 < n_train < len(features):
        raise ValueError(f"n_train must be in (0, {len(features)}), got {n_train}")
    x = features.double()
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-8
    x = torch.cat([(x - mu) / sd, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # [N, F + 1]
    classes = int(labels.max()) + 1
    y = F.one_hot(labels[:n_train], classes).double()  # [n_train, classes]
    a = x[:n_train]
    w = torch.linalg.solve(a.T @ a + ridge * n_train * torch.eye(a.shape[1], dtype=x.dtype), a.T @ y)
    return (x[n_train:] @ w).argmax(1).eq(labels[n_train:]).double().mean().item()


def position_probe(images: int = 400) -> Callable[[ViT, Tensor, Tensor], dict[str, float]]:
    """A ``measure``: can a linear classifier tell a patch token's grid position from the token
    alone, at each depth? Trained on the tokens of ``images // 2`` test images, scored on the
    next ``images // 2``. Returns ``{"probe L0": acc, "probe L1": acc, ...}`` (L0 = encoder input)."""

    def measure(model: ViT, inputs: Tensor, labels: Tensor) -> dict[str, float]:
        device = next(model.parameters()).device
        layers = layer_tokens(model, inputs[:images].to(device))
        n, p = layers[0].shape[:2]
        positions = torch.arange(p).repeat(n)  # [n * p], image-major like the reshape below
        return {
            f"probe L{i}": linear_probe(t.reshape(n * p, -1).cpu(), positions, n_train=(n // 2) * p)
            for i, t in enumerate(layers)
        }

    return measure


def count_macs(model: nn.Module, images: Tensor) -> int:
    """Multiply-accumulates of one forward pass per image: every ``nn.Linear`` plus the two
    attention products (``QK^T`` and ``weights @ V``) of every :class:`MultiHeadAttention`."""
    total = 0

    def linear_hook(module: nn.Linear, inputs, output):
        nonlocal total
        total += output.numel() // output.shape[-1] * module.in_features * module.out_features

    def attention_hook(module: MultiHeadAttention, inputs, output):
        nonlocal total
        b, n, d = inputs[0].shape
        total += 2 * b * n * n * d

    handles = [
        m.register_forward_hook(linear_hook if isinstance(m, nn.Linear) else attention_hook)
        for m in model.modules()
        if isinstance(m, (nn.Linear, MultiHeadAttention))
    ]
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(images)
            model.train(was)
    finally:
        for h in handles:
            h.remove()
    return total // images.shape[0]


def ink_mass(raw: Tensor, labels: Tensor) -> Tensor:
    """Regression target: the mean pixel value of each image ``[N, 1, 28, 28] -> [N]``."""
    return raw.mean(dim=(1, 2, 3))


def top_half_share(raw: Tensor, labels: Tensor) -> Tensor:
    """Regression target: the share of each image's ink in its top 14 rows ``[N, 1, 28, 28] -> [N]``
    (a 7 is top-heavy, a 6 bottom-heavy); unlike :func:`ink_mass` it depends on where the ink is."""
    ink = raw[:, 0]  # [N, 28, 28]
    return ink[:, : ink.shape[1] // 2].sum(dim=(1, 2)) / ink.sum(dim=(1, 2)).clamp_min(1e-8)
