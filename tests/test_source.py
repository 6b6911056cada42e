"""show_source: the real source, stored once (Markdown), fenced so no listing can break out."""

import inspect

from companion import show_source
from companion.layers import FeedForward
from companion.source import Source


def test_markdown_is_the_real_source_in_one_fence():
    shown = show_source(FeedForward)
    md = shown._repr_markdown_()
    assert md.startswith("```python\n") and md.endswith("\n```\n")
    assert inspect.getsource(FeedForward).rstrip() in md
    assert str(shown) == inspect.getsource(FeedForward)


def test_plain_text_is_a_summary_not_a_second_copy():
    shown = show_source(FeedForward)
    assert repr(shown) == (
        f"<source of companion.layers.FeedForward: {shown.text.count(chr(10))} lines>"
    )
    assert "def forward" not in repr(shown)


def test_fence_is_longer_than_any_backtick_run_in_the_source():
    def f():
        """Markdown inside: ```python x``` and ````` five."""

    md = Source(f)._repr_markdown_()
    assert md.startswith("``````python\n") and md.endswith("\n``````\n")
