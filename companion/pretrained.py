"""The trained ViT shipped with the companion, and checkpoints loaded with clear errors.

    model, metadata = companion.pretrained()     # ViT in eval mode, on the CPU
    metadata["test_accuracy"], metadata["command"], metadata["versions"]

The checkpoint (``companion/weights/vit_mnist.pt``, under a megabyte) is the recipe's
ViT (:class:`companion.recipe.Recipe` defaults) trained by ``tools/build_pretrained.py``
on the CPU with one thread and a fixed seed on the book's offline MNIST (5,000 training
images); its metadata says how it was made and what it scored on the 10,000 test images.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from .vit import ViT, ViTConfig

WEIGHTS = Path(__file__).resolve().parent / "weights" / "vit_mnist.pt"
METADATA_KEYS = (
    "command", "versions", "data", "seed", "epochs",
    "test_accuracy", "test_loss", "date",
)
ZIP, PICKLE = b"PK\x03\x04", b"\x80"  # how torch.save's files start (zip; old pickle)


class CheckpointError(ValueError):
    """A file that is missing or is not a checkpoint written by ``save_vit``."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:200] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[ViT, dict]:
    """:func:`companion.vit.load_vit` with one clear :class:`CheckpointError`, naming
    the file, for a file that is missing, is not a PyTorch file, or holds something
    other than a saved ViT (a bare state dict, say). Loads with ``weights_only=True``:
    nothing in the file is executed. Returns ``(model in eval mode, metadata)``."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(
            f"{path} {what}; pass a checkpoint written by `python -m companion train` "
            "(runs/vit_mnist/checkpoint.pt) or companion.save_vit"
        )
    with path.open("rb") as f:
        head = f.read(8)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
    if not head.startswith((ZIP, PICKLE)):
        raise CheckpointError(
            f"{path} is not a PyTorch file: it starts with {head!r}, not the zip or "
            "pickle header torch.save writes"
        )
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4" (foreign pickle)
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # arbitrary bytes fail the unpickler in arbitrary ways
        why = _first_line(exc)
        if isinstance(exc, pickle.UnpicklingError) and "Weights only" in str(exc):
            why = "it holds Python objects, which weights_only loading refuses"
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint torch.load can read safely ({why})"
        ) from None
    expected = {"config", "state_dict"}
    if not isinstance(checkpoint, dict) or not expected <= checkpoint.keys():
        found = (
            sorted(map(str, checkpoint))[:6] if isinstance(checkpoint, dict)
            else type(checkpoint).__name__
        )
        raise CheckpointError(
            f"{path} is a PyTorch file but not a companion ViT checkpoint: it holds "
            f"{found}, not the 'config' and 'state_dict' that companion.save_vit writes"
        )
    try:
        config = dict(checkpoint["config"])
        if isinstance(config.get("image_size"), list):
            config["image_size"] = tuple(config["image_size"])
        model = ViT(ViTConfig.from_dict(config))
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: its config and weights do not make a companion ViT "
            f"({_first_line(exc)})"
        ) from None
    metadata = checkpoint.get("metadata") or {}
    return model.eval(), dict(metadata)


def pretrained(map_location: str | torch.device = "cpu") -> tuple[ViT, dict]:
    """The recipe's ViT trained on the offline MNIST: ``(model in eval mode, metadata)``

    ``metadata`` holds the provenance: ``command``, ``versions`` (python, torch,
    torchvision), ``data``, ``seed``, ``epochs``, ``test_accuracy`` and ``test_loss``
    (on the 10,000 test images), ``date``, and the full ``recipe``.
    """
    if not WEIGHTS.is_file():
        raise CheckpointError(
            f"the shipped checkpoint {WEIGHTS} is missing from this installation: "
            "reinstall the companion, or rebuild it (python tools/build_pretrained.py)"
        )
    return load_checkpoint(WEIGHTS, map_location)
