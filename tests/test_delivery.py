"""How the book reaches its readers, tested as far as this machine allows.

- Colab: the chapters' install cell does nothing outside Colab and exactly one `%pip install`
  of the repository on Colab; the companion, built as a wheel and installed into a fresh
  environment that already has PyTorch (as Colab does), keeps that PyTorch and runs a chapter.
- GPU: a chapter re-executed by nbval in a kernel where torch prints every tensor as a CUDA
  tensor (tests/cuda_like.py) still matches its stored CPU outputs.
- CI data: tools/offline_mnist.py recreates the project's offline MNIST byte for byte.
- GitHub workflows: valid (GitHub's workflow schema + a few checks the schema cannot make),
  and they run what the project needs.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml
from test_book import REPO_URL, load, toc_notebooks
from test_sanitize import sanitize

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CHAPTER = ROOT / "book" / "00_how_this_book_works.ipynb"
WORKFLOWS = ROOT / ".github" / "workflows"
PACKAGE = "transformers-that-train-companion"


def run(cmd, **kwargs):
    """Run a command; on failure show its output (a bare CalledProcessError says too little)."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{shlex.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def outputs(cell) -> list[tuple[str, str]]:
    """What nbval compares of a code cell's outputs, as text, sanitized."""
    texts = []
    for out in cell["outputs"]:
        if out["output_type"] == "stream":
            texts.append((out["name"], sanitize("".join(out["text"]))))
        elif "text/plain" in out.get("data", {}):
            texts.append((out["output_type"], sanitize("".join(out["data"]["text/plain"]))))
    return texts


# --------------------------------------------------------------------------------------- Colab

def first_code_cell(path: Path) -> str:
    return "".join(next(c for c in load(path)["cells"] if c["cell_type"] == "code")["source"])


INSTALL_CELL_PROBE = r"""
import json, sys, types
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
calls = []
shell.system = calls.append  # what `%pip` would hand to the shell, recorded instead of run
results = []
for cell in json.loads(sys.stdin.read()):
    sys.modules.pop("google.colab", None)
    calls.clear()
    outside = shell.run_cell(cell, store_history=False).success, list(calls)
    sys.modules["google.colab"] = types.ModuleType("google.colab")  # what Colab has imported
    calls.clear()
    on_colab = shell.run_cell(cell, store_history=False).success, list(calls)
    results.append({"outside": outside, "colab": on_colab})
print("RESULTS=" + json.dumps({"python": sys.executable, "results": results}))
"""


def test_install_cell_does_nothing_outside_colab_and_pip_installs_only_the_repository_on_colab():
    """Every chapter's first cell, run by IPython itself: `%pip` becomes `<python> -m pip install ...`."""
    notebooks = [ROOT / nb for nb in toc_notebooks()]
    out = run([sys.executable, "-c", INSTALL_CELL_PROBE], input=json.dumps([first_code_cell(p) for p in notebooks]), cwd=ROOT)
    probe = json.loads(out.rsplit("RESULTS=", 1)[1])
    for path, result in zip(notebooks, probe["results"]):
        ok, calls = result["outside"]
        assert ok and calls == [], f"{path.name}: outside Colab the install cell must do nothing, it ran {calls}"
        ok, calls = result["colab"]
        assert ok and len(calls) == 1, f"{path.name}: on Colab the install cell must run one command, it ran {calls}"
        assert shlex.split(calls[0]) == [probe["python"], "-m", "pip", "install", "--quiet", f"git+{REPO_URL}"], calls[0]


def _clean_env(**extra) -> dict[str, str]:
    """This environment without anything that would let the companion or another index leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "IPYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


@pytest.mark.slow
def test_colab_install_keeps_the_preinstalled_torch_and_runs_a_chapter(tmp_path, mnist_root):
    """The Colab path offline: wheel -> fresh venv that sees an existing torch -> a chapter's first cells."""
    import torch

    env = _clean_env(COMPANION_DATA=str(mnist_root))
    # 1. the companion as pip builds it from the repository (only what the package is made of)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "companion", src / "companion", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # else pip fetches setuptools
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *offline, "-w", tmp_path / "wheels", src], env=env)
    (wheel,) = (tmp_path / "wheels").glob("*.whl")

    # 2. a fresh environment in which PyTorch and Colab's other preinstalled packages (pip and
    #    setuptools included) already exist: this interpreter's site-packages, seen through a .pth
    colab = tmp_path / "colab"
    run([sys.executable, "-m", "venv", "--without-pip", colab], env=env)
    python = colab / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).strip())
    preinstalled = Path(torch.__file__).resolve().parents[1]
    (purelib / "_colab_preinstalled.pth").write_text(f"{preinstalled}\n")

    # 3. pip install, offline: anything but the companion would have to come from an index
    run([python, "-m", "pip", "install", "--quiet", "--no-index", "--report", tmp_path / "report.json", wheel], env=env)
    installed = [item["metadata"]["name"] for item in json.loads((tmp_path / "report.json").read_text())["install"]]
    assert installed == [PACKAGE], f"pip installed {installed}: it must keep the existing torch and install only the companion"
    seen = json.loads(run([python, "-c", "import json, torch, companion; print(json.dumps([torch.__version__, torch.__file__, companion.__file__]))"], env=env, cwd=tmp_path))
    assert seen[0] == torch.__version__ and Path(seen[1]).resolve().is_relative_to(preinstalled), f"torch changed: {seen}"
    assert Path(seen[2]).resolve().is_relative_to(purelib.resolve()), f"the companion was not imported from the wheel: {seen[2]}"

    # 4. the chapter's first code cells (install cell, imports, show_source, a computed output) in that
    #    environment's kernel; their outputs must be the stored ones
    stored = nbformat.read(CHAPTER, as_version=4)
    code = [i for i, c in enumerate(stored.cells) if c.cell_type == "code"]
    first = copy.deepcopy(stored)
    first.cells = first.cells[: code[3] + 1]
    first.cells.append(nbformat.v4.new_code_cell("import sys, companion\nprint(companion.__file__.startswith(sys.prefix), sys.prefix)"))
    nbformat.write(first, tmp_path / "first.ipynb")
    kernels = tmp_path / "jupyter" / "kernels" / "colab-python"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(
        {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Colab-like", "language": "python"}
    ))
    run([python, "-c", "import sys, nbformat; from nbclient import NotebookClient; nb = nbformat.read(sys.argv[1], 4); "
         "NotebookClient(nb, kernel_name='colab-python', timeout=300, resources={'metadata': {'path': sys.argv[3]}}).execute(); "
         "nbformat.write(nb, sys.argv[2])", tmp_path / "first.ipynb", tmp_path / "ran.ipynb", ROOT / "book"],
        env=dict(env, JUPYTER_PATH=str(tmp_path / "jupyter")), cwd=tmp_path)
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    assert "".join(ran.cells[-1].outputs[0]["text"]).split() == ["True", str(colab)], "the kernel was not the fresh environment"
    for i in code[:4]:
        assert outputs(ran.cells[i]) == outputs(stored.cells[i]), f"cell {i} printed something else in the Colab-like environment"


# ----------------------------------------------------------------------------- GPU-style outputs

STARTUP = """\
import sys
sys.path.insert(0, {tests!r})
import cuda_like
sys.path.pop(0)
cuda_like.install(log={log!r})
"""


@pytest.mark.slow
def test_a_chapter_passes_nbval_when_torch_prints_like_a_gpu(tmp_path, mnist_root):
    """nbval re-executes a chapter in a kernel that prints every tensor as a `cuda:0` tensor.

    No GPU is needed: cuda_like makes torch's own repr code add `device='cuda:0'` (placement and
    line wrapping are torch's), and logs every repr it changed. The stored CPU outputs must still
    match through nbval_sanitize.cfg; the log shows that the kernel really printed like a GPU
    (so without the sanitizer's device rules the comparison would fail).
    """
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    log = tmp_path / "cuda_reprs.txt"
    (startup / "00-cuda-like.py").write_text(STARTUP.format(tests=str(TESTS), log=str(log)))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", CHAPTER, "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=",
         "--nbval", "--nbval-current-env", "--nbval-sanitize-with", ROOT / "nbval_sanitize.cfg"],
        capture_output=True, text=True, cwd=ROOT, env=_clean_env(IPYTHONDIR=str(tmp_path / "ipython"), COMPANION_DATA=str(mnist_root)),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    printed = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    stored = [text for cell in load(CHAPTER)["cells"] if cell["cell_type"] == "code" for _, text in outputs(cell)]
    compared = [text for text in stored if text.startswith("tensor(")]
    assert compared, "the chapter shows no tensor: nothing device-dependent was compared"
    for text in compared:
        assert any("device='cuda:0'" in p and sanitize(p) == text for p in printed), f"not printed as on a GPU: {text!r}; printed {printed}"


# ------------------------------------------------------------------------------ offline MNIST

def _offline_mnist():
    spec = importlib.util.spec_from_file_location("offline_mnist", ROOT / "tools" / "offline_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_mnist_recreates_the_books_data_byte_for_byte(tmp_path, mnist_root):
    raw = mnist_root / "MNIST" / "raw"
    run([sys.executable, ROOT / "tools" / "offline_mnist.py", tmp_path, "--test-from", raw])
    for name in _offline_mnist().FILES:
        assert (tmp_path / "MNIST" / "raw" / name).read_bytes() == (raw / name).read_bytes(), f"{name} differs from {raw}"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_offline_mnist_downloads_the_test_set_through_torchvisions_mirrors_and_checks(tmp_path, mnist_root, monkeypatch):
    """The download path, served from this machine: a corrupt first mirror is rejected by its MD5, the second is used."""
    from torchvision.datasets import MNIST

    tool = _offline_mnist()
    raw = mnist_root / "MNIST" / "raw"
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    resources = []
    for name in tool.TEST_FILES:
        blob = gzip.compress((raw / name).read_bytes(), compresslevel=1, mtime=0)
        (good / f"{name}.gz").write_bytes(blob)
        (bad / f"{name}.gz").write_bytes(gzip.compress(b"not MNIST", mtime=0))
        resources.append((f"{name}.gz", hashlib.md5(blob).hexdigest()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(MNIST, "mirrors", [f"{base}/bad/", f"{base}/good/"])
        monkeypatch.setattr(MNIST, "resources", [r for r in MNIST.resources if not r[0].startswith("t10k")] + resources)
        out = tmp_path / "out"
        out.mkdir()
        tool.download_test(out)
    finally:
        server.shutdown()
    for name in tool.TEST_FILES:
        assert (out / name).read_bytes() == (raw / name).read_bytes()


def test_offline_mnist_refuses_data_that_is_not_the_books(tmp_path):
    tool = _offline_mnist()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(SystemExit, match="is not the book's"):
        tool.check(tmp_path / "t10k-labels-idx1-ubyte")


# -------------------------------------------------------------------------- GitHub workflows

def workflow_problems(paths: list[Path]) -> dict[str, list[str]]:
    """Problems per file: GitHub's workflow schema (check-jsonschema's vendored copy, works offline)
    plus what a schema cannot see (unknown `needs`, unclosed `${{`, unpinned actions)."""
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", "-o", "JSON", *paths],
        capture_output=True, text=True,
    )
    report = json.loads(proc.stdout)
    problems = {str(p): [] for p in paths}
    for error in report.get("errors", []) + report.get("parse_errors", []):
        problems[error["filename"]].append(f"{error.get('path', '')} {error['message']}".strip())
    assert (proc.returncode == 0) == (not any(problems.values())), proc.stdout + proc.stderr
    for path in paths:
        text = path.read_text()
        found = problems[str(path)]
        if text.count("${{") != text.count("}}"):
            found.append("unbalanced ${{ ... }} expression")
        try:
            workflow = yaml.safe_load(text)
        except yaml.YAMLError:
            continue  # reported by the schema check
        jobs = workflow.get("jobs", {}) if isinstance(workflow, dict) else {}
        for name, job in jobs.items() if isinstance(jobs, dict) else ():
            if not isinstance(job, dict):
                continue
            needs = job.get("needs", [])
            found += [f"job {name} needs unknown job {n}" for n in ([needs] if isinstance(needs, str) else needs) if n not in jobs]
            for step in job.get("steps", []):
                uses = step.get("uses", "") if isinstance(step, dict) else ""
                if uses and not uses.startswith(("./", "docker://")) and not re.fullmatch(r"[\w.-]+/[\w./-]+@[\w.-]+", uses):
                    found.append(f"job {name}: `uses: {uses}` is not owner/repo@version")
    return problems


def test_workflows_are_valid():
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in paths} >= {"tests.yml", "gpu-notebooks.yml", "book.yml", "compat.yml"}
    problems = workflow_problems(paths)
    assert not any(problems.values()), problems


GOOD = """\
name: ok
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: make test
"""
BROKEN = {
    "misspelt-key": GOOD.replace("steps:", "step:"),
    "no-runs-on": GOOD.replace("    runs-on: ubuntu-latest\n", ""),
    "unknown-event": GOOD.replace("on: push", "on: pushh"),
    "wrong-type": GOOD.replace("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    timeout-minutes: soon\n"),
    "bad-permission": GOOD.replace("jobs:", "permissions:\n  pages: maybe\njobs:"),
    "run-and-uses": GOOD.replace("      - run: make test", "      - run: make test\n        uses: actions/cache@v4"),
    "bad-indentation": GOOD.replace("      - run: make test", "     - run: make test"),
    "unknown-need": GOOD.replace("    runs-on:", "    needs: build\n    runs-on:"),
    "unpinned-action": GOOD.replace("actions/checkout@v4", "actions/checkout"),
    "unclosed-expression": GOOD.replace("make test", "echo ${{ github.ref"),
}


def test_the_workflow_check_rejects_broken_workflows(tmp_path):
    (tmp_path / "good.yml").write_text(GOOD)
    for name, text in BROKEN.items():
        (tmp_path / f"{name}.yml").write_text(text)
    problems = workflow_problems(sorted(tmp_path.glob("*.yml")))
    assert problems.pop(str(tmp_path / "good.yml")) == []
    accepted = [Path(path).stem for path, found in problems.items() if not found]
    assert len(problems) == len(BROKEN) and not accepted, f"accepted although broken: {accepted}"


def _workflow(name):
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def _steps(workflow):
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow):
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def test_workflows_call_only_what_the_repository_has():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for path in sorted(WORKFLOWS.glob("*.yml")):
        runs = _runs(_workflow(path.name))
        for target in re.findall(r"\bmake ([\w-]+)", runs):
            assert target in targets, f"{path.name} runs `make {target}`, which the Makefile does not define"
        for script in re.findall(r"python (tools/[\w/]+\.py)", runs):
            assert (ROOT / script).is_file(), f"{path.name} runs {script}, which does not exist"


def test_tests_workflow_runs_the_readme_test_command_on_the_books_data():
    wf = _workflow("tests.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    runs = _runs(wf)
    assert re.search(r"^make test$", runs, flags=re.M) and "tools/offline_mnist.py data" in runs
    uses = {step.get("uses", "").split("@")[0]: step for step in _steps(wf)}
    assert uses["actions/setup-python"]["with"]["cache"] == "pip"
    assert "hashFiles('tools/offline_mnist.py')" in uses["actions/cache"]["with"]["key"]
    assert wf["env"]["COMPANION_DATA"].endswith("/data") and wf["env"]["REQUIRE_BROWSER"] == "1"


def test_gpu_workflow_cannot_pass_on_a_cpu_only_runner():
    wf = _workflow("gpu-notebooks.yml")
    assert set(wf["on"]) == {"push", "pull_request", "workflow_dispatch"}
    assert wf["on"]["push"]["branches"] == ["main"] and wf["on"]["pull_request"]["types"] == ["labeled"]
    (job,) = wf["jobs"].values()
    assert set(job["runs-on"]) == {"self-hosted", "gpu"} and "'gpu'" in job["if"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert runs[0].strip() == "nvidia-smi", "the first step must fail on a machine without an NVIDIA GPU"
    cuda = next(i for i, r in enumerate(runs) if "assert torch.cuda.is_available()" in r)
    check = runs.index("make gpu-check")
    assert cuda < check, "CUDA must be asserted before the notebooks run"
    units = next(i for i, r in enumerate(runs) if "pytest tests" in r)
    assert check < units, "the chapters (make gpu-check) and the unit tests both run on the GPU"
    bench = next(r for r in runs if "benchmarks/mnist.py" in r)
    assert "if [ -f benchmarks/mnist.py ]" in bench and "--full --device cuda" in bench and "--json bench.json" in bench
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s["with"]["path"] == "bench.json" for s in job["steps"])


def test_gpu_check_stops_clearly_without_a_gpu():
    """`make gpu-check` on a machine without CUDA (here, or any machine with the GPUs hidden)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, ROOT / "tools" / "gpu_check.py"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("gpu-check: no CUDA GPU: torch.cuda.is_available() is False"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = subprocess.run(["make", "--no-print-directory", "gpu-check"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode != 0 and "gpu-check: no CUDA GPU" in proc.stderr


def test_gpu_check_runs_every_chapter_and_both_benchmarks_with_the_sanitizers(tmp_path):
    """What tools/gpu_check.py runs (its commands: it cannot run here)."""
    tool = _load_tool("gpu_check")
    cmd = tool.commands("python", tmp_path, 4, tmp_path / "b.json")
    nbval = cmd["nbval"]
    assert nbval[:4] == ["python", "-m", "pytest", "book"] and "--nbval-lax" not in nbval and "-o" not in nbval
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--nbval" in addopts and addopts[addopts.index("--nbval-sanitize-with") + 1] == "nbval_sanitize.cfg"
    assert cmd["mnist"][1] == "benchmarks/mnist.py" and cmd["mnist"][2:4] == ["--device", "cuda"]
    assert cmd["gpt"][1:4] == ["benchmarks/gpt_char.py", "--data", str(tmp_path)]
    assert all((ROOT / c[1]).is_file() for c in (cmd["mnist"], cmd["gpt"]))
    assert tool.SHARED_DATA == ROOT.parent / "shared" / "data"


def test_compat_workflow_tests_both_ends_of_the_version_range():
    wf = _workflow("compat.yml")
    assert "schedule" in wf["on"] and "pull_request" in wf["on"]
    assert {"companion/**", "requirements.txt", "pyproject.toml"} <= set(wf["on"]["pull_request"]["paths"])
    (job,) = wf["jobs"].values()
    rows = job["strategy"]["matrix"]["include"]
    newest = next(r for r in rows if r["torch"] == "")
    floor = next(r for r in rows if r["torch"])
    assert newest["python"] == "3.12" and newest["torchvision"] == ""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch>={floor['torch'].lstrip('=').rsplit('.', 1)[0]}" in deps, "the floor tested is the floor promised"
    assert f"torchvision>={floor['torchvision'].lstrip('=').rsplit('.', 1)[0]}" in deps
    runs = _runs(wf)
    assert 'pytest tests -m "not slow and not book"' in runs and "--nbval-lax" in runs and "pytest book" in runs
    readme = (ROOT / "README.md").read_text()
    assert f"torch {floor['torch'].lstrip('=')}" in readme, "README states the tested floor"


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_book_workflow_builds_with_warnings_as_errors_and_deploys_to_pages():
    wf = _workflow("book.yml")
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert "make book" in [s.get("run") for s in build["steps"]]
    assert "-W" in next(line for line in (ROOT / "Makefile").read_text().splitlines() if "jupyter-book build" in line)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
    assert "refs/heads/main" in deploy["if"], "only main is published"
