"""The book's structure: every chapter is listed, titled, executed, and installs the companion on Colab only."""

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
README = (ROOT / "README.md").read_text()


def toc_files():
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        for chapter in part["chapters"]:
            files.append(chapter["file"])
            files += [s["file"] for s in chapter.get("sections", [])]
    return files


NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def colab_url(notebook: str) -> str:
    """Where Colab opens ``notebook`` (a repository path such as ``book/00_x.ipynb``), from _config.yml alone.

    The same URL that the book's launch button gets (``launch_buttons.colab_url`` + ``repository``).
    """
    repo = CONFIG["repository"]
    org_repo = urlparse(repo["url"]).path.strip("/")
    path = "/".join(p for p in (repo.get("path_to_book", "").strip("/"), notebook) if p)
    return f"{CONFIG['launch_buttons']['colab_url'].rstrip('/')}/github/{org_repo}/blob/{repo.get('branch', 'main')}/{path}"


def toc_notebooks() -> list[str]:
    """Repository paths of the notebooks listed in _toc.yml, in book order."""
    return [f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def load(path):
    return json.loads(path.read_text())


def test_every_toc_entry_exists_and_every_notebook_is_listed():
    listed = set()
    for f in toc_files():
        matches = [p for p in (ROOT / f"{f}.ipynb", ROOT / f"{f}.md") if p.exists()]
        assert matches, f"_toc.yml lists {f}, which does not exist"
        listed.add(matches[0])
    assert NOTEBOOKS, "the book has no notebooks"
    assert set(NOTEBOOKS) <= listed, f"not in _toc.yml: {sorted(set(NOTEBOOKS) - listed)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_titled_executed_and_launchable(path):
    nb = load(path)
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# "), "first cell must be a '# Title'"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", "Colab launch buttons need a kernelspec"
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), "re-run the notebook top to bottom (make notebooks)"
    for c in code:
        for out in c["outputs"]:
            text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/work/|/root/|/home/\w+/|site-packages/", text), f"local path in an output: {text[:200]}"
            assert out["output_type"] != "error" or "raises-exception" in c["metadata"].get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_the_companion_on_colab_only(path):
    first = next(c for c in load(path)["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    assert 'if "google.colab" in sys.modules:' in source
    assert f'REPO = "{REPO_URL}"' in source, "install URL must match repository.url in _config.yml"
    assert '%pip install --quiet "git+{REPO}"' in source  # IPython expands {REPO}
    assert "torch" not in source.split("git+")[1], "never reinstall Colab's torch"
    assert first["outputs"] == [], "outside Colab the install cell must do nothing"


def test_readme_has_a_colab_badge_for_every_chapter_and_none_for_a_missing_one():
    """Badges are written by hand in README's chapter table; they must agree with _config.yml and _toc.yml."""
    expected = {colab_url(nb): nb for nb in toc_notebooks()}
    assert expected, "no notebook in _toc.yml"
    colab_base = CONFIG["launch_buttons"]["colab_url"].rstrip("/") + "/github/"
    links = re.findall(re.escape(colab_base) + r"[^)\s\"'>]+", README)
    badges = re.findall(r"\[!\[[^\]]*\]\([^)]*colab-badge\.svg\)\]\(([^)\s]+)\)", README)
    assert sorted(links) == sorted(badges), "every Colab link in README must be an 'Open in Colab' badge"
    wrong = [url for url in links if url not in expected]
    assert not wrong, f"README badges that do not open a chapter of this repository (expected like {next(iter(expected))}): {wrong}"
    missing = [nb for url, nb in expected.items() if url not in links]
    assert not missing, f"chapters without a Colab badge in README: {missing}"
    assert len(links) == len(set(links)), "a chapter has two Colab badges in README"


# ------------------------------------------------------------ the textbook apparatus
# Citations, glossary links, numbered figures and tables, cross-chapter links,
# exercises that hide their solutions, a "your turn" check, further reading and a
# measured run time. The checks that every chapter passes run on all of them; the rest
# run on the chapters in CRAFTED, the ones that already have the whole apparatus. Add a
# chapter (its file name without .ipynb) when it does: chapter 4 is the model to copy.

CRAFTED = [
    "00_how_this_book_works",
    "01_tensors",
    "02_attention",
    "03_encoder",
    "04_bugs",
    "05_vit_mnist",
    "06_questions",
    "07_decoders",
    "08_casebook",
]

BOOK = ROOT / "book"
BIB = BOOK / "references.bib"
GLOSSARY = BOOK / "glossary.md"
PAGES = sorted([*NOTEBOOKS, *BOOK.glob("*.md")])
# The reference tutorials a "Further reading" section points to (three or more).
TUTORIALS = {
    "the Annotated Transformer": "nlp.seas.harvard.edu/annotated-transformer",
    "minGPT/nanoGPT": "github.com/karpathy/",
    "d2l.ai": "d2l.ai/",
    "the UvA DL notebooks": "uvadlc-notebooks.readthedocs.io",
    "PyTorch tutorials": "pytorch.org/tutorials",
}
# Glossary terms whose running-text forms the default (the term + 's'/'es') misses.
TERM_FORMS = {
    "query, key, value": r"\bquer(?:y|ies)\b(?=[^.]{0,40}\bkeys?\b)",
    "log-probabilities": r"\blog-probabilit(?:y|ies)\b",
    "kv cache": r"\b(?:kv|key/value|key-value) cache\b",
}
_ROLE_RE = re.compile(r"\{(?P<role>[a-z][\w:-]*)\}`(?P<body>[^`]+)`")


def _markdown_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, text) of the Markdown a page shows (markdown cells, a .md file)."""
    if path.suffix == ".md":
        return [(0, path.read_text())]
    cells = load(path)["cells"]
    return [
        (i, "".join(c["source"]))
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown"
    ]


def _markdown(path: Path) -> list[str]:
    return [text for _, text in _markdown_cells(path)]


def _role_targets(text: str, *roles: str) -> list[str]:
    """Targets of the roles: {cite:p}`a,b` -> a, b; {numref}`Table %s <x>` -> x."""
    targets = []
    for m in _ROLE_RE.finditer(text):
        if m["role"] in roles or any(m["role"].startswith(r + ":") for r in roles):
            body = m["body"]
            inner = re.search(r"<([^<>]+)>\s*$", body)
            body = inner[1] if inner else body
            targets += (
                [t.strip() for t in body.split(",")]
                if m["role"].startswith("cite")
                else [body.strip()]
            )
    return targets


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(), flags=re.M))


def glossary_terms() -> list[str]:
    """The terms the glossary defines (unindented lines of its {glossary} block)."""
    block = re.search(r"```\{glossary\}\n(.*?)\n```", GLOSSARY.read_text(), flags=re.S)
    assert block, f"{GLOSSARY} has no ```{{glossary}} block"
    return [
        line.strip()
        for line in block[1].splitlines()
        if line.strip() and not line[0].isspace()
    ]


def labels(path: Path) -> dict[str, str]:
    """Labels a page defines -> their kind: figures and tables (:name:, cell metadata),
    sections and other targets (``(label)=``)."""
    found = {}
    for text in _markdown(path):
        found |= dict.fromkeys(
            re.findall(r"^\(([\w-]+)\)=\s*$", text, flags=re.M), "target"
        )
        for m in re.finditer(
            r"^(`{3,}|:{3,})\{(\w+)\}[^\n]*\n"  # a directive, its options, :name:
            r"(?:[ \t]*:[\w-]+:[^\n]*\n)*?[ \t]*:name:\s*(\S+)",
            text,
            flags=re.M,
        ):
            found[m[3]] = m[2]  # "figure", "table", "glue:figure" ...
    if path.suffix == ".ipynb":
        for cell in load(path)["cells"]:
            name = cell["metadata"].get("mystnb", {}).get("figure", {}).get("name")
            if name:
                found[name] = "figure"
    return found


def _all_labels() -> dict[str, str]:
    found = {}
    for page in PAGES:
        found |= labels(page)
    return found


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_citations_glossary_links_and_references_resolve(path):
    """Every {cite} key is in references.bib, every {term} in the glossary, every
    {numref}/{ref} label is defined on some page, and every relative link to a chapter
    names an existing file."""
    text = "\n".join(_markdown(path))
    missing = sorted(set(_role_targets(text, "cite")) - bib_keys())
    assert not missing, f"{path.name}: {{cite}} keys not in {BIB.name}: {missing}"
    terms = {t.lower() for t in glossary_terms()}
    unknown = sorted({t for t in _role_targets(text, "term") if t.lower() not in terms})
    assert not unknown, f"{path.name}: {{term}} targets not in the glossary: {unknown}"
    undefined = sorted(set(_role_targets(text, "numref", "ref")) - set(_all_labels()))
    assert not undefined, (
        f"{path.name}: labels referred to but defined nowhere: {undefined}"
    )
    for target in re.findall(r"\]\((?!https?:|#)([^)#\s]+)", text):
        assert (path.parent / target).exists(), (
            f"{path.name}: link to a missing file: {target}"
        )


def _figure_cells(nb) -> list[int]:
    return [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code"
        and any(
            {"image/png", "image/svg+xml"} & set(o.get("data", {}))
            for o in c["outputs"]
        )
    ]


def _tags(nb, i: int) -> list[str]:
    return nb["cells"][i]["metadata"].get("tags", [])


def _table_cells(nb) -> list[int]:
    """Code cells whose stored output holds a table (HTML, or Markdown rows)."""

    def is_table(output) -> bool:
        data = output.get("data", {})
        html, markdown = "".join(data.get("text/html", "")), "".join(
            data.get("text/markdown", "")
        )
        return "<table" in html or bool(re.search(r"^\|.*\|\s*$", markdown, re.M))

    return [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and any(is_table(o) for o in c["outputs"])
    ]


def test_a_table_under_a_cell_is_found():
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [
                {"data": {"text/html": "<table><tr><td>1</td></tr></table>"}}]},
            {"cell_type": "code", "metadata": {}, "outputs": [
                {"data": {"text/markdown": "| a |\n| :-- |\n| 1 |\n"}}]},
            {"cell_type": "code", "metadata": {}, "outputs": [
                {"data": {"text/markdown": "```python\nx = a | b\n```"}}]},
            {"cell_type": "markdown", "metadata": {}, "source": "| a |"},
        ]
    }
    assert _table_cells(nb) == [0, 1]


@pytest.mark.parametrize("chapter", CRAFTED)
def test_figures_and_tables_are_numbered_and_referred_to(chapter):
    path = BOOK / f"{chapter}.ipynb"
    nb = load(path)
    for i in _figure_cells(nb):
        meta = nb["cells"][i]["metadata"].get("mystnb", {})
        figure, image = meta.get("figure", {}), meta.get("image", {})
        assert figure.get("name") and figure.get("caption") and image.get("alt"), (
            f"cell {i} draws a figure: give it cell metadata mystnb.figure.name and "
            ".caption and mystnb.image.alt (a label, a caption and alt text without "
            "measured numbers)"
        )
    text = "\n".join(_markdown(path))
    bare = [line for line in re.findall(r"^\|.*\|\s*$", text, flags=re.M)]
    in_tables = re.findall(
        r"^(?:`{3,}|:{3,})\{table\}.*?^(?:`{3,}|:{3,})\s*$", text, flags=re.M | re.S
    )
    assert len(bare) == sum(
        len(re.findall(r"^\|.*\|\s*$", t, flags=re.M)) for t in in_tables
    ), (
        "a Markdown table outside a {table} directive: wrap it in "
        "```{table} caption / :name:"
    )
    shown = [i for i in _table_cells(nb) if "remove-output" not in _tags(nb, i)]
    assert not shown, (
        f"cells {shown} show a table under the cell: glue it (companion.book.glue_table "
        "or glue_results), tag the cell remove-output and number it in a {table}"
    )
    defined = {
        name
        for name, kind in labels(path).items()
        if kind in ("figure", "table", "glue:figure")
    }
    assert defined, f"{chapter} numbers no figure or table"
    unreferenced = sorted(defined - set(_role_targets(text, "numref")))
    assert not unreferenced, (
        f"{chapter}: figures/tables never referred to by {{numref}}: {unreferenced}"
    )


def _glossary_events(
    text: str, forms: dict[str, re.Pattern]
) -> list[tuple[int, str, bool]]:
    """(position, term, is_link) for every glossary link and plain use of a term."""
    from test_prose import strip_exempt  # code, math, roles and link targets blanked

    links = {}

    def mark(m):
        links[f"GLOSSARYLINK{len(links)}X"] = _role_targets(m[0], "term")[0].lower()
        return f" GLOSSARYLINK{len(links) - 1}X "

    text = _ROLE_RE.sub(lambda m: mark(m) if m["role"] == "term" else m[0], text)
    text = strip_exempt(text)
    text = re.sub(r"^#.*$", lambda m: " " * len(m[0]), text, flags=re.M)  # headings
    events = [
        (m.start(), links[m[0]], True) for m in re.finditer(r"GLOSSARYLINK\d+X", text)
    ]
    for term, pattern in forms.items():
        events += [(m.start(), term, False) for m in pattern.finditer(text)]
    return sorted(events)


def unlinked_first_uses(path: Path) -> list[str]:
    """Glossary terms whose first use in the page's prose is not a {term} link."""
    forms = {
        t.lower(): re.compile(
            TERM_FORMS.get(t.lower(), rf"\b{re.escape(t.lower())}(?:s|es)?\b"), re.I
        )
        for t in glossary_terms()
    }
    linked, problems = set(), {}
    for i, text in _markdown_cells(path):
        for _, term, is_link in _glossary_events(text, forms):
            if is_link:
                linked.add(term)
            elif term not in linked and term not in problems:
                problems[term] = f"{term!r} (first used in cell {i} without {{term}})"
    return list(problems.values())


def test_the_first_use_check_finds_an_unlinked_term(tmp_path):
    page = tmp_path / "x.md"
    page.write_text(
        "# Tokens\n\nA {term}`token <Token>` and `patch` in code, then a patch.\n\n"
        "The {term}`LayerNorm` and the logits; $logits$ in math is exempt.\n"
    )
    assert unlinked_first_uses(page) == [
        "'patch' (first used in cell 0 without {term})",
        "'logits' (first used in cell 0 without {term})",
    ]


@pytest.mark.parametrize("chapter", CRAFTED)
def test_glossary_terms_are_linked_at_their_first_use(chapter):
    problems = unlinked_first_uses(BOOK / f"{chapter}.ipynb")
    assert not problems, (
        f"{chapter}: link the first use of each glossary term: {problems}"
    )


@pytest.mark.parametrize("chapter", CRAFTED)
def test_cites_its_papers_and_links_other_chapters(chapter):
    text = "\n".join(_markdown(BOOK / f"{chapter}.ipynb"))
    assert _role_targets(text, "cite"), f"{chapter} cites no paper with {{cite}}"
    others = set(re.findall(r"\]\((\d\d_\w+)\.ipynb", text)) | {
        t.removesuffix(".ipynb")
        for t in _role_targets(text, "doc")
        if re.match(r"\d\d_", t)
    }
    assert len(others - {chapter}) >= 2, (
        f"{chapter} links {sorted(others)}: link the chapters it builds on and those "
        "that revisit it"
    )
    reading = re.search(
        r"^## Further reading\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S
    )
    assert reading, f"{chapter} has no '## Further reading' section"
    named = [name for name, url in TUTORIALS.items() if url in reading[1]]
    assert len(named) >= 3, (
        f"{chapter}'s further reading points at {named}; name at least three of "
        f"{list(TUTORIALS)}"
    )


def _section(nb, heading: str) -> list[dict]:
    """The cells from the markdown cell holding ``heading`` to the next '## '."""
    cells, inside = [], False
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            starts = re.search(rf"^{re.escape(heading)}\s*$", source, flags=re.M)
            if inside and re.search(r"^## ", source, flags=re.M) and not starts:
                break
            inside = inside or bool(starts)
        if inside:
            cells.append(cell)
    return cells


@pytest.mark.parametrize("chapter", CRAFTED)
def test_exercises_mark_difficulty_hide_solutions_and_check_the_readers_line(chapter):
    cells = _section(load(BOOK / f"{chapter}.ipynb"), "## Exercises")
    assert cells, f"{chapter} has no '## Exercises' section"
    text = "\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
    )
    exercises = re.findall(r"^### .*$", text, flags=re.M)
    assert exercises, (
        "write each exercise under its own '### N. title (difficulty)' heading"
    )
    assert all(re.search(r"★", h) for h in exercises), (
        f"mark the difficulty (★☆☆ to ★★★): {exercises}"
    )
    checks = 0
    for cell in (c for c in cells if c["cell_type"] == "code"):
        tags = set(cell["metadata"].get("tags", []))
        assert tags & {"hide-cell", "hide-output", "remove-output"}, (
            "a solution's output is shown above the toggle: tag the cell hide-cell "
            f"(or hide-output for a check): {''.join(cell['source'])[:80]!r}"
        )
        if re.search(r"\bcheck\(", "".join(cell["source"])):
            out = "".join("".join(o.get("text", "")) for o in cell["outputs"])
            assert out.startswith(("correct:", "not yet:")), (
                f"a check cell that printed no verdict: {out[:120]!r}"
            )
            checks += out.startswith(
                "correct:"
            )  # the stored notebook holds the reference answer
    assert checks, (
        "no 'your turn' cell: let the reader write a line and check it with "
        "companion.exercises.check, the stored notebook holding a reference answer "
        "('correct:')"
    )


@pytest.mark.parametrize("chapter", CRAFTED)
def test_the_chapter_measures_its_own_run_time(chapter):
    nb = load(BOOK / f"{chapter}.ipynb")
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "ChapterClock()" in "".join(code[1]["source"]), (
        "start the clock in the first code cell after the install cell: "
        "clock = ChapterClock()"
    )
    finish = [c for c in code if ".finish(" in "".join(c["source"])]
    assert len(finish) == 1 and "nbval-ignore-output" in finish[0]["metadata"].get(
        "tags", []
    ), "read the clock once, at the end, in a cell tagged nbval-ignore-output"
    assert finish[0] is code[-1], (
        "the clock is read in the last code cell (it times the whole chapter)"
    )
    glued = {
        o["metadata"]["scrapbook"]["name"]
        for o in finish[0]["outputs"]
        if "scrapbook" in o.get("metadata", {})
    }
    assert {"chapter_run_time", "chapter_conditions", "chapter_train_images"} <= glued
    text = "\n".join(_markdown(BOOK / f"{chapter}.ipynb"))
    for name in ("chapter_run_time", "chapter_conditions", "chapter_train_images"):
        role = f"{{glue:text}}`{name}`"
        assert role in text, f"state {name} in the prose with {role}"
