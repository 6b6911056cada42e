"""Command line of the companion.

    python -m companion train [--epochs N] [--data DIR] [--device D] [--out DIR]
    torchrun --standalone --nproc_per_node N -m companion train ...   # data-parallel
    python -m companion evaluate CHECKPOINT [--data DIR] [--device D]
    python -m companion doctor FILE.py:FACTORY ...                    # see its --help

Errors (bad arguments, missing data, unusable files) are one ``error: ...`` line on
stderr and exit status 2, as argparse's own.
"""

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

EXIT_USAGE = 2
DATA_HELP = "folder that contains MNIST/raw (default: $COMPANION_DATA, else a cache)"
NO_DOWNLOAD = "never try to download MNIST"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m companion", description="Transformers That Train companion."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = Recipe()
    t = sub.add_parser(
        "train", help="train the book's default ViT on MNIST and report test accuracy",
        description="Train the book's default ViT on MNIST. Under `torchrun "
        "--nproc_per_node N -m companion train ...` it trains data-parallel (DDP) "
        "over N processes.",
    )
    t.add_argument("--epochs", type=int, default=defaults.epochs,
                   help=f"passes over the training set (default {defaults.epochs})")
    t.add_argument("--data", default=None, help=DATA_HELP)
    t.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, mps ... (default: the best available)")
    t.add_argument("--out", default="runs/vit_mnist",
                   help="where to write checkpoint.pt and metrics.json "
                   "(default runs/vit_mnist)")
    t.add_argument("--seed", type=int, default=defaults.seed,
                   help=f"random seed (default {defaults.seed})")
    t.add_argument("--train-limit", type=int, default=None, metavar="N",
                   help="train on the first N training images only (smoke runs)")
    t.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD)
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    e = sub.add_parser(
        "evaluate", help="test loss and accuracy of a saved ViT on the MNIST test set",
        description="Evaluate a checkpoint written by `train` (or companion.save_vit) "
        "on the 10,000 MNIST test images.",
    )
    e.add_argument("checkpoint", help="a checkpoint (runs/vit_mnist/checkpoint.pt, "
                   "say), or `pretrained` for the model shipped with the package")
    e.add_argument("--data", default=None, help=DATA_HELP)
    e.add_argument("--device", default=None,
                   help="cpu, cuda, mps ... (default: the best available)")
    e.add_argument("--no-download", action="store_true", help=NO_DOWNLOAD)
    # `doctor` is dispatched before parsing (see main): listed here for --help only.
    sub.add_parser("doctor", add_help=False,
                   help="run companion.doctor on your own model: "
                   "doctor FILE.py:FACTORY (see doctor --help)")
    return parser


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _device(name: str | None) -> torch.device | None:
    """``--device`` as a torch.device (None: the default); ValueError when unusable."""
    if not name:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device {name} asked for CUDA, but torch.cuda.is_available() is False"
        )
    return device


def _doctor(argv: list[str]) -> int:
    try:
        from .doctor_cli import main as doctor_main  # imported only when asked for
    except ImportError as exc:
        return _error(f"the doctor command is not available in this companion ({exc})")
    return doctor_main(argv)


def _evaluate(args) -> int:
    from torch.utils.data import DataLoader, TensorDataset

    from .data import describe, mnist, to_tensors
    from .pretrained import WEIGHTS, CheckpointError, load_checkpoint
    from .train import default_device, evaluate

    path = Path(args.checkpoint)
    if args.checkpoint == "pretrained" and not path.exists():
        path = WEIGHTS
    try:
        device = _device(args.device) or default_device()
        model, metadata = load_checkpoint(path)
        test_set = mnist(False, args.data, download=not args.no_download)
    except (ValueError, CheckpointError, MNISTNotFoundError) as exc:
        return _error(str(exc))
    images, labels = to_tensors(test_set)
    loader = DataLoader(TensorDataset(images, labels), batch_size=1000)
    result = evaluate(model.to(device), loader, device=device)
    params = sum(p.numel() for p in model.parameters())
    stem = model.config.stem
    print(f"checkpoint: {path.name} (ViT, {params:,} parameters, {stem} stem)")
    print(describe(test_set))
    print(f"test loss {result['loss']:.4f}, test accuracy {result['accuracy']:.2%} "
          f"(on {device.type})")
    if "test_accuracy" in metadata:
        print(f"recorded when saved: test accuracy {metadata['test_accuracy']:.2%}")
    return 0


def _train(args) -> int:
    from . import distributed
    from .data import mnist_loaders

    if args.epochs < 1:
        return _error(f"--epochs must be at least 1, got {args.epochs}")
    if args.train_limit is not None and args.train_limit < 1:
        return _error(f"--train-limit must be at least 1, got {args.train_limit}")
    recipe = Recipe(epochs=args.epochs, seed=args.seed)
    try:
        device = _device(args.device)
        process = distributed.from_env()  # set by torchrun; None for a plain run
        if process is not None:
            distributed.per_process_batch(recipe.batch_size, process)  # before joining
    except ValueError as exc:
        return _error(str(exc))
    main = process is None or process.main
    try:
        loaders, wrap = None, None
        if process is not None:
            device = distributed.setup(process, device)
        if process is not None or args.train_limit is not None:
            if not main:
                distributed.barrier()  # rank 0 reads (or downloads) MNIST first
            loaders = mnist_loaders(
                batch_size=recipe.batch_size, root=args.data, seed=recipe.seed,
                download=not args.no_download, train_limit=args.train_limit,
            )
            if main and process is not None:
                distributed.barrier()
        if process is not None:
            loaders = distributed.shard(
                loaders, process, recipe.batch_size, recipe.seed
            )
            wrap = lambda model: distributed.wrap(model, device)  # noqa: E731
        result = train_vit_mnist(
            recipe, root=args.data, device=device, download=not args.no_download,
            progress=main and not args.no_progress, loaders=loaders, wrap=wrap,
        )
        if main:
            _write(args, recipe, result, process)
        distributed.barrier()  # nobody leaves before rank 0 has written
    except (MNISTNotFoundError, distributed.SetupError) as exc:
        return _error(str(exc))
    finally:
        distributed.cleanup()
    return 0


def _write(args, recipe: Recipe, result, process) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = process.world_size if process is not None else 1
    metrics = {
        "test_accuracy": result.test["accuracy"],
        "test_loss": result.test["loss"],
        "train_seconds": result.seconds,
        "data": result.data,
        "device": result.device,
        "processes": world,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        "recipe": recipe.to_dict(),
        "history": result.history.to_dict(),
    }
    save_vit(result.model, out / "checkpoint.pt", recipe=recipe.to_dict(),
             test_accuracy=result.test["accuracy"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(result.data)
    where = f"{world} processes ({result.device} each)" if world > 1 else result.device
    print(f"trained {recipe.epochs} epochs in {result.seconds:.1f}s on {where}")
    print(f"test accuracy: {result.test['accuracy']:.2%} (loss {result.test['loss']:.4f})")
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        return _doctor(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        return _evaluate(args)
    return _train(args)


if __name__ == "__main__":
    sys.exit(main())
