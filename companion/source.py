"""Show the companion's real source in a notebook, so the book never shows a drifting copy."""

from __future__ import annotations

import inspect


def show_source(obj) -> "IPython.display.Code":  # noqa: F821
    """Syntax-highlighted source of a companion class or function (a plain string outside IPython)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code
    except ImportError:  # pragma: no cover - IPython is present wherever notebooks run
        return source
    return Code(source, language="python")
