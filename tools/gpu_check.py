"""GPU readiness in one command (`make gpu-check`): the book and benchmarks on CUDA.

    python tools/gpu_check.py                 # what `make gpu-check` runs
    python tools/gpu_check.py --skip-gpt      # leave out the (CPU) GPT benchmark

For a machine with a CUDA GPU and no internet. In order:
  1. asserts the GPU: ``torch.cuda.is_available()``, and ``companion.default_device()``
     (how the chapters pick their device) is CUDA; else ``no CUDA GPU: ...``, exit 2;
  2. finds the offline data: ``$COMPANION_DATA``, else ``../shared/data`` beside the
     repository (MNIST's four IDX files, checked by header and size; Tiny Shakespeare);
  3. nbval over every chapter (``book/``) with the sanitizers ``make test`` uses
     (``nbval_sanitize.cfg``): the stored CPU outputs must hold on the GPU;
  4. the recipe benchmark (``benchmarks/mnist.py``) in a short setting on the GPU;
  5. the GPT benchmark (``benchmarks/gpt_char.py``) on Tiny Shakespeare when the data
     has it (it measures the CPU recipe: a CPU figure from the GPU machine);
then prints a summary with every figure. Sized for five minutes on one modern GPU; each
step has a guard timeout. Exit 0 when every step passed, 1 when one failed, 2 when there
is no GPU or no data.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
NO_GPU_EXIT = 2
# The short benchmark setting: 10 ViT epochs (the recipe has 40), one seed, one timing
# round; the CNN and MLP get the ViT's training time, as in the full benchmark.
MNIST_ARGS = ["--epochs", "10", "--seeds", "0", "--calibration-rounds", "1"]
TIMEOUTS = {"nbval": 240, "mnist": 150, "gpt": 120}  # seconds; guards, not expectations


class Stop(Exception):
    """No GPU or no data: the message is printed, exit status 2."""


def gpu() -> str:
    """The GPU, described; raises :class:`Stop` (``no CUDA GPU: ...``) without one."""
    import torch

    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""
        hint = " (CUDA_VISIBLE_DEVICES is set to hide every GPU)" if hidden else ""
        raise Stop(
            f"no CUDA GPU: torch.cuda.is_available() is False{hint}; torch "
            f"{torch.__version__}, CUDA in this build: {built}. Run `make gpu-check` "
            "on a machine with an NVIDIA GPU and a CUDA build of PyTorch."
        )
    import companion

    device = companion.default_device()
    if device.type != "cuda":
        raise Stop(
            f"companion.default_device() is {device}, not CUDA, so the chapters would "
            f"not use the GPU: unset COMPANION_DEVICE "
            f"(it is {os.environ.get('COMPANION_DEVICE')!r})"
        )
    props = torch.cuda.get_device_properties(0)
    bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
    return (
        f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {bf16}"
    )


def data_root() -> Path:
    """The offline data folder; raises :class:`Stop` naming what is missing."""
    from companion.data import ENV_VAR
    from companion.idx import check_mnist_files

    env = os.environ.get(ENV_VAR)
    root = Path(env).expanduser() if env else SHARED_DATA
    raw = root / "MNIST" / "raw"
    if not raw.is_dir():
        where = f"{ENV_VAR}={env}" if env else f"no {ENV_VAR}, tried ../shared/data"
        raise Stop(
            f"no MNIST in {raw} ({where}); this check runs offline: make the data with "
            "`python tools/offline_mnist.py DIR` on a connected machine, copy DIR here "
            f"and set {ENV_VAR}=DIR"
        )
    try:
        check_mnist_files(raw, train=True)
        check_mnist_files(raw, train=False)
    except FileNotFoundError as exc:  # MNISTFileError: a truncated or foreign file
        raise Stop(str(exc)) from None
    return root


def commands(python: str, root: Path, workers: int, bench_json: Path) -> dict:
    """The three steps. ``pytest book`` takes pyproject.toml's addopts: ``--nbval``
    (every output compared) and ``--nbval-sanitize-with nbval_sanitize.cfg``."""
    return {
        "nbval": [python, "-m", "pytest", "book", "-q", "-p", "no:cacheprovider",
                  "-n", str(workers), "--dist", "loadfile"],
        "mnist": [python, "benchmarks/mnist.py", "--device", "cuda", *MNIST_ARGS,
                  "--json", str(bench_json), "--note", "make gpu-check: short setting"],
        "gpt": [python, "benchmarks/gpt_char.py", "--data", str(root), "--no-ratio"],
    }


def run_step(name: str, cmd: list[str], env: dict, timeout: float):
    """Run a step, streaming its output, killed after ``timeout`` seconds;
    returns (passed, seconds, output)."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            print(line, end="", flush=True)
            lines.append(line)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    seconds = time.perf_counter() - start
    if seconds >= timeout:
        lines.append(f"gpu-check: {name} was stopped after {timeout:.0f} s\n")
        print(lines[-1], end="")
        return False, seconds, "".join(lines)
    return proc.returncode == 0, seconds, "".join(lines)


def pytest_counts(output: str) -> str:
    """pytest's final counts, e.g. '262 passed in 80.1s'."""
    counts = re.compile(r"\b(passed|failed|error)")
    last = [line for line in output.splitlines() if counts.search(line)]
    return last[-1].strip("= ") if last else "no result line"


def mnist_figures(path: Path) -> str:
    if not path.is_file():
        return "no result"
    rows = json.loads(path.read_text()).get("summary", [])
    return "; ".join(
        f"{r['system']} {r['test_accuracy_mean']:.2%} "
        f"({r['epochs']} epochs, {r['train_seconds']} s)" for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-gpt", action="store_true", help="no GPT benchmark")
    p.add_argument("--workers", type=int, default=None,
                   help="notebooks run in parallel (default: up to 7)")
    args = p.parse_args(argv)

    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))  # companion from this checkout if it is not installed
    try:
        device = gpu()
        root = data_root()
    except Stop as exc:
        print(f"gpu-check: {exc}", file=sys.stderr)
        return NO_GPU_EXIT
    print(f"gpu-check: {device}\ngpu-check: data {root}", flush=True)
    env = dict(os.environ, COMPANION_DATA=str(root))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("COMPANION_DEVICE", None)
    paths = [str(ROOT), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    workers = args.workers or max(1, min(7, (os.cpu_count() or 2) // 2))
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    cmd = commands(sys.executable, root, workers, tmp / "mnist.json")
    results: list[tuple[str, bool, float, str]] = []

    ok, secs, out = run_step("every chapter on CUDA (nbval)", cmd["nbval"], env,
                             TIMEOUTS["nbval"])
    results.append(("nbval, every chapter", ok, secs, pytest_counts(out)))

    ok, secs, out = run_step("recipe benchmark (short)", cmd["mnist"], env,
                             TIMEOUTS["mnist"])
    figures = mnist_figures(tmp / "mnist.json") if ok else "no result"
    results.append(("benchmarks/mnist.py " + " ".join(MNIST_ARGS), ok, secs, figures))

    shakespeare = root / "tinyshakespeare" / "input.txt"
    if args.skip_gpt or not shakespeare.is_file():
        why = "--skip-gpt" if args.skip_gpt else f"no {shakespeare}"
        results.append(("benchmarks/gpt_char.py", True, 0.0, f"skipped ({why})"))
    else:
        ok, secs, out = run_step("GPT benchmark (Tiny Shakespeare)", cmd["gpt"], env,
                                 TIMEOUTS["gpt"])
        last = [line for line in out.splitlines() if line.startswith("gpt_char:")]
        results.append(("benchmarks/gpt_char.py --no-ratio", ok, secs,
                        last[-1] if last else "no result line"))
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n=== gpu-check summary ({device})")
    for name, ok, secs, figure in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<52} {secs:6.1f} s  {figure}")
    passed = all(ok for _, ok, _, _ in results)
    total = time.perf_counter() - started
    print(f"{'all passed' if passed else 'FAILED'} in {total:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
