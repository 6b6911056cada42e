"""Training-step time of the companion's encoder vs an equivalent ``nn.TransformerEncoder``.

    python benchmarks/encoder_speed.py [--batch 128] [--tokens 17] [--dim 64] [--depth 6] [--repeats 30]

Both stacks get the same shapes, the same weights (copied block by block) and the same
input; one step is forward + backward + AdamW step. Steps alternate between the two so that
background load hits both alike, and the median over ``--repeats`` rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn

from companion.encoder import Encoder


def build(args) -> tuple[nn.Module, nn.Module]:
    ours = Encoder(args.depth, args.dim, args.heads, args.mlp_dim, dropout=0.0, norm_first=True)
    layer = nn.TransformerEncoderLayer(
        args.dim, args.heads, args.mlp_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    theirs = nn.TransformerEncoder(layer, args.depth, norm=nn.LayerNorm(args.dim), enable_nested_tensor=False)
    for block, torch_layer in zip(ours.blocks, theirs.layers):
        block.load_from_torch(torch_layer)
    with torch.no_grad():
        ours.norm.weight.copy_(theirs.norm.weight)
        ours.norm.bias.copy_(theirs.norm.bias)
    return ours, theirs


def step_time(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = model(x).square().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--tokens", type=int, default=17, help="17 = 16 patches of a 28x28 digit + CLS")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp-dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave PyTorch's default)")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, theirs = build(args)
    x = torch.randn(args.batch, args.tokens, args.dim)
    with torch.no_grad():
        same = torch.allclose(ours(x), theirs(x), atol=1e-5)
    opts = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in (("companion", ours), ("torch", theirs))}
    times: dict[str, list[float]] = {"companion": [], "torch": []}
    for _ in range(5):  # warm-up
        step_time(ours, opts["companion"], x)
        step_time(theirs, opts["torch"], x)
    for _ in range(args.repeats):
        times["companion"].append(step_time(ours, opts["companion"], x))
        times["torch"].append(step_time(theirs, opts["torch"], x))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["companion"] / med["torch"]
    result = {
        "shape": [args.batch, args.tokens, args.dim],
        "depth": args.depth,
        "same_outputs_before_training": same,
        "median_step_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
        "ratio_companion_over_torch": round(ratio, 3),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    print(f"training step, input {args.batch}x{args.tokens}x{args.dim}, depth {args.depth}, {args.repeats} interleaved rounds:")
    print(f"  nn.TransformerEncoder : {med['torch'] * 1e3:8.2f} ms (median)")
    print(f"  companion Encoder     : {med['companion'] * 1e3:8.2f} ms (median)")
    print(f"  ratio companion/torch : {ratio:.3f}   (target <= 1.10; same outputs: {same})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
