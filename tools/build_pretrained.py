"""Rebuild the trained ViT that ships with the companion (``companion.pretrained()``).

    python tools/build_pretrained.py          # train; write companion/weights/...pt
    python tools/build_pretrained.py --check  # rebuild into a temporary file, compare
                                              # every tensor with the shipped one

The model is the recipe's (``companion.recipe.Recipe()`` defaults, what
``python -m companion train`` trains), trained on the CPU with one thread and a fixed
seed on the book's offline MNIST (the 5,000-image training subset that
``tools/offline_mnist.py`` makes, found through ``--data`` or ``$COMPANION_DATA``), then
evaluated on the 10,000 test images. Its provenance (command, versions, data, seed,
epochs, accuracy, date) is stored in the checkpoint's metadata. With the same versions
on the same kind of machine the rebuilt weights are equal tensor for tensor; the file's
bytes may differ.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from companion.data import RAW_FILES, resolve_root
from companion.idx import check_mnist_files
from companion.pretrained import WEIGHTS, load_checkpoint
from companion.recipe import Recipe, train_vit_mnist
from companion.vit import save_vit

COMMAND = "python tools/build_pretrained.py"
OFFLINE_TRAIN_SIZE = 5_000


def data_files(root: Path) -> dict[str, str]:
    """SHA-256 of each MNIST IDX file the model was trained and tested on."""
    raw = root / "MNIST" / "raw"
    names = [*RAW_FILES[True], *RAW_FILES[False]]
    return {
        name: hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in names
    }


def build(out: Path, data: str | None = None, progress: bool = False) -> dict:
    """Train the recipe's ViT reproducibly; write it with its provenance to ``out``."""
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
    recipe = Recipe()
    root = resolve_root(data)
    start = time.perf_counter()
    result = train_vit_mnist(
        recipe, root=root, device="cpu", progress=progress, download=False
    )
    seconds = time.perf_counter() - start
    metadata = {
        "name": "vit_mnist",
        "description": "the recipe's ViT (companion.recipe.Recipe()) trained on MNIST",
        "command": COMMAND,
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),  # a TorchVersion: weights_only refuses it
            "torchvision": str(torchvision.__version__),
        },
        "machine": f"{platform.machine()} {platform.system()}",
        "device": "cpu",
        "threads": 1,
        "data": result.data,
        "data_sha256": data_files(root),
        "seed": recipe.seed,
        "epochs": recipe.epochs,
        "recipe": recipe.to_dict(),
        "test_accuracy": result.test["accuracy"],
        "test_loss": result.test["loss"],
        "test_images": check_mnist_files(root / "MNIST" / "raw", train=False),
        "train_seconds": round(seconds, 1),
        "date": datetime.date.today().isoformat(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_vit(result.model, out, **metadata)
    return metadata


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two checkpoints' configs and tensors (empty: equal)."""
    (ma, _), (mb, _) = load_checkpoint(a), load_checkpoint(b)
    problems = []
    if ma.config != mb.config:
        problems.append(f"configs differ: {ma.config} vs {mb.config}")
    sa, sb = ma.state_dict(), mb.state_dict()
    if sa.keys() != sb.keys():
        problems.append(f"tensor names differ: {sorted(set(sa) ^ set(sb))}")
    for name in sa.keys() & sb.keys():
        if not torch.equal(sa[name], sb[name]):
            diff = (sa[name].float() - sb[name].float()).abs().max().item()
            problems.append(f"{name}: not equal (largest difference {diff:.3g})")
    return sorted(problems)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="MNIST root (default: $COMPANION_DATA)")
    p.add_argument("--out", type=Path, default=WEIGHTS, help=f"default {WEIGHTS}")
    p.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary file and compare with --out",
    )
    p.add_argument("--progress", action="store_true", help="one line per epoch")
    args = p.parse_args(argv)

    root = resolve_root(args.data)
    try:
        n = check_mnist_files(root / "MNIST" / "raw", train=True)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if n != OFFLINE_TRAIN_SIZE:
        print(
            f"note: {root} holds {n:,} training images, not the offline "
            f"{OFFLINE_TRAIN_SIZE:,}: the model will not be the shipped one",
            file=sys.stderr,
        )

    if args.check:
        if not args.out.is_file():
            print(
                f"error: nothing to check against: {args.out} does not exist",
                file=sys.stderr,
            )
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            rebuilt = Path(tmp) / "rebuilt.pt"
            meta = build(rebuilt, args.data, args.progress)
            problems = compare(args.out, rebuilt)
        _, shipped = load_checkpoint(args.out)
        print(
            f"rebuilt in {meta['train_seconds']:.1f}s with torch "
            f"{meta['versions']['torch']}; the shipped one was made with torch "
            f"{shipped.get('versions', {}).get('torch')}"
        )
        print(
            f"rebuilt test accuracy {meta['test_accuracy']:.2%} "
            f"(loss {meta['test_loss']:.4f}); "
            f"shipped {shipped.get('test_accuracy', float('nan')):.2%} "
            f"(loss {shipped.get('test_loss', float('nan')):.4f})"
        )
        if problems:
            print(f"DIFFERENT: {len(problems)} problem(s):")
            print("\n".join(f"  {line}" for line in problems[:20]))
            return 1
        n_tensors = len(load_checkpoint(args.out)[0].state_dict())
        print(
            f"EQUAL: all {n_tensors} tensors of the rebuilt model equal the shipped "
            "ones (torch.equal)"
        )
        return 0

    meta = build(args.out, args.data, args.progress)
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes) "
        f"in {meta['train_seconds']:.1f}s"
    )
    print(
        f"test accuracy {meta['test_accuracy']:.2%}, loss {meta['test_loss']:.4f} "
        f"({meta['data']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
