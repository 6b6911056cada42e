"""Character-level GPT on Tiny Shakespeare on a CPU: validation loss and training time.

    .venv/bin/python benchmarks/gpt_char.py          # the best CPU recipe only
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/gpt_char.py --recipe all \\
        --json benchmarks/results/gpt_char_cpu.json   # every row of the stored results

Data: the first 90 % of the characters for training, the last 10 % for validation. The
validation loss is the mean per-character cross-entropy over EVERY non-overlapping
``block_size`` window of the validation split (111,539 characters), not a sample.

Recipes (each trains for a fixed number of iterations: its whole lr schedule):
    best     the companion's CPU recipe: a smaller model than nanoGPT's, a wider
             batch and a higher learning rate; its iteration count fits in 60 s of
             training on 2 threads of a quiet 2-core machine. A wall-clock guard is
             only a fail-safe: if it fires (a slow or busy machine) the run is cut
             short, a WARNING line says so and the JSON records
             ``"stopped_by_guard": true``.
    nanogpt  nanoGPT's published CPU configuration, exactly: 4 layers, 4 heads,
             128-dim embeddings, context 64, batch 12, 2,000 iterations, no dropout,
             AdamW(betas 0.9, 0.99, weight decay 0.1 on matrices), lr 1e-3 with 100
             warm-up steps and cosine decay to 1e-4, gradients clipped at 1.0
             (nanoGPT reports val loss ~1.88).
``--recipe all`` trains both, then times interleaved training steps of ``GPT`` and of
the same stack built from ``nn.TransformerEncoderLayer`` with a causal mask (a ratio
below 1: the companion is faster), all in one run; ``--json`` stores every figure with
its provenance.

The last line reads ``gpt_char: val_loss=<x.xxx> train_seconds=<s> iters=<n>`` for the
best recipe.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from companion.gpt import GPT, GPTConfig  # noqa: E402
from companion.text import (  # noqa: E402
    CharTokenizer,
    RandomWindows,
    sequential_windows,
    tiny_shakespeare,
    train_val_split,
    unigram_entropy,
)
from companion.train import evaluate, fit, set_seed  # noqa: E402


@dataclass(frozen=True)
class Recipe:
    dim: int
    depth: int
    heads: int
    mlp_dim: int
    block_size: int
    batch_size: int
    iters: int
    lr: float
    min_lr: float
    warmup_iters: int
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0
    guard_s: float | None = None  # fail-safe: stop training after this many seconds

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size, self.block_size, self.dim, self.depth, self.heads,
                         self.mlp_dim)


RECIPES = {
    "best": Recipe(dim=64, depth=2, heads=4, mlp_dim=256, block_size=32, batch_size=96,
                   iters=720, lr=1e-2, min_lr=1e-4, warmup_iters=30, guard_s=60.0),
    "nanogpt": Recipe(dim=128, depth=4, heads=4, mlp_dim=512, block_size=64,
                      batch_size=12, iters=2000, lr=1e-3, min_lr=1e-4,
                      warmup_iters=100),
}


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the OS has none)."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def nanogpt_lr(it: int, r: Recipe) -> float:
    """nanoGPT's ``get_lr``: linear warm-up, then cosine decay from lr to min_lr."""
    if it < r.warmup_iters:
        return r.lr * (it + 1) / (r.warmup_iters + 1)
    ratio = min(1.0, (it - r.warmup_iters) / max(1, r.iters - r.warmup_iters))
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.lr - r.min_lr)


def optimizer_for(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only (nanoGPT's ``configure_optimizers``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": r.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=r.lr, betas=r.betas)


def run(name: str, r: Recipe, train_ids, val_ids, vocab_size: int, seed: int = 0
        ) -> dict:
    """Train ``r`` for ``r.iters`` iterations; validation loss over the whole split."""
    load_start = load_average()
    set_seed(seed)
    model = GPT(r.gpt_config(vocab_size))
    optimizer = optimizer_for(model, r)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: nanogpt_lr(it, r) / r.lr)
    loader = RandomWindows(train_ids, r.block_size, r.batch_size, batches=r.iters,
                           seed=seed)
    val = sequential_windows(val_ids, r.block_size, batch_size=256)
    start = time.perf_counter()

    def guard(step) -> bool:
        return r.guard_s is not None and time.perf_counter() - start > r.guard_s

    history = fit(model, loader, steps=r.iters, log_every=max(1, r.iters // 4),
                  optimizer=optimizer, scheduler=scheduler, grad_clip=r.grad_clip,
                  device="cpu", progress=False, on_step=guard)
    train_seconds = time.perf_counter() - start
    iters = history.steps[-1]
    stopped = iters < r.iters
    val_loss = evaluate(model, val, device="cpu")["loss"]
    result = {
        "recipe": name, "config": asdict(r), "params": model.num_params(),
        "iters": iters, "stopped_by_guard": stopped,
        "train_seconds": round(train_seconds, 1),
        "ms_per_iter": round(1000 * train_seconds / iters, 1),
        "val_loss": round(val_loss, 4),
        "val_bits_per_char": round(val_loss / math.log(2), 4),
        "train_loss_curve": [round(x, 4) for x in history.train_loss],
        "curve_steps": history.steps,
        "load_average_at_start": load_start, "load_average_at_end": load_average(),
    }
    bits = result["val_bits_per_char"]
    print(f"{name}: val_loss={val_loss:.3f} ({bits:.3f} bits/char) "
          f"after {iters} of {r.iters} iters in {train_seconds:.1f} s "
          f"({result['ms_per_iter']} ms/iter), {result['params']:,} parameters; "
          f"load average {load_start} -> {result['load_average_at_end']}", flush=True)
    if stopped:
        print(f"WARNING: {name}: the {r.guard_s:.0f} s wall-clock guard stopped "
              f"training at iteration {iters} of {r.iters}: its learning-rate schedule "
              f"was cut, so this is NOT a measurement of the recipe (machine too slow "
              f"or busy; load average {result['load_average_at_end']}).", flush=True)
    return result


class TorchGPT(nn.Module):
    """:class:`GPT`'s stack made of ``nn.TransformerEncoderLayer`` + a causal mask."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.pos_emb = nn.Embedding(c.block_size, c.dim)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, c.mlp_dim, dropout=0.0,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight

    def forward(self, idx):  # idx [batch, tokens] -> logits [batch, tokens, vocab]
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t))  # [batch, tokens, dim]
        mask = nn.Transformer.generate_square_subsequent_mask(t)  # [tokens, tokens]
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


def step_time_ratio(r: Recipe, vocab_size: int, rounds: int = 10, steps: int = 5
                    ) -> dict:
    """Median over ``rounds`` of companion / PyTorch-layers step time, interleaved."""
    c = r.gpt_config(vocab_size)
    torch.manual_seed(0)
    models = {"companion": GPT(c), "torch": TorchGPT(c)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    x = torch.randint(vocab_size, (r.batch_size, r.block_size))  # [batch, tokens]
    y = torch.randint(vocab_size, (r.batch_size, r.block_size))

    def train_steps(key: str) -> float:
        model, opt = models[key], opts[key]
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / steps

    for key in models:
        train_steps(key)  # warm-up
    times = {k: [] for k in models}
    for _ in range(rounds):
        for key in models:
            times[key].append(train_steps(key))
    ratios = [a / b for a, b in zip(times["companion"], times["torch"])]
    out = {
        "companion_ms": round(1000 * statistics.median(times["companion"]), 1),
        "torch_ms": round(1000 * statistics.median(times["torch"]), 1),
        "ratio": round(statistics.median(ratios), 3),
        "shape": f"batch {r.batch_size} x context {r.block_size}, {r.depth} layers, "
                 f"dim {r.dim}",
        "rounds": rounds, "steps_per_round": steps,
    }
    print(f"step time: companion {out['companion_ms']} ms, nn.TransformerEncoderLayer "
          f"{out['torch_ms']} ms, ratio {out['ratio']} ({out['shape']})", flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=[*RECIPES, "all"], default="best")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None,
                        help="folder holding tinyshakespeare/input.txt")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--no-ratio", action="store_true",
                        help="skip the step-time comparison (run by --recipe all)")
    args = parser.parse_args(argv)
    omp = os.environ.get("OMP_NUM_THREADS")
    command = " ".join([*([f"OMP_NUM_THREADS={omp}"] if omp else []),
                        os.path.relpath(sys.executable), *sys.argv])
    torch.set_num_threads(args.threads)
    load_start = load_average()
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    text = tiny_shakespeare(args.data)
    tok = CharTokenizer.from_text(text)
    train_ids, val_ids = train_val_split(tok.encode(text), 0.9)
    entropy = unigram_entropy(train_ids, tok.vocab_size)
    print(f"Tiny Shakespeare: {len(train_ids):,} train / {len(val_ids):,} validation "
          f"characters, vocabulary {tok.vocab_size}, unigram entropy {entropy:.3f} "
          f"nats; "
          f"{torch.get_num_threads()} threads, load average {load_start}", flush=True)
    names = list(RECIPES) if args.recipe == "all" else [args.recipe]
    results = {n: run(n, RECIPES[n], train_ids, val_ids, tok.vocab_size) for n in names}
    ratio = None
    if args.recipe == "all" and not args.no_ratio:
        ratio = step_time_ratio(RECIPES["nanogpt"], tok.vocab_size)
    if args.json:
        record = {
            "benchmark": "benchmarks/gpt_char.py", "args": vars(args),
            "results": results,
            "step_time": ratio, "unigram_entropy": round(entropy, 4),
            "validation": "every non-overlapping window of the last 10 %",
            "provenance": {
                "date_utc": date, "command": command, "torch": torch.__version__,
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
                "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "load_average_at_start": load_start,
                "load_average_at_end": load_average(),
                "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    for name, result in results.items():  # repeated next to the summary line
        if result["stopped_by_guard"]:
            print(f"WARNING: {name} was stopped by its wall-clock guard after "
                  f"{result['iters']} of {result['config']['iters']} iterations "
                  f"(stopped_by_guard: true).", flush=True)
    last = results["best"] if "best" in results else results[names[-1]]
    print(f"gpt_char: val_loss={last['val_loss']:.3f} "
          f"train_seconds={last['train_seconds']:.1f} iters={last['iters']}")


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
