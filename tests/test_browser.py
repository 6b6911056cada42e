"""The rendered book, checked as a reader sees it.

The book is built the way `make book` builds it (warnings are errors), then:
- without a browser: every internal link, image, script and stylesheet of every page resolves,
  anchors included;
- without a browser, the textbook apparatus: every citation, glossary link and
  {numref}/{ref}/{doc} cross-reference in a page's source is resolved in the page (no
  empty "[]" citation, no unlinked cross-reference, no "???"), as many as it has;
- in headless Chromium (Debian's chromium + chromedriver, driven by selenium; `make
  browser-deps` installs them): every page loads without console errors, its images
  load (the SVG diagrams of book/figures/ included), its math is typeset by MathJax,
  every chapter page has a Colab launch link to its own notebook, and a screenshot of
  each chapter is saved in _build/screenshots/.

Where: the book is built into <repo>/_build like `make book`; BOOK_OUTPUT=/some/dir
builds into /some/dir/_build instead (`jupyter-book build --path-output`, so parallel
builds do not collide), and BOOK_PREBUILT=1 checks the HTML already there without
building (a build made by hand, e.g. with `--toc` or `--keep-going`).

Pages are served from _build/html on 127.0.0.1. The one third-party resource the pages load,
MathJax 3 from its CDN, is served from the copy in the django-static-mathjax package (this
machine has no internet; readers' browsers fetch the same version from the CDN).
Without a browser the Chromium tests skip and say why; with REQUIRE_BROWSER=1 (CI) they fail.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from test_book import _role_targets, colab_url, load, toc_notebooks

pytestmark = pytest.mark.book  # builds the book: `pytest -m 'not slow and not book'` skips it

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BOOK_OUTPUT") or ROOT).resolve() / "_build"
HTML = BUILD / "html"
SCREENSHOTS = BUILD / "screenshots"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"
MATHJAX_LOCAL = "/_mathjax/"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1000",
]
# Console messages that are not defects of this book, each with the reason. Anything else fails.
KNOWN_CONSOLE_MESSAGES = {
    r"/favicon\.ico - Failed to load resource": "browsers ask every site for /favicon.ico; the book sets none",
    r"Identifier 'THEBE_JS_URL' has already been declared": (
        "Sphinx 7.4 writes sphinx-thebe's inline config <script> twice (it registers it after the "
        "builder started); the first copy defines it, and the book does not use Thebe"
    ),
}


@pytest.fixture(scope="module")
def book() -> Path:
    """_build/html, built now exactly as `make book` builds it (incremental when nothing changed)."""
    if os.environ.get("BOOK_PREBUILT") == "1":
        assert (HTML / "index.html").is_file(), (
            f"BOOK_PREBUILT=1 but there is no build in {HTML}"
        )
        return HTML
    jupyter_book = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
    ]
    output = (
        ["--path-output", str(BUILD.parent)] if os.environ.get("BOOK_OUTPUT") else []
    )
    proc = subprocess.run(
        [*jupyter_book, "build", ".", "-W", "-n", "--keep-going", *output],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (
        f"the book does not build:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return HTML


def pages(html_root: Path) -> list[str]:
    """Every HTML page of the build, as paths relative to it."""
    return sorted(
        p.relative_to(html_root).as_posix()
        for p in html_root.rglob("*.html")
        if not p.relative_to(html_root).parts[0].startswith("_")
    )


def chapter_pages() -> dict[str, str]:
    """Built page -> its notebook, for every notebook in _toc.yml."""
    return {nb.removesuffix(".ipynb") + ".html": nb for nb in toc_notebooks()}


# ------------------------------------------------------------------------ links, without a browser

class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag != "meta" else ():
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag in ("a", "link") and attrs.get("href"):
            self.refs.append(attrs["href"])
        if tag in ("img", "script", "source", "iframe") and attrs.get("src"):
            self.refs.append(attrs["src"])


@functools.cache
def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def broken_internal_refs(html_root: Path) -> list[str]:
    """Internal href/src targets (files and #anchors) that do not exist in the build."""
    broken = []
    for page in pages(html_root):
        path = html_root / page
        for ref in _parse(path).refs:
            parsed = urlparse(ref)
            if parsed.scheme or ref.startswith("//"):
                continue  # http(s), mailto, javascript, data: not internal
            target_ref, fragment = urldefrag(ref)
            target = (path.parent / unquote(urlparse(target_ref).path)).resolve() if target_ref else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file() or not target.is_relative_to(html_root.resolve()):
                broken.append(f"{page}: {ref} (no such file)")
            elif fragment and target.suffix == ".html" and unquote(fragment) not in _parse(target).ids:
                broken.append(f"{page}: {ref} (no element with id {fragment!r})")
    return broken


def test_internal_links_and_resources_resolve(book):
    assert "book/intro.html" in pages(book) and set(chapter_pages()) <= set(pages(book))
    assert broken_internal_refs(book) == []


def test_the_link_check_finds_a_broken_link_and_a_broken_anchor(tmp_path):
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "book" / "a.html").write_text('<h1 id="top">A</h1><a href="b.html#top">ok</a><img src="../_images/x.png">')
    (site / "book" / "b.html").write_text('<h1 id="top">B</h1><a href="a.html#nowhere">anchor</a><a href="c.html">missing</a>')
    assert sorted(broken_internal_refs(site)) == [
        "book/a.html: ../_images/x.png (no such file)",
        "book/b.html: a.html#nowhere (no element with id 'nowhere')",
        "book/b.html: c.html (no such file)",
    ]


# -------------------------------------------- the textbook apparatus, without a browser

_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class _Xrefs(html.parser.HTMLParser):
    """What a page shows of its cross-references.

    Resolved ones are links; unresolved ones are Sphinx's bare ``xref`` spans
    (``<span class="xref std std-term">``) or empty citations ``[]``.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str]] = []  # (tag, class) of the open elements
        self.resolved = {"cite": 0, "term": 0, "numref": 0}
        self.unresolved: list[str] = []
        self.empty_cites = 0
        self.text: list[str] = []
        self._capture: int | None = (
            None  # depth of an unresolved xref whose text we collect
        )

    def _inside(self, tag=None, cls=None) -> bool:
        return any(
            (tag is None or t == tag) and (cls is None or cls in c.split())
            for t, c in self.stack
        )

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        classes = cls.split()
        kind = next((k for k in ("term", "numref") if f"std-{k}" in classes), None)
        if kind and self._inside("a"):
            self.resolved[kind] += 1  # a resolved numref is a plain span in the link
        elif "xref" in classes and not self._inside("a") and self._capture is None:
            self._capture = len(self.stack)
            self.unresolved.append(f"{'std-' + kind if kind else classes[-1]}: ")
        if tag == "a" and self._inside("span", "bibtex-citation"):
            self.resolved["cite"] += 1
        if tag not in _VOID:
            self.stack.append((tag, cls))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        if self._capture is not None and len(self.stack) <= self._capture:
            self._capture = None

    def handle_data(self, data):
        if self._capture is not None:
            self.unresolved[-1] += data
        if (
            self.stack
            and "bibtex-citation" in self.stack[-1][1].split()
            and data.strip() == "[]"
        ):
            self.empty_cites += 1
        if not self._inside("script") and not self._inside("style"):
            self.text.append(data)


def apparatus_problems(html_page: Path) -> list[str]:
    """Unresolved citations and cross-references in a built page, as seen."""
    seen = _Xrefs()
    seen.feed(html_page.read_text(encoding="utf-8"))
    problems = [f"unresolved {u.strip()!r}" for u in seen.unresolved]
    problems += [
        "an empty citation '[]' (a {cite} key that is not in references.bib)"
    ] * seen.empty_cites
    text = "".join(seen.text)
    problems += [
        f"{marker!r} in the text"
        for marker in ("???", "undefined label")
        if marker in text
    ]
    return problems


def _source_markdown(source: Path) -> str:
    """A page's Markdown and figure captions, without code blocks."""
    if source.suffix == ".md":
        parts = [source.read_text()]
    else:
        cells = load(source)["cells"]
        parts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        parts += [
            c["metadata"].get("mystnb", {}).get("figure", {}).get("caption", "")
            for c in cells
        ]
    kept, fences = [], []  # fences: the open ones, (marker, is code)
    for line in "\n".join(parts).splitlines():
        m = re.match(r"\s*(`{3,}|~{3,}|:{3,})(.*)$", line)
        if (
            m
            and fences
            and m[1][0] == fences[-1][0][0]
            and len(m[1]) >= len(fences[-1][0])
            and not m[2].strip()
        ):
            fences.pop()
        elif m and not (fences and fences[-1][1]):
            fences.append((m[1], not m[2].strip().startswith("{")))
        elif not any(code for _, code in fences):
            kept.append(line)
    return re.sub(r"``.*?``", "", "\n".join(kept))


def expected_references(source: Path) -> dict[str, int]:
    """How many citations (one per key), glossary links and {numref}s a source makes."""
    text = _source_markdown(source)
    return {kind: len(_role_targets(text, kind)) for kind in ("cite", "term", "numref")}


def resolved_references(html_page: Path) -> dict[str, int]:
    seen = _Xrefs()
    seen.feed(html_page.read_text(encoding="utf-8"))
    return seen.resolved


def _sources(html_root: Path) -> dict[str, Path]:
    """Built page -> the notebook or Markdown file it was built from."""
    found = {}
    for page in pages(html_root):
        for suffix in (".ipynb", ".md"):
            source = ROOT / Path(page).with_suffix(suffix)
            if source.is_file():
                found[page] = source
                break
    return found


def test_citations_glossary_links_and_numbers_resolve(book):
    """Every citation resolves to the bibliography, every {term} to the glossary, every
    {numref}/{ref}/{doc} to its target: no bare xref, no '[]', no '???' on any page, and
    each page shows as many resolved citations, glossary links and numbered references
    as its source makes."""
    problems = {page: apparatus_problems(book / page) for page in pages(book)}
    problems = {page: p for page, p in problems.items() if p}
    assert not problems, problems
    sources = _sources(book)
    assert any(expected_references(s)["cite"] for s in sources.values()), (
        "no page cites anything: the check would prove nothing"
    )
    mismatched = {}
    for page, source in sources.items():
        expected, shown = expected_references(source), resolved_references(book / page)
        if expected != shown:
            mismatched[page] = {"source": expected, "page": shown}
    assert not mismatched, mismatched


def test_the_apparatus_check_finds_unresolved_references(tmp_path):
    page = tmp_path / "x.html"
    page.write_text(
        '<p><span class="bibtex-citation">[]</span> <span class="bibtex-citation">'
        '[<a href="b.html#id1">VSP+17</a>]</span>'
        ' <a href="g.html#term-Token"><span class="xref std std-term">token</span></a>'
        ' <span class="xref std std-term">Nonterm</span> <img src="x.svg">'
        ' <code class="xref std std-numref docutils literal">'
        '<span class="pre">fig-none</span></code>'
        ' <a href="#f"><span class="std std-numref">Fig. 1</span></a> ??? </p>'
    )
    assert apparatus_problems(page) == [
        "unresolved 'std-term: Nonterm'",
        "unresolved 'std-numref: fig-none'",
        "an empty citation '[]' (a {cite} key that is not in references.bib)",
        "'???' in the text",
    ]
    assert resolved_references(page) == {"cite": 1, "term": 1, "numref": 1}


# --------------------------------------------------------------------------------- in Chromium

def _find_browser() -> tuple[str, str] | str:
    """(browser, chromedriver) or why there are none; $CHROME_BINARY and $CHROMEDRIVER choose them."""
    names = [os.environ.get("CHROME_BINARY", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    browser = next(filter(None, map(shutil.which, filter(None, names))), None)
    drivers = [os.environ.get("CHROMEDRIVER", ""), "chromedriver", os.path.join(os.environ.get("CHROMEWEBDRIVER", "/-"), "chromedriver")]
    driver = next(filter(None, map(shutil.which, filter(None, drivers))), None)
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -r requirements.txt)"
    if not browser or not driver:
        return "no Chromium/ChromeDriver on this machine (install them with `make browser-deps` as root)"
    return browser, driver


def _mathjax_dir() -> Path:
    spec = importlib.util.find_spec("mathjax")
    root = Path(spec.origin).parent / "static" / "mathjax" if spec and spec.origin else None
    assert root and (root / "es5" / "tex-mml-chtml.js").is_file(), "MathJax 3 is missing: pip install django-static-mathjax"
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the build; MathJax's CDN URL is pointed at the local copy; records every error status."""

    mathjax: Path
    errors: list

    def log_message(self, *args):
        pass

    def translate_path(self, path):
        if urlparse(path).path.startswith(MATHJAX_LOCAL):
            return str(self.mathjax / unquote(urlparse(path).path)[len(MATHJAX_LOCAL):])
        return super().translate_path(path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(MATHJAX_CDN.encode(), MATHJAX_LOCAL.encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def send_error(self, code, message=None, explain=None):
        if urlparse(self.path).path != "/favicon.ico":  # see KNOWN_CONSOLE_MESSAGES
            self.errors.append(f"{code} {self.path}")
        super().send_error(code, message, explain)


WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = () => Promise.all(Array.from(document.images).map(
    img => img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; })));
const math = () => document.querySelector('.math') === null ? null
    : new Promise((ok, fail) => {
        const start = Date.now();
        const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
            ? MathJax.startup.promise.then(ok, fail)
            : (Date.now() - start > 20000 ? fail('MathJax did not load') : setTimeout(wait, 50));
        wait();
    });
window.scrollTo(0, document.body.scrollHeight);
Promise.all([images(), math()]).then(() => { window.scrollTo(0, 0); done('ok'); }, err => done(String(err)));
"""
INSPECT = """
return {
  title: document.title,
  brokenImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src),
  svgImages: Array.from(document.images)
    .filter(i => /\\.svg([?#]|$)/.test(i.currentSrc || i.src))
    .map(i => [i.currentSrc || i.src, i.naturalWidth, i.alt]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  math: document.querySelectorAll('.math').length,
  typeset: document.querySelectorAll('.math mjx-container').length,
  untypeset: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
  mathErrors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 60)),
  text: document.body.innerText.length,
};
"""


@pytest.fixture(scope="module")
def visits(book):
    """Open every page once in headless Chromium; what each page showed, logged and linked."""
    found = _find_browser()
    if isinstance(found, str):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {found}")
        pytest.skip(found)
    browser, chromedriver = found
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    errors: list[str] = []
    handler = type("Handler", (_Handler,), {"mathjax": _mathjax_dir(), "errors": errors})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(book)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_script_timeout(40)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = {}
    start = time.perf_counter()
    try:
        for page in pages(book):
            errors.clear()
            driver.get(base + page)
            if re.search(r'<meta http-equiv="refresh"', (book / page).read_text(), flags=re.I):  # index.html
                WebDriverWait(driver, 20).until(
                    lambda d: d.current_url != base + page and d.execute_script("return document.readyState") == "complete"
                )
            waited = driver.execute_async_script(WAIT_FOR_PAGE)
            seen = driver.execute_script(INSPECT)
            seen["waited"] = waited
            seen["console"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            seen["http_errors"] = list(errors)
            seen["url"] = driver.current_url
            if page in chapter_pages():
                shot = SCREENSHOTS / (Path(page).stem + ".png")
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1280, min(height, 20000))  # the whole page in one picture
                driver.save_screenshot(str(shot))
                driver.set_window_size(1280, 1000)
                seen["screenshot"] = shot
            results[page] = seen
        links = {urldefrag(link)[0] for seen in results.values() for link in seen["links"] if link.startswith(base)}
        for link in sorted(links):  # every same-origin link the pages show, as the browser resolved it
            try:
                urllib.request.urlopen(urllib.request.Request(link, method="HEAD"), timeout=10).close()
            except urllib.error.HTTPError as exc:
                results.setdefault("<links>", {}).setdefault("broken", []).append(f"{exc.code} {link[len(base) - 1:]}")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\n{len(pages(book))} pages in Chromium in {time.perf_counter() - start:.1f}s")
    return results


def _pages(visits):
    return {page: seen for page, seen in visits.items() if not page.startswith("<")}


def test_every_page_loads_without_console_errors(visits):
    problems = {}
    for page, seen in _pages(visits).items():
        unexplained = [m for m in seen["console"] if not any(re.search(k, m) for k in KNOWN_CONSOLE_MESSAGES)]
        if unexplained or seen["waited"] != "ok" or seen["text"] < 200:
            problems[page] = {"console": unexplained, "waited": seen["waited"], "text": seen["text"]}
    assert not problems, problems


def test_every_image_and_internal_link_loads(visits):
    problems = {page: seen["brokenImages"] + seen["http_errors"] for page, seen in _pages(visits).items()}
    problems = {page: p for page, p in problems.items() if p}
    assert not problems and not visits.get("<links>"), (problems, visits.get("<links>"))


def diagrams_in_sources() -> dict[str, set[str]]:
    """Built page -> the SVG diagrams (names in book/figures/) that its source shows."""
    found = {}
    for page, source in _sources(HTML).items():
        names = set(re.findall(r"figures/([\w.-]+\.svg)", _source_markdown(source)))
        if names:
            found[page] = names
    return found


def test_svg_diagrams_load_with_alt_text(visits):
    """Every SVG image renders (a nonzero natural width) and has alt text, and every
    diagram a chapter's source shows is on its page."""
    for page, seen in _pages(visits).items():
        for src, width, alt in seen["svgImages"]:
            assert width > 0, f"{page}: the SVG {src} did not render"
            assert alt.strip(), f"{page}: the SVG {src} has no alt text"
    for page, names in diagrams_in_sources().items():
        shown = {
            Path(urlparse(src).path).name for src, _, _ in visits[page]["svgImages"]
        }
        assert names <= shown, (
            f"{page}: diagrams in the source but not on the page: {names - shown}"
        )


def test_math_is_typeset_by_mathjax(visits):
    with_math = {page: seen for page, seen in _pages(visits).items() if seen["math"]}
    assert with_math, "no page has math: the check would prove nothing"
    for page, seen in with_math.items():
        assert seen["typeset"] >= seen["math"] and not seen["untypeset"], f"{page}: math left as TeX source: {seen['untypeset']}"
        assert not seen["mathErrors"], f"{page}: MathJax could not typeset {seen['mathErrors']}"


def test_every_chapter_page_opens_its_own_notebook_on_colab(visits):
    for page, notebook in chapter_pages().items():
        colab = [link for link in visits[page]["links"] if link.startswith("https://colab.research.google.com/")]
        assert colab == [colab_url(notebook)], f"{page}: Colab links {colab}, expected {colab_url(notebook)}"


def test_every_chapter_has_a_screenshot(visits):
    for page in chapter_pages():
        shot = visits[page]["screenshot"]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, f"{shot} looks empty"
