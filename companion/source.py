"""Show the companion's real source in a notebook, so the book never shows a drifting copy."""

from __future__ import annotations

import inspect


class Source:
    """The source of one object, stored once in a notebook: as a fenced Markdown code block.

    Jupyter, Colab and the rendered book highlight it; ``text/plain`` holds only a one-line
    summary, so the listing is not stored a second (and third) time as HTML and LaTeX.
    """

    def __init__(self, obj) -> None:
        self.text = inspect.getsource(obj)
        module = getattr(obj, "__module__", None) or ""
        self.name = f"{module}.{getattr(obj, '__qualname__', type(obj).__name__)}"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        lines = self.text.count("\n")
        return f"<source of {self.name}: {lines} lines>"

    def _repr_markdown_(self) -> str:
        fence = "`" * max(3, 1 + max((len(r) for r in _runs(self.text)), default=0))
        return f"{fence}python\n{self.text.rstrip()}\n{fence}\n"


def _runs(text: str) -> list[str]:
    """Runs of backticks in ``text`` (the fence must be longer than any of them)."""
    out, run = [], ""
    for ch in text:
        if ch == "`":
            run += ch
        elif run:
            out.append(run)
            run = ""
    return out + ([run] if run else [])


def show_source(obj) -> Source:
    """The real source of a companion class or function, displayed as highlighted Python."""
    return Source(obj)
