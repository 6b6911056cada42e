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
    assert f'%pip install --quiet "git+{REPO_URL}"' in source, "install URL must match repository.url in _config.yml"
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
