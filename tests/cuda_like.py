"""Make PyTorch print every tensor the way it prints a tensor that lives on ``cuda:0``, without a GPU.

Torch decides the repr's suffixes in ``torch._tensor_str._str_intern``: for a tensor that is
not on the default (CPU) device, ``device='cuda:0'`` is the FIRST suffix, before ``dtype=``,
``grad_fn=`` and ``requires_grad=``; ``_add_suffixes`` then wraps suffixes onto a new line when
the last line would pass ``linewidth``. Prepending that suffix here lets torch's own code do
the placement and the line wrapping, so the text is what a GPU run prints (for every tensor,
a superset of what a real run shows: there some tensors stay on the CPU).

Used by tests/test_sanitize.py (reprs) and tests/test_delivery.py (a whole chapter re-executed
by nbval in a kernel that prints this way: the kernel imports this file at start-up).
"""

from __future__ import annotations

import contextlib
import json

import torch._tensor_str as tensor_str

CUDA_SUFFIX = "device='cuda:0'"
_cpu_add_suffixes = tensor_str._add_suffixes


_log: str | None = None


def _cuda_add_suffixes(text, suffixes, indent, force_newline):
    printed = _cpu_add_suffixes(text, [CUDA_SUFFIX, *suffixes], indent, force_newline)
    if _log:
        with open(_log, "a") as f:
            f.write(json.dumps(printed) + "\n")
    return printed


def install(log: str | None = None) -> None:
    """From now on tensors print as on ``cuda:0``; with ``log``, each such repr is appended to that file (JSON lines)."""
    global _log
    _log = log
    tensor_str._add_suffixes = _cuda_add_suffixes


def uninstall() -> None:
    tensor_str._add_suffixes = _cpu_add_suffixes


@contextlib.contextmanager
def printing_as_cuda():
    install()
    try:
        yield
    finally:
        uninstall()
