"""Command line: ``python -m companion train [--epochs N] [--data DIR] [--device D] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from .data import MNISTNotFoundError
from .recipe import Recipe, train_vit_mnist
from .vit import save_vit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m companion", description="Transformers That Train companion.")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = Recipe()
    t = sub.add_parser("train", help="train the book's default ViT on MNIST and report test accuracy")
    t.add_argument("--epochs", type=int, default=defaults.epochs, help=f"passes over the training set (default {defaults.epochs})")
    t.add_argument("--data", default=None, help="folder that contains MNIST/raw (default: $COMPANION_DATA, else a per-user cache)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    t.add_argument("--out", default="runs/vit_mnist", help="where to write checkpoint.pt and metrics.json (default runs/vit_mnist)")
    t.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    t.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.epochs < 1:
        print(f"error: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 2
    try:
        device = torch.device(args.device) if args.device else None
        if device is not None and device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device} asked for CUDA, but torch.cuda.is_available() is False")
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    recipe = Recipe(epochs=args.epochs, seed=args.seed)
    try:
        result = train_vit_mnist(recipe, root=args.data, device=device, progress=not args.no_progress, download=not args.no_download)
    except MNISTNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "test_accuracy": result.test["accuracy"],
        "test_loss": result.test["loss"],
        "train_seconds": result.seconds,
        "data": result.data,
        "device": result.device,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        "recipe": recipe.to_dict(),
        "history": result.history.to_dict(),
    }
    save_vit(result.model, out / "checkpoint.pt", recipe=recipe.to_dict(), test_accuracy=result.test["accuracy"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(result.data)
    print(f"trained {recipe.epochs} epochs in {result.seconds:.1f}s on {result.device}")
    print(f"test accuracy: {result.test['accuracy']:.2%} (loss {result.test['loss']:.4f})")
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
