"""Book-support helpers for the chapters (not model code).

Every chapter uses the same three pieces of apparatus:

- :func:`glue` puts a value computed by a cell into the prose (MyST-NB's ``glue``, so
  the markdown says {glue:text}`name` instead of a typed number). Where the book's tools
  are not installed (Colab) it does nothing, so the chapters run there unchanged.
- :func:`glue_table` renders rows as a Markdown table, glues it for a numbered
  ``{table}`` in the prose, and returns it so Jupyter and Colab show it under the cell.
- :class:`ChapterClock` measures the chapter's own run time: started in the first code
  cell after the install cell, read at the end by :meth:`ChapterClock.finish`, which
  glues the elapsed time, the conditions it was measured under and the amount of
  training data.

A chapter's last cell (tagged ``nbval-ignore-output``: a duration is never the same
twice)::

    run = clock.finish(device=device, train_images=len(data.train))
    print(run)

and its markdown: ``This chapter ran in {glue:text}`chapter_run_time`
{glue:text}`chapter_conditions`, training on {glue:text}`chapter_train_images` images.``
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

try:  # the book's build tools; absent on Colab, where nothing is glued
    from myst_nb import glue as _myst_glue
except ImportError:  # pragma: no cover - depends on the environment
    _myst_glue = None

__all__ = [
    "ChapterClock",
    "RunTime",
    "format_duration",
    "glue",
    "glue_results",
    "glue_table",
    "markdown_table",
]


def glue(name: str, value, display: bool = False):
    """Store ``value`` under ``name`` for the prose: MyST-NB's ``glue``.

    The markdown then shows it with {glue:text}`name`. Does nothing where MyST-NB is not
    installed (Colab: the notebook runs, only nothing is recorded for the book).
    ``display=False`` by default: the prose shows the value, not the cell.
    """
    if _myst_glue is not None:
        _myst_glue(name, value, display=display)


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None
) -> str:
    """A GitHub-flavoured Markdown table.

    ``align`` is one letter per column: ``l``, ``r`` or ``c`` (default: all ``l``).

    Cells are written with ``str()``; a ``|`` inside a cell is escaped.
    """
    header = [str(h) for h in header]
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - set("lrc"):
        raise ValueError(
            f"align={align!r}: give one of 'l', 'r', 'c' per column "
            f"({len(header)} columns)"
        )
    rule = {"l": ":--", "r": "--:", "c": ":-:"}

    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), line(rule[a] for a in align)]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(
                f"row {row!r} has {len(row)} cells, the header {len(header)}"
            )
        lines.append(line(row))
    return "\n".join(lines) + "\n"


def glue_table(
    name: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    align: str | None = None,
):
    """Glue a Markdown table under ``name`` and return it (an ``IPython`` ``Markdown``).

    The prose numbers it with a ``{table}`` whose body pastes it, and refers to it with
    {numref}`name`-style labels::

        ::::{table} What the table shows (no measured numbers in a caption).
        :name: tab-my-table

        :::{glue:md} my_table
        :format: myst
        :::
        ::::

    Tag the cell ``remove-output`` so the book shows the table once, in its numbered
    place; Jupyter and Colab show the returned table under the cell.
    """
    from IPython.display import Markdown

    table = Markdown(markdown_table(header, list(rows), align))
    glue(name, table, display=False)
    return table


def glue_results(name: str, results, metrics: Sequence[str] | None = None):
    """Glue an experiment's ``Results`` as a numbered table's body, and its setting.

    ``name`` holds the table (one row per configuration, ``mean ± std`` per metric; see
    :func:`glue_table`), ``name + "_setting"`` the line that says what the rows are averaged
    over (seeds, budget), for the prose next to the table: a caption cannot hold glue.
    ``results`` is anything with ``rows(metrics) -> (header, rows)`` and ``setting``, as
    :class:`companion.experiments.Results`. Returns the table, for Jupyter and Colab.
    """
    header, rows = results.rows(metrics)
    glue(f"{name}_setting", results.setting, display=False)
    return glue_table(name, header, rows, align="l" + "r" * (len(header) - 1))


def format_duration(seconds: float) -> str:
    """``48 s``, ``3 min 05 s``, ``1 h 02 min``: a duration as a reader says it."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class RunTime:
    """What :meth:`ChapterClock.finish` measured."""

    seconds: float  # wall-clock time
    cpu_seconds: float  # processor time of the chapter's process (all its threads)
    conditions: str  # "on 1 CPU thread", "on a CUDA GPU (NVIDIA H200)"
    train_images: int | None
    load: float | None  # the machine's 1-minute load average at the end (None: unknown)
    cores: int | None

    def __str__(self) -> str:
        parts = [
            f"this chapter ran in {format_duration(self.seconds)} {self.conditions} "
            f"({format_duration(self.cpu_seconds)} of processor time)"
        ]
        if self.train_images is not None:
            parts.append(f"training on {self.train_images:,} images")
        if self.load is not None:
            parts.append(
                f"load average {self.load:.1f} on {self.cores} cores at the end"
            )
        return ",\n".join(parts)


def _conditions(device: torch.device | str | None) -> str:
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return f"on a CUDA GPU ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "on an Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"on {threads} CPU thread{'s' if threads != 1 else ''}"


class ChapterClock:
    """The chapter's own stopwatch: create it in the first cell after the install cell.

    >>> clock = ChapterClock()
    >>> run = clock.finish(train_images=5000, glue_prefix=None)  # at the chapter's end
    >>> run.train_images
    5000
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def elapsed(self) -> float:
        """Wall-clock seconds since the clock was created."""
        return time.perf_counter() - self.start

    def cpu_elapsed(self) -> float:
        """Processor seconds this process (all threads) used since the clock started.

        On one thread of an otherwise idle machine it is close to :meth:`elapsed`; on a
        busy machine the wall-clock time grows while this does not.
        """
        return time.process_time() - self.cpu_start

    def finish(
        self,
        *,
        device: torch.device | str | None = None,
        train_images: int | None = None,
        glue_prefix: str | None = "chapter",
    ) -> RunTime:
        """Read the clock; glue `{prefix}_run_time`, `_cpu_time`, `_conditions`, ....

        ``device`` is where the chapter trained (its conditions: the CPU thread count,
        or the GPU); ``train_images`` how many distinct training images it used. The
        values are strings ready for the prose ("2 min 05 s", "on 1 CPU thread",
        "5,000"); ``_cpu_time`` is the processor time, which a busy machine does not
        inflate.
        ``glue_prefix=None`` glues nothing.
        """
        if train_images is not None and (
            not isinstance(train_images, int) or train_images < 0
        ):
            raise ValueError(
                f"train_images must be a count of images, got {train_images!r}"
            )
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every OS
            load = None
        run = RunTime(
            self.elapsed(),
            self.cpu_elapsed(),
            _conditions(device),
            train_images,
            load,
            os.cpu_count(),
        )
        if glue_prefix:
            glue(f"{glue_prefix}_run_time", format_duration(run.seconds))
            glue(f"{glue_prefix}_cpu_time", format_duration(run.cpu_seconds))
            glue(f"{glue_prefix}_conditions", run.conditions)
            if train_images is not None:
                glue(f"{glue_prefix}_train_images", f"{train_images:,}")
        return run
