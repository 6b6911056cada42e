"""The book's prose holds no hand-typed measurements and no claims about runs it does not show.

nbval holds the stored *outputs* to what the code produces; this test holds the *text* to the
same promise. A number a reader could take for a measurement must come from a cell: MyST-NB
glue (``{glue:text}`name:.1%` ``) or a table rendered by a cell. The rule, applied to every
chapter's Markdown (``book/*.ipynb`` Markdown cells, ``book/*.md``) and to figure captions
and alt text (``{figure}``/``{glue:figure}`` directives, Markdown images, notebook
``mystnb`` metadata):

- **Not allowed** in prose: a decimal (``0.93``, ``.5``, ``2e-3``), a percentage (``64 %``,
  ``98 percent``), a duration (``190 s``, ``12 ms``, ``3 minutes``), a throughput
  (``800 images/s``), a size in bytes (``12 MB``), accuracy points (``16 points ahead``), a
  spread with a number (``0.4 ± 0.1``), a ratio (``3×``, ``3x``, ``three times larger``), a
  test statistic (``p = 0.04``, ``t = 2.1``), an approximate number (``about 90``, ``near
  step 90``: an approximation is a measurement).
- **Allowed**: integers that count or name things (``6 layers``, ``10 classes``,
  ``1,000 steps``, years, chapter numbers) and shapes (``28×28``, ``7 × 7``).
- **Exempt** (not scanned): math (``$...$``, ``$$...$$``, amsmath environments,
  ``{math}``), inline code and fenced code, roles and their content (``{glue:text}``,
  ``{doc}``, ``{cite}``), ``{glue}`` directives, URLs, link targets, arXiv/DOI ids, HTML
  comments. So settings and constants go in inline code or math: `` `dropout=0.1` ``,
  ``$3 \\times 10^{-3}$``.

It also fails on claims about runs the book does not contain ("while writing", "in our
experiments", "we found ... earlier") in prose and in code-cell comments, and on a cell
tagged ``nbval-ignore-output`` that neither asserts anything nor says why not in a comment
``# not asserted: ...`` (nbval does not compare such a cell, so its asserts are what keep the
text about it true).

    python tests/test_prose.py                  # every finding, and a count per chapter
    python tests/test_prose.py book/03_encoder.ipynb
    pytest tests/test_prose.py -k 03_encoder    # one chapter
"""

from __future__ import annotations

import io
import json
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"

# ---------------------------------------------------------------------------------------
# What is exempt: removed (replaced by a space) before the number patterns run.

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
# Directives whose body is prose (scanned); any other fenced block is code or math.
_PROSE_DIRECTIVES = re.compile(
    r"\{(figure|glue:figure|note|tip|warning|important|caution|attention|danger|error|hint|"
    r"seealso|admonition|margin|sidebar|topic|epigraph|dropdown|card|tab-item|table|"
    r"list-table|exercise|solution|prf:[a-z]+)\}"
)
_MATH_ENV = re.compile(
    r"\\begin\{(equation|align|gather|multline|eqnarray|flalign|alignat|split|math)\*?\}"
    r".*?\\end\{\1\*?\}",
    re.S,
)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]+?(?<![\s\\])\$(?!\d)")
_ROLE = re.compile(r"\{[A-Za-z][\w:.-]*\}(`+)(?:(?!\1).)+?\1", re.S)  # {glue:text}`x:.1%`
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LINK_TARGET = re.compile(r"\]\([^)\s]*(?:\s+\"[^\"]*\")?\)")  # [text](target "title")
_URL = re.compile(r"<?(?:https?|ftp)://[^\s)>\]]+>?|www\.[^\s)>\]]+")
_IDS = re.compile(r"\b(?:arXiv:\s?|doi:\s?|10\.\d{4,}/)\S+", re.I)
_HTML_TAG = re.compile(r"<[A-Za-z/][^>]*>")
_HTML_TEXT_ATTR = re.compile(r"\b(?:alt|title)\s*=\s*\"([^\"]*)\"")

# ---------------------------------------------------------------------------------------
# What is flagged.

_NUM = r"\d+(?:[.,]\d+)*"
_WORD_NUMBERS = r"(?:two|three|four|five|six|seven|eight|nine|ten|a hundred|a thousand)"
_COMPARATIVE = (
    r"(?:as|larger|smaller|bigger|faster|slower|more|less|fewer|longer|shorter|higher|"
    r"lower|greater|wider|narrower|better|worse|the)"
)
NUMBER_PATTERNS: dict[str, re.Pattern[str]] = {
    "decimal": re.compile(r"(?<![\w.])\d*\.\d+(?:e[-+]?\d+)?(?![\w.]*\d)|\b\d+e[-+]?\d+\b"),
    "percentage": re.compile(rf"(?<![\w.]){_NUM}\s*(?:%|‰|percent\b|per cent\b)", re.I),
    # "190 s", "12 ms", "3 minutes"; a bare "s"/"h" needs a space ("the 2s and 7s" are digits)
    "duration": re.compile(
        rf"(?<![\w.]){_NUM}(?:\s*(?:sec|secs|seconds?|ms|µs|μs|us|ns|min|mins|minutes?|hrs?|"
        r"hours?)|\s+[sh])\b(?!-)",
    ),
    "throughput": re.compile(rf"(?<![\w.]){_NUM}\s*[\w-]*\s*/\s*(?:s|sec|second)\b"),
    "size in bytes": re.compile(rf"(?<![\w.]){_NUM}\s*[KMGT]i?B\b"),
    # "16 points ahead", "by 10 points", "within 5 points of" (not "between 5 points")
    "accuracy points": re.compile(
        rf"\b(?:by|within|about|roughly|nearly|almost|some|over)\s+{_NUM}\s+"
        rf"(?:percentage\s+)?points?\b|(?<![\w.]){_NUM}\s+(?:percentage\s+)?points?\s+"
        r"(?:of\s+accuracy|ahead|behind|better|worse|higher|lower|above|below|or\s+more|"
        r"or\s+less|of\s+(?:its|the|their)\s+best)\b",
        re.I,
    ),
    # a number on either side: "0.4 ± 0.1", "± 2"; "mean ± std" names a notation
    "spread": re.compile(r"\d\s*(?:±|\+/-)|(?:±|\+/-)\s*\d"),
    "ratio": re.compile(
        rf"(?<![\w.]){_NUM}\s?×(?!\s?\d)|(?<![\w.]){_NUM}x(?![\w])|(?<![\w.])×{_NUM}"
        rf"(?!\s?×)|\b(?:{_NUM}|{_WORD_NUMBERS})\s+times\s+{_COMPARATIVE}\b|"
        rf"\btwice\s+(?:as|the)\b|\b{_NUM}-fold\b",
        re.I,
    ),
    # "about 90", "near step 90", "~3": an approximate number is a measured one
    "approximate number": re.compile(
        r"(?:\b(?:about|approximately|roughly|around|nearly|almost|near|circa)\s+|[~≈]\s*)"
        r"(?:(?:step|epoch|iteration|block|layer)\s+)?\d",
        re.I,
    ),
    "test statistic": re.compile(r"(?<![\w])[ptFr]\s*(?:=|<|>|≈|≤|≥)\s*-?\d"),
}

UNSHOWN_RUNS = re.compile(
    r"\b(?:while|when)\s+(?:writing|preparing|drafting)\b|"
    r"\bat\s+the\s+time\s+of\s+writing\b|"
    r"\bin\s+our\s+(?:own\s+|earlier\s+|previous\s+|other\s+)?"
    r"(?:experiments?|runs|tests|trials)\b|"
    r"\bin\s+(?:an?\s+|one\s+)?(?:earlier|previous|unpublished|other|longer|separate)\s+"
    r"(?:runs?|experiments?|versions?|sessions?)\b|"
    r"\bduring\s+development\b|"
    r"\b(?:we|I)\s+(?:found|saw|observed|noticed|measured|got)\b[^.]{0,80}?"
    r"\b(?:earlier|before|previously|once)\b",
    re.I,
)


@dataclass(frozen=True)
class Finding:
    where: str  # "book/03_encoder.ipynb cell 39" or "... cell 40 caption"
    kind: str  # a NUMBER_PATTERNS key, or "unshown run"
    text: str  # the match, with a little context

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.text!r}"


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))  # keep offsets and line breaks out of the way


def strip_exempt(markdown: str) -> str:
    """``markdown`` with everything exempt from the rule blanked out (code, math, roles...)."""
    lines, out, stack = markdown.splitlines(), [], []  # stack: open fences
    for line in lines:
        m = _FENCE.match(line)
        if stack:
            fence, prose = stack[-1]
            closes = m is not None and m["fence"][0] == fence[0] and len(m["fence"]) >= len(
                fence
            ) and not m["info"].strip()
            if closes:
                stack.pop()
                out.append("")
                continue
            if m is not None and prose and m["info"].strip():  # a block nested in prose
                stack.append((m["fence"], bool(_PROSE_DIRECTIVES.match(m["info"].strip()))))
                out.append("")
                continue
            if not prose:
                out.append("")
            elif re.match(r"^\s*:(?!alt:|caption:)[\w-]+:", line):  # directive options
                out.append("")
            else:
                out.append(re.sub(r"^\s*:(?:alt|caption):", " ", line))
            continue
        if m is not None:
            info = m["info"].strip()
            stack.append((m["fence"], bool(_PROSE_DIRECTIVES.match(info))))
            # a prose directive's argument is a path or a glue name: not scanned
            out.append("")
            continue
        out.append(line)
    text = "\n".join(out)
    text = _HTML_COMMENT.sub(_blank, text)
    text = _MATH_ENV.sub(_blank, text)
    text = _DISPLAY_MATH.sub(_blank, text)
    text = _ROLE.sub(_blank, text)
    text = _INLINE_CODE.sub(_blank, text)
    text = _INLINE_MATH.sub(_blank, text)
    text = _LINK_TARGET.sub(lambda m: "]" + " " * (len(m.group(0)) - 1), text)
    text = _URL.sub(_blank, text)
    text = _IDS.sub(_blank, text)
    text = _HTML_TAG.sub(lambda m: " ".join(_HTML_TEXT_ATTR.findall(m.group(0))) or " ", text)
    return text


def _context(text: str, start: int, end: int) -> str:
    snippet = text[max(0, start - 30) : end + 30]
    return " ".join(snippet.split())


def find_numbers(markdown: str) -> list[tuple[str, str]]:
    """``(kinds, context)`` for every hand-typed measured-looking number in ``markdown``.

    Matches that overlap (``about 70 %`` is a percentage and an approximate number) are one
    finding; ``kinds`` names every pattern that matched it, comma-separated.
    """
    text = strip_exempt(markdown)
    spans = sorted(
        (m.start(), m.end(), kind)
        for kind, pattern in NUMBER_PATTERNS.items()
        for m in pattern.finditer(text)
    )
    merged: list[list] = []  # [start, end, kinds]
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] += [kind] if kind not in merged[-1][2] else []
        else:
            merged.append([start, end, [kind]])
    return [(", ".join(kinds), _context(text, a, b)) for a, b, kinds in merged]


def number_kinds(markdown: str) -> set[str]:
    """Every pattern that matched somewhere in ``markdown``."""
    return {k for kinds, _ in find_numbers(markdown) for k in kinds.split(", ")}


def find_unshown_runs(text: str) -> list[str]:
    """Phrases in ``text`` that describe a run the book does not contain."""
    return [_context(text, m.start(), m.end()) for m in UNSHOWN_RUNS.finditer(text)]


def code_comments(source: str) -> str:
    """The ``#`` comments of a code cell (IPython magics and shell lines are skipped)."""
    python = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(python).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[1] for line in python.splitlines() if "#" in line)
    return "\n".join(t.string[1:] for t in tokens if t.type == tokenize.COMMENT)


def _captions(metadata: dict) -> Iterator[tuple[str, str]]:
    """Caption and alt text a code cell's metadata gives its figure (MyST-NB ``mystnb``)."""
    mystnb = metadata.get("mystnb", {}) if isinstance(metadata, dict) else {}
    for key in ("figure", "image", "markdown"):
        section = mystnb.get(key, {})
        if isinstance(section, dict):
            for field in ("caption", "alt"):
                if isinstance(section.get(field), str):
                    yield f"{key} {field}", section[field]
    # jupyter-book "glue" style or plain keys some notebooks use
    for field in ("caption", "alt"):
        if isinstance(metadata.get(field), str):
            yield field, metadata[field]


def chapter_findings(path: Path) -> list[Finding]:
    """Every finding in one chapter (a notebook or a Markdown page)."""
    name = f"book/{path.name}"
    findings: list[Finding] = []

    def scan_prose(where: str, text: str) -> None:
        findings.extend(Finding(where, kind, ctx) for kind, ctx in find_numbers(text))
        findings.extend(Finding(where, "unshown run", ctx) for ctx in find_unshown_runs(text))

    if path.suffix == ".md":
        scan_prose(name, path.read_text(encoding="utf-8"))
        return findings
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(notebook["cells"]):
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            scan_prose(f"{name} cell {i}", source)
        elif cell["cell_type"] == "code":
            comments = code_comments(source)
            findings.extend(
                Finding(f"{name} cell {i} comment", "unshown run", ctx)
                for ctx in find_unshown_runs(comments)
            )
        for field, text in _captions(cell.get("metadata", {})):
            scan_prose(f"{name} cell {i} {field}", text)
    return findings


NOT_ASSERTED = re.compile(r"^\s*# not asserted: \S", re.M)
ASSERTS = re.compile(r"^\s*assert\b", re.M)


def unguarded_cells(notebook: dict) -> list[int]:
    """Cells tagged ``nbval-ignore-output`` that neither ``assert`` anything nor say why not.

    nbval does not compare such a cell's output, so an ``assert`` of the conclusion the text
    draws from it is what keeps the text true; a cell with nothing to assert (a timing) says
    so in a comment that starts with ``# not asserted:``.
    """
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        and "nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])
        and not ASSERTS.search(src := "".join(cell.get("source", "")))
        and not NOT_ASSERTED.search(src)
    ]


def chapters() -> list[Path]:
    return sorted([*BOOK.glob("*.ipynb"), *BOOK.glob("*.md")])


# ---------------------------------------------------------------------------------------
# The detector itself is tested: planted examples it must catch, and text it must pass.

MUST_FLAG = [
    ("The model reached 0.93 accuracy.", "decimal"),
    ("a loss of 1.877 after training", "decimal"),
    ("starts at .5 and", "decimal"),
    ("the rate 3e-3 worked best", "decimal"),
    ("test accuracy was 64 %.", "percentage"),
    ("test accuracy was 98.3%.", "percentage"),
    ("near 70 percent", "percentage"),
    ("one epoch took 190 s on the CPU", "duration"),
    ("a forward pass costs 12 ms", "duration"),
    ("the chapter runs in 3 minutes", "duration"),
    ("about 829 images/s", "throughput"),
    ("the checkpoint is 12 MB", "size in bytes"),
    ("about 16 points ahead", "accuracy points"),
    ("accuracy 91.2 ± 0.4", "spread"),
    ("accuracy 91 +/- 2", "spread"),
    ("by 10 points or more", "accuracy points"),
    ("within 5 points of its best", "accuracy points"),
    ("the CNN got 3× the time", "ratio"),
    ("about 1.6× the ViT's time", "ratio"),
    ("the GPU is 3x faster", "ratio"),
    ("a ×4 speed-up", "ratio"),
    ("about three times longer", "ratio"),
    ("3 times larger learning rates", "ratio"),
    ("twice as fast", "ratio"),
    ("a 10-fold drop", "ratio"),
    ("the test gives p = 0.04 here", "test statistic"),
    ("with t = 2.1 it is", "test statistic"),
    ("p<0.05", "test statistic"),
    ("the loss plateaus until about step 90", "approximate number"),
    ("it takes roughly 20 epochs", "approximate number"),
    ("Caption: plateau until about step 90 at 0.12 loss.", "decimal"),
    ("| normalised | 70.9 |", "decimal"),
    ("**98.3 %** on the test set", "percentage"),
    ("![A curve that ends at 0.98 accuracy](fig.png)", "decimal"),
]

MUST_FLAG_RUNS = [
    "While writing this chapter, one run diverged.",
    "In our experiments the gap closed.",
    "we found that it diverged earlier",
    "in an earlier run the loss exploded",
    "At the time of writing this was true.",
]

MUST_PASS = [
    "The encoder has 6 layers and 10 classes.",
    "We train for 1,000 steps with batch size 64, in 2020 as in chapter 3.",
    "Patches of 7×7 pixels on a 28 × 28 image; 4x4 patches too.",
    "Use `dropout=0.1` and `lr=3e-3`.",
    "The scale is $\\sqrt{d_k}$ and $p = 0.1$ and $3 \\times 10^{-3}$.",
    "$$\nt = \\frac{\\bar d}{s_d / \\sqrt{n}} \\approx 4.30\n$$",
    "\\begin{equation}\nx = 0.5\n\\end{equation}",
    "The accuracy was {glue:text}`acc:.1%` and the loss {glue:text}`loss:.3f`.",
    "```python\nx = 0.93  # 12 ms\n```",
    "```{code-cell} python\nprint(98.3)\n```",
    "```{glue:figure} fig_1.5\n:name: fig-a\n:width: 80%\n\nA curve that falls.\n```",
    "See [nbval](https://github.com/org/nbval/releases/tag/0.11.0) and arXiv:2002.04745.",
    "The {doc}`02_attention` chapter and {cite}`vaswani2017`.",
    "<!-- measured 0.93 -->",
    "1. First item\n2. Second item",
    "Section 7 shows it; e.g. the first 30 steps; i.e. one step.",
    "`Budget(train_size=None, epochs=20)` on a GPU.",
    "A table rendered by a cell shows the accuracies.",
    "we ran every configuration with three seeds",
    "The weights 0x7f3 are an address in `0x7f3`",
    "Report the mean ± std over seeds.",
    "Distances between 5 points and 3 points; a float32 is 4 bytes.",
    "look at the 2s and 7s",
    "the 8 heads (2 blocks × 4) of the model",
]


@pytest.mark.parametrize("text, kind", MUST_FLAG, ids=[t for t, _ in MUST_FLAG])
def test_detector_flags_hand_typed_numbers(text, kind):
    assert kind in number_kinds(text), find_numbers(text)


@pytest.mark.parametrize("text", MUST_FLAG_RUNS)
def test_detector_flags_unshown_runs(text):
    assert find_unshown_runs(text)


@pytest.mark.parametrize("text", MUST_PASS)
def test_detector_passes_exempt_and_counting_numbers(text):
    assert find_numbers(text) == [] and find_unshown_runs(text) == []


def test_detector_reads_captions_and_code_comments(tmp_path):
    planted = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "Clean."]},
            {
                "cell_type": "code",
                "metadata": {
                    "mystnb": {
                        "figure": {"caption": "Loss plateaus until step 90 at 0.12."},
                        "image": {"alt": "A curve ending near 98 percent."},
                    }
                },
                "source": ["x = 1  # while writing, this diverged once\n", "y = 0.5\n"],
                "outputs": [],
                "execution_count": 1,
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "99_planted.ipynb"
    path.write_text(json.dumps(planted))
    found = {(f.where, f.kind) for f in chapter_findings(path)}
    assert found == {
        ("book/99_planted.ipynb cell 1 figure caption", "decimal"),
        ("book/99_planted.ipynb cell 1 image alt", "approximate number, percentage"),
        ("book/99_planted.ipynb cell 1 comment", "unshown run"),
    }


def test_unguarded_cells_finds_ignored_cells_without_assert():
    def cell(source, tags=("nbval-ignore-output",)):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source}

    notebook = {"cells": [
        cell("acc = train()\nassert acc > 0.9"),
        cell("print(time.time() - start)\n# not asserted: a timing"),
        cell("acc = train()\nprint(acc)"),  # the planted one
        cell("print(acc)", tags=()),  # compared by nbval: fine
        cell("# assert acc > 0.9\nprint(acc)"),  # a commented-out assert does not count
    ]}
    assert unguarded_cells(notebook) == [2, 4]


@pytest.mark.parametrize(
    "path", [p for p in chapters() if p.suffix == ".ipynb"], ids=lambda p: p.name
)
def test_ignored_output_cells_assert_what_the_text_says(path):
    cells = unguarded_cells(json.loads(path.read_text(encoding="utf-8")))
    assert not cells, (
        f"book/{path.name}: cells {cells} are tagged nbval-ignore-output but assert nothing; "
        "assert the conclusion the text draws from them, or add a comment "
        "'# not asserted: <why>' (for a timing, say)"
    )


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.name)
def test_chapter_has_no_hand_typed_numbers_or_unshown_runs(path):
    findings = chapter_findings(path)
    assert not findings, (
        f"{len(findings)} hand-typed measured number(s) or unshown-run claim(s) in "
        f"book/{path.name}: glue them from the cell that computes them "
        "({glue:text}`name:.1%`), render a table from a cell, or put a setting in inline "
        "code or math.\n" + "\n".join(map(str, findings))
    )


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or chapters()
    total = 0
    for path in paths:
        findings = chapter_findings(path)
        total += len(findings)
        for f in findings:
            print(f)
        print(f"== book/{path.name}: {len(findings)}", flush=True)
    print(f"== total: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
