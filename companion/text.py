"""Text for language models: a character tokenizer, Tiny Shakespeare, and batches of windows.

Tiny Shakespeare (``tinyshakespeare/input.txt``, the file char-rnn and nanoGPT use) is looked
for where MNIST is (:func:`companion.data.resolve_root`): the ``root`` argument, then
``$COMPANION_DATA``, then the per-user cache. It is downloaded there on a connected machine
and its SHA-256 is always checked.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from .data import ENV_VAR, resolve_root

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_CHARS = 1_115_394


class TinyShakespeareNotFoundError(FileNotFoundError):
    """Tiny Shakespeare is not on disk and could not be downloaded."""


class CharTokenizer:
    """One token per character: ids are positions in the sorted list of distinct characters."""

    def __init__(self, chars: list[str] | str):
        chars = sorted(set(chars))
        if not chars:
            raise ValueError("CharTokenizer needs at least one character")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is every distinct character of ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        """``str`` -> ``LongTensor [len(text)]``."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(
                f"{len(unknown)} character(s) not in the vocabulary: {''.join(unknown)!r}; "
                "build the tokenizer from text that contains them"
            )
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        """Token ids (a 1-D tensor or list) -> ``str``."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence [tokens], got shape {tuple(ids.shape)}; decode each row")
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size - 1}]")
        return "".join(self.chars[i] for i in ids)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_shakespeare(root: str | os.PathLike | None = None, download: bool = True) -> str:
    """The 1,115,394 characters of Tiny Shakespeare, from ``<root>/tinyshakespeare/input.txt``.

    Downloaded from char-rnn's repository when missing and ``download`` is true; the SHA-256
    is checked either way. Raises :class:`TinyShakespeareNotFoundError` saying where it
    looked and how to fix it when the file is absent and cannot be fetched.
    """
    folder = resolve_root(root)
    path = folder / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        if not download:
            raise _not_found(path, "the file is missing and download=False")
        tmp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as f:
                tmp = Path(f.name)
                with urllib.request.urlopen(TINY_SHAKESPEARE_URL, timeout=30) as response:
                    f.write(response.read())
            if _sha256(tmp) != TINY_SHAKESPEARE_SHA256:
                raise _not_found(path, f"the download from {TINY_SHAKESPEARE_URL} has the wrong SHA-256")
            os.replace(tmp, path)
            tmp = None
        except TinyShakespeareNotFoundError:
            raise
        except Exception as exc:  # URLError, HTTPError, timeouts, a read-only folder
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = f"the download failed ({type(exc).__name__}: {first})"
            raise _not_found(path, f"{reason}; tried {TINY_SHAKESPEARE_URL}") from None
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)  # no partial file left behind
    digest = _sha256(path)
    if digest != TINY_SHAKESPEARE_SHA256:
        raise ValueError(
            f"{path} is not Tiny Shakespeare: SHA-256 {digest}, expected {TINY_SHAKESPEARE_SHA256}. "
            "Delete it and call again to download it, or replace it with char-rnn's input.txt."
        )
    return path.read_text(encoding="utf-8")


def _not_found(path: Path, reason: str) -> TinyShakespeareNotFoundError:
    return TinyShakespeareNotFoundError(
        f"Tiny Shakespeare not found: {reason}.\n"
        f"Looked for {path}.\n"
        f"Fix it in one of these ways:\n"
        f"  - connect to the internet and call again with download=True, or\n"
        f"  - download {TINY_SHAKESPEARE_URL} to {path}, or\n"
        f"  - set {ENV_VAR}=/path/to/folder (or pass root=...) where /path/to/folder/tinyshakespeare/input.txt "
        f"is that file (SHA-256 {TINY_SHAKESPEARE_SHA256})."
    )


def train_val_split(ids: Tensor, train_fraction: float = 0.9) -> tuple[Tensor, Tensor]:
    """The first ``train_fraction`` of a 1-D token sequence for training, the rest for validation."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(train_fraction * len(ids))
    return ids[:n], ids[n:]


class RandomWindows:
    """Batches of random windows of a 1-D token sequence, for next-token training with
    :func:`~companion.train.fit`: ``(x [batch, block_size], y [batch, block_size])`` with
    ``y = x`` shifted left by one (``y[:, t]`` is the token after ``x[:, t]``).

    One pass is ``batches`` batches (``len``); each pass draws new windows from a generator
    seeded with ``seed``, so a run repeats exactly.
    """

    def __init__(self, ids: Tensor, block_size: int, batch_size: int, batches: int = 100, seed: int = 0):
        if ids.dim() != 1 or len(ids) <= block_size:
            raise ValueError(f"need a 1-D sequence longer than block_size={block_size}, got shape {tuple(ids.shape)}")
        self.ids, self.block_size, self.batch_size, self.batches = ids, block_size, batch_size, batches
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(block_size + 1)  # [block_size + 1]

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(self.batches):
            starts = torch.randint(len(self.ids) - self.block_size, (self.batch_size,), generator=self.generator)
            chunk = self.ids[starts[:, None] + self._offsets]  # [batch, block_size + 1]
            yield chunk[:, :-1], chunk[:, 1:]


def sequential_windows(ids: Tensor, block_size: int, batch_size: int = 64) -> list[tuple[Tensor, Tensor]]:
    """Every non-overlapping window of ``ids`` (the tail that does not fill one is dropped) as
    ``(x, y)`` batches: :func:`~companion.train.evaluate` over them is the loss over the whole split."""
    n = (len(ids) - 1) // block_size
    if n < 1:
        raise ValueError(f"need more than block_size={block_size} tokens, got {len(ids)}")
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


def unigram_entropy(ids: Tensor, vocab_size: int | None = None) -> float:
    """Entropy (nats per token) of the token frequencies in ``ids``: the loss of the best model
    that ignores context. A language model that learns anything beats it."""
    counts = torch.bincount(ids.flatten(), minlength=vocab_size or 0).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def bits_per_char(loss_nats: float) -> float:
    """Cross-entropy in nats per character -> bits per character."""
    return loss_nats / math.log(2)
