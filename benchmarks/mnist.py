"""MNIST benchmark: the companion's ViT recipe vs an MLP and PyTorch's example CNN.

    python benchmarks/mnist.py                # offline data, the recipe, seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/mnist.py \
        --json benchmarks/results/mnist_cpu.json   # the book's stored CPU result
    python benchmarks/mnist.py --tiny         # seconds-long smoke run (tests use it)
    python benchmarks/mnist.py --full --device cuda --json out.json   # GPU, full MNIST

Protocol: every system is trained with the same recipe (AdamW, warm-up + cosine, label
smoothing, random affine augmentation, batch size), with the same seeds (at least 3),
and for the same *time*. The ViT trains for its recipe's epochs; each baseline gets as
many epochs as fit in the ViT's training time. That budget comes from interleaved
timing: a calibration first trains one epoch of each system in turn (ViT, CNN, MLP;
``--calibration-rounds`` rounds), and the budget is the ViT's epochs times the *median*
ViT epoch; a baseline's epochs are the budget over its own median epoch. On a CPU the
time counted is the process's CPU time (``--clock cpu``), which other jobs on a shared
machine do not inflate; on a GPU it is wall time (``--clock wall``); both are recorded.
The real runs are interleaved too (ViT, CNN, MLP for seed 0, then for seed 1, ...), so
a change of machine load hits every system alike; each system's median training time
is reported beside the budget to show how well it held. Test accuracy is on the full
10,000-image test set. The JSON records the provenance: command, date, machine,
threads, versions, data and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import time

import torch

from companion.baselines import MLP, ExampleCNN
from companion.data import mnist_loaders
from companion.recipe import Recipe
from companion.train import default_device, evaluate, set_seed, train_model
from companion.vit import ViT, preset

SYSTEMS = {
    "vit": lambda r: ViT(r.model),
    "cnn": lambda r: ExampleCNN(),
    "mlp": lambda r: MLP(),
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def machine_line(m: dict) -> str:
    gpu = f", {m['gpu']}" if m["gpu"] else ""
    return (
        f"{m['cpu']} ({m['logical_cpus']} logical CPUs, {m['torch_threads']} torch "
        f"threads){gpu}; torch {m['torch']}; Python {m['python']}"
    )


def train(system: str, recipe: Recipe, dataset, device, epochs: int):
    """Seed, build and train one system; returns (model, history, CPU seconds).

    The CPU seconds are the process's CPU time spent in training (all its threads): on a
    machine shared with other jobs they measure the work, where the wall time also
    measures the other jobs.
    """
    set_seed(recipe.seed)
    model = SYSTEMS[system](recipe)
    cpu_start = time.process_time()
    history = train_model(
        model,
        dataset,
        recipe.train_config(epochs),
        seed=recipe.seed,
        device=device,
        progress=False,
    )
    return model, history, time.process_time() - cpu_start


def clock_seconds(history, cpu_seconds: float, clock: str) -> float:
    return cpu_seconds if clock == "cpu" else history.total_seconds


def calibrate(
    systems, recipe: Recipe, dataset, device, rounds: int, clock: str
) -> dict:
    """Seconds (``clock``: CPU or wall) of one training epoch per system, in rounds.

    Each round trains one epoch of every system in turn on a throwaway model
    (seed 1000 + round), so a change in machine load hits all systems alike. Returns
    every timing.
    """
    times: dict[str, list[float]] = {s: [] for s in systems}
    for r in range(rounds):
        for system in systems:
            calib = dataclasses.replace(recipe, seed=1000 + r)
            _, history, cpu = train(system, calib, dataset, device, epochs=1)
            times[system].append(round(clock_seconds(history, cpu, clock), 3))
        print(
            f"  calibration round {r + 1}/{rounds}: "
            + ", ".join(f"{s} {t[-1]:.2f} s/epoch" for s, t in times.items()),
            flush=True,
        )
    return times


def run(system: str, recipe: Recipe, loaders, device, epochs: int) -> dict:
    load_before = load_average()
    model, history, cpu_seconds = train(
        system, recipe, loaders.train.dataset, device, epochs
    )
    seconds = history.total_seconds
    test = evaluate(model, loaders.test, device=device)
    n_train = len(loaders.train.dataset)
    return {
        "system": system,
        "seed": recipe.seed,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "test_accuracy": test["accuracy"],
        "images_per_second": round(epochs * n_train / seconds, 1),
        "final_train_loss": round(history.train_loss[-1], 4),
        "load_before": load_before,
        "load_after": load_average(),
    }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        rs = [r for r in rows if r["system"] == system]
        accs = [r["test_accuracy"] for r in rs]
        secs = [r["train_seconds"] for r in rs]
        out.append(
            {
                "system": system,
                "params": rs[0]["params"],
                "epochs": rs[0]["epochs"],
                "seeds": [r["seed"] for r in rs],
                "train_seconds": round(statistics.median(secs), 1),
                "train_seconds_min": round(min(secs), 1),
                "train_seconds_max": round(max(secs), 1),
                "cpu_seconds": round(
                    statistics.median(r["cpu_seconds"] for r in rs), 1
                ),
                "test_accuracy_mean": round(statistics.mean(accs), 4),
                "test_accuracy_std": round(statistics.stdev(accs), 4)
                if len(accs) > 1
                else None,
                "test_accuracy_min": round(min(accs), 4),
                "images_per_second": round(
                    statistics.median(r["images_per_second"] for r in rs), 1
                ),
            }
        )
    return out


def table(summary: list[dict]) -> str:
    head = (
        f"{'system':<6} {'params':>9} {'epochs':>6} {'seeds':>5} "
        f"{'CPU s':>7} {'wall s':>7} "
        f"{'test acc (mean ± std, min)':>28}"
    )
    lines = [head, "(CPU s, wall s: medians over the seeds)"]
    for s in summary:
        std = (
            "n/a" if s["test_accuracy_std"] is None else f"{s['test_accuracy_std']:.2%}"
        )
        acc = f"{s['test_accuracy_mean']:.2%} ± {std}, {s['test_accuracy_min']:.2%}"
        lines.append(
            f"{s['system']:<6} {s['params']:>9,} {s['epochs']:>6} {len(s['seeds']):>5} "
            f"{s['cpu_seconds']:>7.1f} {s['train_seconds']:>7.1f} {acc:>28}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--systems", nargs="+", default=["vit", "cnn", "mlp"], choices=sorted(SYSTEMS)
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="seeds for every system (default: 0 1 2; --tiny: 0)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="ViT epochs (default: the recipe's)"
    )
    p.add_argument(
        "--same-epochs",
        action="store_true",
        help="give baselines the ViT's epochs instead of its time",
    )
    p.add_argument(
        "--calibration-rounds",
        type=int,
        default=3,
        help="interleaved one-epoch timing rounds that set the time budget",
    )
    p.add_argument(
        "--data",
        default=None,
        help="MNIST root (default: $COMPANION_DATA, else the cache)",
    )
    p.add_argument("--device", default=None)
    p.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default=None,
        help="what the time budget counts: the process's CPU time (default on a CPU: "
        "other jobs on the machine do not move it) or wall time (default on a GPU)",
    )
    p.add_argument(
        "--full", action="store_true", help="require the full 60,000-image training set"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="smoke run: tiny ViT, 512 training / 1,000 test images, 1 epoch each",
    )
    p.add_argument("--json", default=None, help="write the table and the runs here")
    p.add_argument(
        "--note", default=None, help="why this run deviates (stored in the JSON)"
    )
    args = p.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.tiny else [0, 1, 2])
    if args.calibration_rounds < 1:
        p.error("--calibration-rounds must be at least 1")

    command = "python " + " ".join(
        shlex.quote(a)
        for a in ["benchmarks/mnist.py", *(sys.argv[1:] if argv is None else argv)]
    )
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        command = f"OMP_NUM_THREADS={threads} {command}"
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = load_average()

    recipe = Recipe()
    if args.tiny:
        recipe = dataclasses.replace(
            recipe, model=preset("tiny", stem="conv", patch_size=4), epochs=1
        )
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    device = torch.device(args.device) if args.device else default_device()
    limits = dict(train_limit=512, test_limit=1000) if args.tiny else {}
    loaders = mnist_loaders(
        batch_size=recipe.batch_size, root=args.data, seed=0, **limits
    )
    n_train = len(loaders.train.dataset)
    if args.full and n_train != 60_000:
        print(
            f"error: --full needs the full training set, found {loaders.info}",
            file=sys.stderr,
        )
        return 2
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    m = machine()
    print(f"data: {loaders.info}")
    print(f"machine: {machine_line(m)}; load average at start {load_start}")

    epochs = {s: recipe.epochs for s in args.systems}
    calibration, budget = None, None
    if "vit" in args.systems and not args.same_epochs and len(args.systems) > 1:
        calibration = calibrate(
            args.systems,
            recipe,
            loaders.train.dataset,
            device,
            args.calibration_rounds,
            clock,
        )
        per_epoch = {s: statistics.median(t) for s, t in calibration.items()}
        budget = recipe.epochs * per_epoch["vit"]
        for s in args.systems:
            if s != "vit":
                epochs[s] = 1 if args.tiny else max(1, round(budget / per_epoch[s]))
        print(
            f"budget: {budget:.1f} {clock} s (ViT: {recipe.epochs} epochs x median "
            f"{per_epoch['vit']:.2f} s/epoch); epochs "
            + ", ".join(f"{s} {e}" for s, e in epochs.items()),
            flush=True,
        )

    rows: list[dict] = []
    for seed in seeds:  # interleaved: every system once per seed
        for system in args.systems:
            row = run(
                system,
                dataclasses.replace(recipe, seed=seed),
                loaders,
                device,
                epochs[system],
            )
            rows.append(row)
            print(
                f"  {system} seed {seed}: {row['test_accuracy']:.2%} in "
                f"{row['cpu_seconds']} CPU s, {row['train_seconds']} wall s "
                f"({row['epochs']} epochs, load "
                f"{row['load_before']} -> {row['load_after']})",
                flush=True,
            )

    summary = summarise(rows)
    load_end = load_average()
    print(table(summary))
    if budget is not None:
        print(
            f"budget {budget:.1f} {clock} s; load average at start {load_start}, "
            f"at end {load_end}"
        )
    if args.json:
        protocol = (
            "same recipe, seeds and epochs"
            if args.same_epochs or budget is None
            else "same recipe and seeds; every system gets the same training time "
            f"({clock} seconds): the ViT trains for the recipe's epochs, each baseline "
            "for the epochs that fit in the budget (ViT epochs x median ViT epoch time "
            "from interleaved one-epoch calibration rounds); runs interleaved by seed"
        )
        result = {
            "data": loaders.info,
            "machine": machine_line(m),
            "provenance": {
                "command": command,
                "started": started,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "load_average_start": load_start,
                "load_average_end": load_end,
                **m,
            },
            "device": str(device),
            "protocol": protocol,
            "recipe": recipe.to_dict(),
            "recipe_default_epochs": Recipe().epochs,
            "note": args.note,
            "clock": clock,
            "budget_seconds": None if budget is None else round(budget, 1),
            "calibration_seconds_per_epoch": calibration,
            "summary": summary,
            "runs": rows,
            "date": time.strftime("%Y-%m-%d"),
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
