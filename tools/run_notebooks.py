"""Re-execute the book's notebooks top to bottom, in place, the way nbval will (maintainer tool).

    python tools/run_notebooks.py                 # every notebook listed in _toc.yml
    python tools/run_notebooks.py book/02_*.ipynb # some of them

Run it (via `make notebooks`) after changing companion/: each notebook runs in a fresh
kernel from its own folder with COMPANION_DATA and the thread count that CI uses, and is
saved with outputs and execution counts 1..N, without timing metadata.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the offline data beside the repository


def ci_environment() -> None:
    """What the Makefile exports for `make test`, for kernels started from here too.

    One thread per process, and the offline data beside the repository when it is there
    and COMPANION_DATA is not set (elsewhere the companion downloads MNIST).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "COMPANION_DATA" not in os.environ and (SHARED_DATA / "MNIST" / "raw").is_dir():
        os.environ["COMPANION_DATA"] = str(SHARED_DATA)


def toc_notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [s["file"] for s in chapter.get("sections", [])]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}, record_timing=False
    ).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    ci_environment()
    paths = [Path(p).resolve() for p in sys.argv[1:]] or toc_notebooks()
    for p in paths:
        print(f"{p.relative_to(ROOT)}: {run(p):.1f}s", flush=True)
