"""Chapter 6, longer budget: do the answers that could flip with more training still hold?

    OMP_NUM_THREADS=1 python benchmarks/questions_long.py \\
        --json benchmarks/results/questions_long_cpu.json      # the stored results
    python benchmarks/questions_long.py --time-one             # time one long run, then stop
    python benchmarks/questions_long.py --factor 1 --seeds 0   # chapter 6's budget, quickly

Chapter 6 answers each question after 250 optimizer steps (2 epochs of 4,000 images,
batch 32). Three of its answers are about how fast something trains, so more training could
change them: normalising the input (question 1), CLS token vs mean pooling (question 2), and
pre-norm vs post-norm (question 4). This script reruns those comparisons through
:func:`companion.experiments.compare` with ``--factor`` times the epochs (default 4: 1,000
steps), on the same images and seeds, and prints (and optionally stores) each paired
difference with its verdict. The JSON holds the provenance (machine, torch, data, date,
command, budget) and every run, so chapter 6 rebuilds the :class:`Results` from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable

import torch

from companion import edits
from companion.experiments import Budget, Difference, Trial, compare
from companion.train import default_device
from companion.vit import preset

# Chapter 6's budget and seeds (``BUDGET`` and ``SEEDS`` there).
SHORT = Budget(train_size=4000, test_size=2000, epochs=2, batch_size=32)
SEEDS = (0, 1, 2)


def _post_norm_at(depth: int) -> Trial:
    return Trial(model=preset("small", depth=depth), edit=edits.post_norm)


def _pooling(pool: str, **optimizer) -> Trial:
    return Trial(model=preset("small", pool=pool), **optimizer)


# Question 1 also asks whether the effect of the scaling depends on the positions: the
# difference of the first two differences, seed by seed (chapter 6's "interaction").
INTERACTIONS = {"1. normalisation": ("(raw − normalised) with positions",
                                     "(raw − normalised) without positions")}

PLAIN_SGD = dict(optimizer="sgd", lr=0.01, momentum=0.0)

# question -> (configurations, the paired differences "a - b" that chapter 6 reports,
# seeds: None for chapter 6's three, or the question's own as in chapter 6)
QUESTIONS: dict[
    str, tuple[dict[str, Callable[[], Trial]], list[tuple[str, str]], tuple[int, ...] | None]
] = {
    "1. normalisation": (
        {
            "normalised": lambda: Trial(),
            "raw [0, 1]": lambda: Trial(normalize=False),
            "normalised, no positions": lambda: Trial(edit=edits.no_positions),
            "raw [0, 1], no positions": lambda: Trial(normalize=False,
                                                      edit=edits.no_positions),
        },
        [
            ("raw [0, 1]", "normalised"),
            ("raw [0, 1], no positions", "normalised, no positions"),
            ("normalised, no positions", "normalised"),
        ],
        (0, 1, 2, 3, 4),
    ),
    "2. CLS vs mean pooling": (
        {
            "cls, AdamW 3e-3": lambda: _pooling("cls"),
            "mean, AdamW 3e-3": lambda: _pooling("mean"),
            "cls, plain SGD 0.01": lambda: _pooling("cls", **PLAIN_SGD),
            "mean, plain SGD 0.01": lambda: _pooling("mean", **PLAIN_SGD),
        },
        [
            ("cls, AdamW 3e-3", "mean, AdamW 3e-3"),
            ("cls, plain SGD 0.01", "mean, plain SGD 0.01"),
        ],
        None,
    ),
    "4. pre-norm vs post-norm": (
        {
            "pre-norm, depth 2": lambda: Trial(model=preset("small", depth=2)),
            "post-norm, depth 2": lambda: _post_norm_at(2),
            "pre-norm, depth 8": lambda: Trial(model=preset("small", depth=8)),
            "post-norm, depth 8": lambda: _post_norm_at(8),
        },
        [
            ("pre-norm, depth 2", "post-norm, depth 2"),
            ("pre-norm, depth 8", "post-norm, depth 8"),
        ],
        None,
    ),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = (line for line in f if line.startswith("model name"))
            cpu = next(line.split(":", 1)[1].strip() for line in lines)
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({torch.get_num_threads()} threads){gpu}"


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factor", type=int, default=4, help="epochs × this (default 4)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds for every question (default: chapter 6's per question)")
    p.add_argument("--questions", nargs="+", default=list(QUESTIONS),
                   choices=list(QUESTIONS), metavar="QUESTION")
    p.add_argument("--data", default=None, help="MNIST root (default: $COMPANION_DATA)")
    p.add_argument("--device", default=None)
    p.add_argument("--time-one", action="store_true",
                   help="train the standard configuration once (seed 0), print the time")
    p.add_argument("--json", default=None, help="write the provenance and every run here")
    args = p.parse_args(argv)
    if args.factor < 1:
        p.error("--factor must be a positive integer")

    budget = dataclasses.replace(SHORT, epochs=SHORT.epochs * args.factor)
    device = torch.device(args.device) if args.device else default_device()
    data = budget.data(args.data)
    steps = budget.steps(len(data.x_train))
    print(f"data: {data.info}")
    print(f"machine: {machine()}; torch {torch.__version__}; device {device}")
    print(f"budget: {budget} = {steps} optimizer steps per run "
          f"(chapter 6: {SHORT.steps(len(data.x_train))})", flush=True)

    if args.time_one:
        one = compare({"standard": Trial()}, seeds=(0,), budget=budget, device=device,
                      root=args.data)
        print(f"one standard run: {one.mean('standard', 'seconds'):.1f} s "
              f"(load average {load_average()})")
        return 0

    start = time.perf_counter()
    loads = [load_average()]
    questions = {}
    for question in args.questions:
        configs, pairs, own_seeds = QUESTIONS[question]
        seeds = args.seeds or list(own_seeds or SEEDS)
        results = compare({name: make() for name, make in configs.items()},
                          seeds=seeds, budget=budget, device=device,
                          root=args.data, progress=True)
        loads.append(load_average())
        print(results)
        found = [results.difference(a, b) for a, b in pairs]
        if question in INTERACTIONS:
            values = [x - y for x, y in zip(found[0].values, found[1].values)]
            found.append(Difference(*INTERACTIONS[question], "accuracy", values))
        differences = []
        for d in found:
            a, b = d.a, d.b
            print(d, flush=True)
            differences.append({"a": a, "b": b, "metric": d.metric, "values": d.values,
                                "mean": d.mean, "std": d.std, "t": d.t, "p": d.p,
                                "verdict": d.verdict})
        questions[question] = {
            "seeds": seeds,
            "runs": {name: {str(s): m for s, m in by_seed.items()}
                     for name, by_seed in results.runs.items()},
            "differences": differences,
        }
    seconds = time.perf_counter() - start
    print(f"total: {seconds:.0f} s wall clock (load averages {loads})")

    if args.json:
        result = {
            "what": "chapter 6 comparisons rerun with a longer training budget",
            "command": "OMP_NUM_THREADS=1 python benchmarks/questions_long.py "
                       + shlex.join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine(),
            "torch": torch.__version__,
            "device": str(device),
            "data": data.info,
            "budget": dataclasses.asdict(budget),
            "steps": steps,
            "short_budget": dataclasses.asdict(SHORT),
            "short_steps": SHORT.steps(len(data.x_train)),
            "factor": args.factor,
            "seeds": args.seeds or "chapter 6's: 0-4 for question 1, 0-2 otherwise",
            "wall_seconds": round(seconds),
            "load_averages": loads,
            "questions": questions,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
