"""The doctor on a reader's own model, from the command line.

    python -m companion doctor path/to/file.py:factory [--input-shape 1,28,28]
        [--classes 10] [--loss ce|nll] [--batch 16]

It imports ``file.py``, calls ``factory()`` with no arguments to build the model, and
runs :func:`companion.doctor.diagnose` on one batch: MNIST test images when the input
shape is MNIST's ``1,28,28`` and the data is found (``$COMPANION_DATA`` or the per-user
cache; it never downloads), otherwise random inputs of that shape with random labels in
``[0, classes)``. ``--loss`` applies ``F.cross_entropy`` (default) or ``F.nll_loss`` to
the model's output as it is. Exit status: 0 with no findings, 1 with findings, 2 for bad
input (a one-line ``error: ...`` on stderr).

``python -m companion.doctor_cli FILE:factory ...`` does the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .doctor import diagnose

MNIST_SHAPE = (1, 28, 28)
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ce": F.cross_entropy,
    "nll": F.nll_loss,
}
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: printed as one ``error: ...`` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m companion doctor",
        description="Run companion.doctor.diagnose on a model built by a factory "
        "function in a Python file, on one batch of MNIST (input shape 1,28,28, when "
        "the data is found) or of random inputs. Exit status: 0 no findings, "
        "1 findings, 2 bad input.",
    )
    p.add_argument("target", metavar="FILE.py:FACTORY",
                   help="the file and the function in it that returns the model "
                   "(called with no arguments)")
    p.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                   help="shape of one input sample, comma-separated (default 1,28,28)")
    p.add_argument("--classes", type=int, default=10,
                   help="random labels are drawn from [0, classes) (default 10)")
    p.add_argument("--loss", choices=sorted(LOSSES), default="ce",
                   help="ce: F.cross_entropy (default); nll: F.nll_loss, applied to "
                   "the model's output as it is")
    p.add_argument("--batch", type=int, default=16,
                   help="samples in the batch (default 16; at least 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for building the model and drawing random inputs "
                   "(default 0)")
    return p


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise UsageError(
            "--input-shape must be positive integers separated by commas (e.g. "
            f"1,28,28), got {text!r}"
        )
    return shape


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_factory(target: str) -> tuple[Path, Callable[[], object]]:
    """``"path/to/file.py:factory"`` -> (the file, the function), or a UsageError."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise UsageError(
            f"expected FILE.py:FACTORY (e.g. my_model.py:build), got {target!r}"
        )
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path_text}")
    spec = importlib.util.spec_from_file_location(f"_doctor_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path_text}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file's own imports of its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # whatever it raises: one line, no traceback
        raise UsageError(f"importing {path_text} failed: {_one_line(exc)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    factory = getattr(module, name, None)
    if factory is None:
        found = sorted(
            k for k, v in vars(module).items()
            if callable(v) and not k.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
        )
        hint = f"; it defines {', '.join(found)}" if found else ""
        raise UsageError(f"{path_text} has no {name!r}{hint}")
    if not callable(factory):
        kind = type(factory).__name__
        raise UsageError(f"{path_text}:{name} is of type {kind}, not a function")
    return path, factory


def build_model(factory: Callable[[], object], target: str) -> nn.Module:
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
        raise UsageError(f"{target}() raised {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"{target}() returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def make_batch(
    shape: tuple[int, ...], batch: int, classes: int, seed: int
) -> tuple[Tensor, Tensor, str]:
    """(inputs, labels, a line saying what they are): MNIST if possible, else random."""
    if shape == MNIST_SHAPE:
        try:
            from .data import mnist, standard_transform

            test_set = mnist(False, download=False, transform=standard_transform())
            pairs = [test_set[i] for i in range(min(batch, len(test_set)))]
        except Exception:  # not found or unreadable: say so, go on with random data
            note = "MNIST not found (set COMPANION_DATA to a folder with MNIST/raw); "
        else:
            images = torch.stack([image for image, _ in pairs])
            labels = torch.tensor([int(label) for _, label in pairs])
            if classes <= int(labels.max()):
                raise UsageError(
                    f"--classes {classes} is too few for MNIST's labels 0..9"
                )
            line = (
                f"data: the first {len(pairs)} MNIST test images (normalised with mean "
                f"0.1307, std 0.3081) and their labels"
            )
            return images, labels, line
    else:
        note = ""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch, *shape), generator=gen)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    line = (
        f"data: {note}{batch} random inputs of shape {shape} drawn from N(0, 1), with "
        f"random labels in [0, {classes})"
    )
    return inputs, labels, line


def check_fit(
    model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, loss: str, classes: int
) -> None:
    """One plain forward pass and the loss: a UsageError naming what does not fit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                out = model(inputs)
            except Exception as exc:
                raise UsageError(
                    f"the model does not take inputs of shape {tuple(inputs.shape)} "
                    f"({_one_line(exc)}); pass --input-shape"
                ) from None
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, Tensor)), out)
            if not isinstance(out, Tensor):
                raise UsageError(
                    f"the model returns a {type(out).__name__}, not a tensor of scores"
                )
            try:
                loss_fn(out, labels)
            except Exception as exc:
                raise UsageError(
                    f"--loss {loss} does not fit outputs of shape {tuple(out.shape)} "
                    f"with labels in [0, {classes}) ({_one_line(exc)}); check --classes"
                ) from None
    finally:
        model.train(was_training)


def main(argv: list[str] | None = None) -> int:
    """Run the doctor command; returns the exit status (0, 1 or 2)."""
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        shape = _shape(args.input_shape)
        if args.batch < 2:
            raise UsageError(f"--batch must be at least 2, got {args.batch}")
        if args.classes < 1:
            raise UsageError(f"--classes must be at least 1, got {args.classes}")
        path, factory = load_factory(args.target)
        name = args.target.rpartition(":")[2]
        torch.manual_seed(args.seed)
        model = build_model(factory, f"{path.name}:{name}")
        inputs, labels, line = make_batch(shape, args.batch, args.classes, args.seed)
        loss_fn = LOSSES[args.loss]
        check_fit(model, inputs, labels, loss_fn, args.loss, args.classes)
        try:
            report = diagnose(model, inputs, labels, loss_fn)
        except Exception as exc:
            raise UsageError(
                f"the doctor could not examine the model: {_one_line(exc)}"
            ) from None
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    loss_name = "F.cross_entropy" if args.loss == "ce" else "F.nll_loss"
    print(f"model: {type(model).__name__} from {path.name}:{name}")
    print(line)
    print(f"loss: {loss_name} on the model's output")
    print()
    print(report.explain())
    return EXIT_OK if report.ok else EXIT_FINDINGS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
