"""The nbval sanitizers make CUDA outputs compare equal to the CPU outputs stored in the book."""

import re
from pathlib import Path

import pytest

CFG = Path(__file__).resolve().parents[1] / "nbval_sanitize.cfg"


def rules():
    # the exact parsing nbval 0.11 uses (nbval.plugin.get_sanitize_patterns)
    return re.findall("^regex: (.*)$\n^replace: (.*)$", CFG.read_text(), flags=re.M)


def sanitize(text):
    for regex, replace in rules():
        text = re.sub(regex, replace, text)
    return text


def test_every_rule_parses_and_has_a_non_empty_replacement():
    pairs = rules()
    assert len(pairs) == CFG.read_text().count("\nregex: ") and len(pairs) >= 8
    assert all(replace.strip() for _, replace in pairs)


@pytest.mark.parametrize(
    "cpu, cuda",
    [
        ("tensor([1., 2.])", "tensor([1., 2.], device='cuda:0')"),
        ("tensor([[0.1000, 0.2000]], grad_fn=<AddBackward0>)",
         "tensor([[0.1000, 0.2000]], device='cuda:0',\n       grad_fn=<AddBackward0>)"),
        ("tensor([[ 0.1000,  0.2000,  0.3000,  0.4000,  0.5000,  0.6000,  0.7000,  0.8000]])",
         "tensor([[ 0.1000,  0.2000,  0.3000,  0.4000,  0.5000,  0.6000,  0.7000,  0.8000]],\n       device='cuda:0')"),
        ("tensor([1, 2], dtype=torch.int32)", "tensor([1, 2], device='cuda:1', dtype=torch.int32)"),
        ("tensor([1., 2.], requires_grad=True)", "tensor([1., 2.], device='cuda:0', requires_grad=True)"),
        ("device(type='cpu')", "device(type='cuda', index=0)"),
        ("device(type='cpu')", "device(type='cuda')"),
        ("running on cpu", "running on cuda"),
        ("<Figure at 0x7f3a2b1c9d00>", "<Figure at 0x7ff0aa112233>"),
        ('File /tmp/ipykernel_123/4567.py:3', 'File /tmp/ipykernel_98/1111.py:3'),
        ("epoch 1/3: 100%|####| 79/79 [00:02<00:00, 31.2it/s, loss=0.5]",
         "epoch 1/3: 100%|####| 79/79 [00:01<00:00, 75.0it/s, loss=0.5]"),
        ("trained in 12.3s", "trained in 1.4s"),
        ("forward: 3.20 ms", "forward: 0.41 ms"),
    ],
)
def test_cpu_and_cuda_reprs_sanitize_to_the_same_text(cpu, cuda):
    assert sanitize(cpu) == sanitize(cuda)


@pytest.mark.parametrize(
    "a, b",
    [
        ("tensor([1., 2.])", "tensor([1., 3.])"),
        ("torch.Size([128, 16, 49])", "torch.Size([128, 49, 16])"),
        ("accuracy 98.10%", "accuracy 97.10%"),
        ("tensor([1, 2], dtype=torch.int32)", "tensor([1, 2], dtype=torch.int64)"),
    ],
)
def test_real_differences_survive_sanitizing(a, b):
    assert sanitize(a) != sanitize(b)


# Tensors printed by torch itself as a CPU run and as a GPU run would print them (cuda_like
# prepends torch's own `device='cuda:0'` suffix; torch then places and wraps the suffixes):
# shapes whose last line ends just before, at and past the 80-column wrap, with every suffix.
def _tensors():
    import torch

    torch.manual_seed(0)
    for rows in (1, 2, 3):
        for cols in range(1, 14):
            base = torch.randn(rows, cols) * 10
            yield f"{rows}x{cols}", base
            yield f"{rows}x{cols}-int32", base.to(torch.int32)
            yield f"{rows}x{cols}-float16", base.to(torch.float16)
            yield f"{rows}x{cols}-requires_grad", base.clone().requires_grad_(True)
            yield f"{rows}x{cols}-grad_fn", base.clone().requires_grad_(True) * 2
    yield "scalar", torch.tensor(3.5)
    yield "empty", torch.empty(0, 3)
    yield "bool", torch.tensor([True, False])
    yield "parameter", torch.nn.Parameter(torch.randn(2, 3))
    yield "long-1d", torch.arange(40.0)


TENSORS = dict(_tensors())


@pytest.mark.parametrize("name", list(TENSORS))
def test_torch_printed_cuda_reprs_sanitize_to_the_cpu_repr(name):
    from cuda_like import CUDA_SUFFIX, printing_as_cuda

    tensor = TENSORS[name]
    cpu = repr(tensor)
    with printing_as_cuda():
        cuda = repr(tensor)
    assert CUDA_SUFFIX in cuda and CUDA_SUFFIX not in cpu
    assert sanitize(cuda) == sanitize(cpu), f"\nCPU:  {cpu!r}\nCUDA: {cuda!r}"
