"""Draw the book's architecture diagrams as SVG files in ``book/figures/``.

    python tools/diagrams.py            # write every diagram
    python tools/diagrams.py --check    # exit 1 if a committed SVG differs from what this draws

The diagrams are code so that they are reviewed like code and stay crisp at any zoom: plain
SVG (boxes, arrows, text), no timestamps, byte-for-byte reproducible. Shapes in the labels use
the book's names: ``B`` batch, ``T`` tokens, ``D`` model width, ``H`` heads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "figures"

# One palette for every diagram (colour-blind-safe Okabe-Ito tints), by role.
FILL = {
    "norm": "#fde9c4",  # LayerNorm
    "attn": "#cfe5f5",  # attention
    "ffn": "#d7efd9",  # feed-forward
    "data": "#f2f2f2",  # tensors, inputs, outputs
    "embed": "#eadcf2",  # embeddings, positions, CLS
    "mask": "#0072b2",  # a visible (allowed) attention entry
}
STROKE = "#333333"
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


@dataclass
class Svg:
    """A tiny SVG canvas: boxes, arrows, circles and text, in user units (1 unit = 1 px)."""

    width: int
    height: int
    title: str
    desc: str
    items: list[str] = field(default_factory=list)

    def box(self, x, y, w, h, label, kind="data", sub=None, rx=6):
        """A rounded box centred at (x, y); ``sub`` is a second, smaller line (a shape)."""
        self.items.append(
            f'<rect x="{x - w / 2:g}" y="{y - h / 2:g}" width="{w:g}" height="{h:g}" '
            f'rx="{rx}" fill="{FILL[kind]}" stroke="{STROKE}" stroke-width="1.2"/>'
        )
        if sub is None:
            self.text(x, y + 5, label, size=14)
        else:
            self.text(x, y - 2, label, size=14)
            self.text(x, y + 15, sub, size=11.5, mono=True, color="#444444")

    def text(self, x, y, s, size=13, anchor="middle", mono=False, color="#111111",
             bold=False):
        family = 'font-family="DejaVu Sans Mono, Menlo, monospace"' if mono else FONT
        weight = ' font-weight="bold"' if bold else ""
        self.items.append(
            f'<text x="{x:g}" y="{y:g}" {family} font-size="{size:g}"{weight} '
            f'text-anchor="{anchor}" fill="{color}">{escape(s)}</text>'
        )

    def arrow(self, points, dashed=False, color=STROKE):
        """A polyline through ``points`` [(x, y), ...] ending in an arrow head."""
        path = " ".join(f"{x:g},{y:g}" for x, y in points)
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        self.items.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" '
            f'stroke-width="1.5"{dash} marker-end="url(#head)"/>'
        )

    def plus(self, x, y, r=11):
        """The residual addition: a circled plus."""
        self.items.append(
            f'<circle cx="{x:g}" cy="{y:g}" r="{r}" fill="white" stroke="{STROKE}" '
            f'stroke-width="1.3"/>'
        )
        self.items.append(
            f'<path d="M{x - r + 4:g},{y:g} H{x + r - 4:g} M{x:g},{y - r + 4:g} '
            f'V{y + r - 4:g}" stroke="{STROKE}" stroke-width="1.5"/>'
        )

    def cell(self, x, y, s, on):
        self.items.append(
            f'<rect x="{x:g}" y="{y:g}" width="{s:g}" height="{s:g}" '
            f'fill="{FILL["mask"] if on else "white"}" stroke="#999999" '
            f'stroke-width="0.8"/>'
        )

    def render(self) -> str:
        head = (
            '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{STROKE}"/></marker>'
        )
        body = "\n  ".join(self.items)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            f'role="img" aria-labelledby="title desc">\n'
            f"  <title id=\"title\">{escape(self.title)}</title>\n"
            f"  <desc id=\"desc\">{escape(self.desc)}</desc>\n"
            f"  <defs>{head}</defs>\n"
            f'  <rect width="100%" height="100%" fill="white"/>\n'
            f"  {body}\n</svg>\n"
        )


def _column(svg: Svg, x: float, steps: list[tuple], top: float, gap: float) -> list:
    """Stack ``steps`` (label, kind[, sub]) downwards from ``top``; return their y centres."""
    ys = []
    for i, step in enumerate(steps):
        y = top + i * gap
        if step[0] == "+":
            svg.plus(x, y)
        else:
            svg.box(x, y, 190, 44, step[0], step[1], step[2] if len(step) > 2 else None)
        ys.append(y)
    return ys


def encoder_block() -> Svg:
    """Pre-norm and post-norm encoder blocks side by side (chapter 3)."""
    svg = Svg(
        640, 560, "Pre-norm and post-norm encoder blocks",
        "Two encoder blocks. Pre-norm: LayerNorm, attention, add the input; LayerNorm, "
        "feed-forward, add. The residual path from input to output passes through no "
        "LayerNorm. Post-norm: attention, add, LayerNorm; feed-forward, add, LayerNorm: "
        "every path passes through both LayerNorms.",
    )
    gap = 62
    for x, name, steps in (
        (170, "Pre-norm (GPT-2, ViT)", [
            ("x", "data", "[B, T, D]"), ("LayerNorm", "norm"),
            ("Multi-head attention", "attn"), ("+",), ("LayerNorm", "norm"),
            ("Feed-forward", "ffn"), ("+",), ("out", "data", "[B, T, D]"),
        ]),
        (470, "Post-norm (original Transformer)", [
            ("x", "data", "[B, T, D]"), ("Multi-head attention", "attn"), ("+",),
            ("LayerNorm", "norm"), ("Feed-forward", "ffn"), ("+",),
            ("LayerNorm", "norm"), ("out", "data", "[B, T, D]"),
        ]),
    ):
        svg.text(x, 30, name, size=15, bold=True)
        ys = _column(svg, x, steps, 70, gap)
        for (a, sa), (b, sb) in zip(zip(ys, steps), zip(ys[1:], steps[1:])):
            start = a + (11 if sa[0] == "+" else 22)
            end = b - (11 if sb[0] == "+" else 22)
            svg.arrow([(x, start), (x, end)])
        # residual connections: from the input of each sub-layer around to its "+"
        plus = [i for i, s in enumerate(steps) if s[0] == "+"]
        for k, i in enumerate(plus):
            src = 0 if k == 0 else plus[k - 1] + (1 if steps[plus[k - 1] + 1][1] == "norm"
                                                  and name.startswith("Post") else 0)
            y0 = ys[src] + (11 if steps[src][0] == "+" else 22) + 8
            side = x - 120
            svg.arrow([(x, y0), (side, y0), (side, ys[i]), (x - 12, ys[i])], dashed=True)
        svg.text(x, 550, "dashed: residual connection", size=11, color="#555555")
    return svg


def attention_heads() -> Svg:
    """Multi-head attention: project, split into heads, attend, merge (chapter 2)."""
    svg = Svg(
        720, 470, "Multi-head attention: split, attend, merge",
        "Tokens x of shape [B, T, D] are projected to queries, keys and values; each is "
        "split into H heads of width D/H; every head computes softmax(Q K^T / sqrt(d_k)) V "
        "on its own; the heads are concatenated back to [B, T, D] and mixed by an output "
        "projection.",
    )
    svg.box(360, 40, 200, 46, "x", "data", "[B, T, D]")
    for x, n in ((160, "Q"), (360, "K"), (560, "V")):
        svg.arrow([(360, 63), (360, 80), (x, 80), (x, 102)])
        svg.box(x, 125, 170, 46, f"Linear → {n}", "attn", "[B, T, D]")
        svg.arrow([(x, 148), (x, 182)])
        svg.box(x, 205, 170, 46, "split heads", "data", "[B, H, T, D/H]")
    svg.arrow([(160, 228), (160, 262), (300, 262), (300, 282)])
    svg.arrow([(360, 228), (360, 282)])
    svg.arrow([(560, 228), (560, 262), (420, 262), (420, 282)])
    svg.box(360, 310, 330, 56, "softmax(QKᵀ / √d_k) V, per head", "attn",
            "scores [B, H, T, T] → [B, H, T, D/H]")
    svg.arrow([(360, 338), (360, 362)])
    svg.box(360, 385, 230, 46, "merge heads", "data", "[B, T, D]")
    svg.arrow([(360, 408), (360, 422)])
    svg.box(360, 445, 230, 40, "Linear (output)", "attn")
    return svg


def vit_pipeline() -> Svg:
    """Image to logits through patches, tokens, CLS, positions and the encoder (chapter 5)."""
    svg = Svg(
        860, 270, "The Vision Transformer pipeline",
        "An MNIST image [B, 1, 28, 28] is cut into 16 patches of 7 by 7 pixels (or "
        "embedded by a convolutional stem), each patch becomes a D-dimensional token, a "
        "CLS token is prepended, learned positions are added, L encoder blocks mix the "
        "tokens, and a linear head reads the CLS token to give 10 logits.",
    )
    steps = [
        ("image", "data", "[B, 1, 28, 28]"),
        ("patches", "data", "[B, 16, 49]"),
        ("Linear", "embed", "[B, 16, D]"),
        ("+ CLS", "embed", "[B, 17, D]"),
        ("+ positions", "embed", "[B, 17, D]"),
    ]
    xs = [80 + i * 175 for i in range(len(steps))]
    for x, (label, kind, sub) in zip(xs, steps):
        svg.box(x, 70, 150, 50, label, kind, sub)
    for a, b in zip(xs, xs[1:]):
        svg.arrow([(a + 75, 70), (b - 75, 70)])
    svg.text(xs[1], 120, "7×7 patches (or a", size=11, color="#555555")
    svg.text(xs[1], 134, "conv stem)", size=11, color="#555555")
    svg.arrow([(xs[-1], 95), (xs[-1], 160), (xs[3] + 85, 160), (xs[3] + 85, 200),
               (xs[3] + 70, 200)])
    svg.box(xs[3], 200, 140, 50, "Encoder × L", "attn", "[B, 17, D]")
    svg.arrow([(xs[3] - 70, 200), (xs[2] + 75, 200)])
    svg.box(xs[2], 200, 150, 50, "CLS token", "data", "[B, D]")
    svg.arrow([(xs[2] - 75, 200), (xs[1] + 75, 200)])
    svg.box(xs[1], 200, 150, 50, "LayerNorm + Linear", "ffn", "head")
    svg.arrow([(xs[1] - 75, 200), (xs[0] + 75, 200)])
    svg.box(xs[0], 200, 150, 50, "logits", "data", "[B, 10]")
    svg.text(430, 258, "B batch · D model width · L blocks · 16 patches + 1 CLS = 17 tokens",
             size=11.5, color="#555555")
    return svg


def causal_families() -> Svg:
    """The causal mask and encoder-only / decoder-only / encoder-decoder (chapter 7)."""
    svg = Svg(
        900, 330, "The causal mask and the three transformer families",
        "Left: a 6 by 6 attention mask where row t (a query position) may attend to "
        "columns 0 to t only. Right: encoder-only models (BERT, ViT) let every token see "
        "every token; decoder-only models (GPT) use the causal mask; encoder-decoder "
        "models (the original Transformer, T5) encode the source fully and decode the "
        "target causally, attending to the encoder's output through cross-attention.",
    )
    n, s, x0, y0 = 6, 26, 62, 80
    svg.text(x0 + n * s / 2, 40, "Causal mask", size=15, bold=True)
    for i in range(n):
        for j in range(n):
            svg.cell(x0 + j * s, y0 + i * s, s, j <= i)
    svg.text(x0 + n * s / 2, y0 - 8, "key position →", size=11, color="#555555")
    svg.text(x0 - 8, y0 + 12, "query", size=11, anchor="end", color="#555555")
    svg.text(x0 + n * s / 2, y0 + n * s + 22, "blue: may attend", size=11,
             color="#555555")
    fams = [
        (330, "Encoder-only", "BERT, ViT", "every token sees every token"),
        (530, "Decoder-only", "GPT", "token t sees tokens 0..t"),
        (755, "Encoder-decoder", "Transformer, T5", "source: all; target: causal"),
    ]
    for x, name, examples, rule in fams:
        svg.text(x, 40, name, size=15, bold=True)
        svg.text(x, 60, examples, size=12, color="#444444")
        svg.text(x, 315, rule, size=11.5, color="#555555")
    # encoder-only: a bidirectional stack
    svg.box(330, 140, 150, 46, "Encoder × L", "attn", "full attention")
    svg.box(330, 240, 150, 40, "tokens", "data")
    svg.arrow([(330, 220), (330, 163)])
    # decoder-only
    svg.box(530, 140, 150, 46, "Decoder × L", "attn", "causal attention")
    svg.box(530, 240, 150, 40, "tokens", "data")
    svg.arrow([(530, 220), (530, 163)])
    # encoder-decoder
    svg.box(680, 140, 104, 46, "Encoder", "attn", "full")
    svg.box(830, 140, 104, 46, "Decoder", "attn", "causal")
    svg.box(680, 240, 104, 40, "source", "data")
    svg.box(830, 240, 104, 40, "target →", "data")
    svg.arrow([(680, 220), (680, 163)])
    svg.arrow([(830, 220), (830, 163)])
    svg.arrow([(732, 140), (778, 140)])
    svg.text(755, 100, "cross-", size=11, color="#555555")
    svg.text(755, 113, "attention", size=11, color="#555555")
    return svg


DIAGRAMS = {
    "encoder_block.svg": encoder_block,
    "attention_heads.svg": attention_heads,
    "vit_pipeline.svg": vit_pipeline,
    "causal_families.svg": causal_families,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name, draw in DIAGRAMS.items():
        text = draw().render()
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)} (run python tools/diagrams.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
