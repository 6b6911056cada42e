import pytest
import torch

from companion.data import MNISTNotFoundError, mnist, resolve_root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_root():
    """The MNIST root the tests train on ($COMPANION_DATA; `make test` points it at ../shared/data)."""
    root = resolve_root()
    try:
        mnist(True, root)
        mnist(False, root)
    except MNISTNotFoundError as exc:
        pytest.fail(f"these tests need MNIST: {exc}")
    return root
