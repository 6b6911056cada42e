"""MNIST benchmark: the companion's default ViT recipe vs an MLP and PyTorch's example CNN.

    python benchmarks/mnist.py                      # offline data, default recipe, 1 seed
    python benchmarks/mnist.py --seeds 0 1 2 --json benchmarks/results/mnist_cpu.json
    python benchmarks/mnist.py --tiny               # seconds-long smoke run (tests use it)
    python benchmarks/mnist.py --full --device cuda --json bench.json   # GPU runner, full MNIST

Protocol: every system is trained with the same recipe (AdamW, warm-up + cosine, label
smoothing, random affine augmentation, batch size) and, by default, for the same *time*: the
ViT trains for its recipe's epochs, and each baseline gets as many epochs as fit in the ViT's
measured training time (from a timed calibration epoch). Test accuracy is on the full
10,000-image test set. Prints one table and optionally writes it as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time

import torch

from companion.baselines import MLP, ExampleCNN
from companion.data import mnist_loaders
from companion.recipe import Recipe
from companion.train import default_device, evaluate, set_seed, train_model
from companion.vit import ViT, preset

SYSTEMS = {"vit": lambda r: ViT(r.model), "cnn": lambda r: ExampleCNN(), "mlp": lambda r: MLP()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = default_device()
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({torch.get_num_threads()} threads){gpu}; torch {torch.__version__}; default device {dev.type}"


def calibrate(system: str, recipe: Recipe, loaders, device) -> float:
    """Seconds per training epoch of ``system`` (one timed epoch on a throwaway model)."""
    set_seed(recipe.seed + 1000)
    model = SYSTEMS[system](recipe)
    history = train_model(model, loaders.train, recipe.train_config(epochs=1), seed=recipe.seed, device=device, progress=False)
    return history.total_seconds


def run(system: str, recipe: Recipe, loaders, device, epochs: int) -> dict:
    set_seed(recipe.seed)
    model = SYSTEMS[system](recipe)
    history = train_model(model, loaders.train, recipe.train_config(epochs), seed=recipe.seed, device=device, progress=False)
    seconds = history.total_seconds
    test = evaluate(model, loaders.test, device=device)
    n_train = len(loaders.train.dataset)
    return {
        "system": system,
        "seed": recipe.seed,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "test_accuracy": test["accuracy"],
        "images_per_second": round(epochs * n_train / seconds, 1),
        "final_train_loss": round(history.train_loss[-1], 4),
    }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        rs = [r for r in rows if r["system"] == system]
        accs = [r["test_accuracy"] for r in rs]
        out.append({
            "system": system,
            "params": rs[0]["params"],
            "epochs": rs[0]["epochs"],
            "seeds": [r["seed"] for r in rs],
            "train_seconds": round(statistics.mean(r["train_seconds"] for r in rs), 1),
            "test_accuracy_mean": round(statistics.mean(accs), 4),
            "test_accuracy_std": round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
            "test_accuracy_min": round(min(accs), 4),
            "images_per_second": round(statistics.mean(r["images_per_second"] for r in rs), 1),
        })
    return out


def table(summary: list[dict]) -> str:
    lines = [
        f"{'system':<6} {'params':>9} {'epochs':>6} {'train s':>8} {'test acc (mean ± std, min)':>30} {'images/s':>9}",
    ]
    for s in summary:
        acc = f"{s['test_accuracy_mean']:.2%} ± {s['test_accuracy_std']:.2%}, {s['test_accuracy_min']:.2%}"
        lines.append(
            f"{s['system']:<6} {s['params']:>9,} {s['epochs']:>6} {s['train_seconds']:>8.1f} {acc:>30} {s['images_per_second']:>9.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", nargs="+", default=["vit", "cnn", "mlp"], choices=sorted(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--baseline-seeds", nargs="+", type=int, default=None, help="seeds for the CNN and MLP (default: --seeds)")
    p.add_argument("--epochs", type=int, default=None, help="ViT epochs (default: the recipe's)")
    p.add_argument("--same-epochs", action="store_true", help="give baselines the ViT's epochs instead of its time")
    p.add_argument("--data", default=None, help="MNIST root (default: $COMPANION_DATA, else the cache)")
    p.add_argument("--device", default=None)
    p.add_argument("--full", action="store_true", help="require the full 60,000-image training set")
    p.add_argument("--tiny", action="store_true", help="smoke run: tiny ViT, 512 training / 1,000 test images, 1 epoch each")
    p.add_argument("--json", default=None, help="write the table and the runs here")
    args = p.parse_args(argv)

    recipe = Recipe()
    if args.tiny:
        recipe = dataclasses.replace(recipe, model=preset("tiny", stem="conv", patch_size=4), epochs=1)
    if args.epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    device = torch.device(args.device) if args.device else default_device()
    limits = dict(train_limit=512, test_limit=1000) if args.tiny else {}
    loaders = mnist_loaders(batch_size=recipe.batch_size, root=args.data, seed=0, **limits)
    n_train = len(loaders.train.dataset)
    if args.full and n_train != 60_000:
        print(f"error: --full needs the full training set, found {loaders.info}", file=sys.stderr)
        return 2
    print(f"data: {loaders.info}")
    print(f"machine: {machine()}")

    rows: list[dict] = []
    vit_seconds: list[float] = []
    for system in args.systems:
        epochs = recipe.epochs
        if system != "vit" and not args.same_epochs and vit_seconds:
            per_epoch = calibrate(system, recipe, loaders, device)
            epochs = max(1, round(statistics.mean(vit_seconds) / per_epoch)) if not args.tiny else 1
        seeds = args.seeds if system == "vit" or args.baseline_seeds is None else args.baseline_seeds
        for seed in seeds:
            row = run(system, dataclasses.replace(recipe, seed=seed), loaders, device, epochs)
            rows.append(row)
            print(f"  {system} seed {seed}: {row['test_accuracy']:.2%} in {row['train_seconds']}s ({epochs} epochs)", flush=True)
            if system == "vit":
                vit_seconds.append(row["train_seconds"])

    summary = summarise(rows)
    print(table(summary))
    if args.json:
        result = {
            "data": loaders.info,
            "machine": machine(),
            "device": str(device),
            "protocol": "same recipe; baselines get the ViT's training time" if not args.same_epochs else "same recipe and epochs",
            "recipe": recipe.to_dict(),
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
