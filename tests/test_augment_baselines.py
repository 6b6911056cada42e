import pytest
import torch
from torch.testing import assert_close

from companion.augment import RandomAffine, affine
from companion.baselines import MLP, ExampleCNN


def test_identity_affine_returns_the_images():
    images = torch.randn(4, 1, 28, 28)
    out = RandomAffine(degrees=0, translate=0, scale=0, shear=0)(images)
    assert_close(out, images, atol=1e-5, rtol=0)


def test_affine_is_random_per_image_repeatable_with_a_generator_and_fills_background():
    images = torch.full((8, 1, 28, 28), -0.5)  # background at the fill value, as normalised MNIST
    images[:, :, 10:18, 10:18] = 1.0
    aug = RandomAffine(degrees=15, translate=0.1, scale=0.1, fill=-0.5)
    a = aug(images, torch.Generator().manual_seed(0))
    b = aug(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # each image gets its own transform
    assert_close(a[:, :, 0, 0], torch.full((8, 1), -0.5))  # corners: background, from inside or outside
    # ink is moved, not created: the mass of the square is roughly kept (scale changes it <= ~21%)
    ink = (a + 0.5).clamp(min=0).sum(dim=(1, 2, 3)) / 1.5
    assert ((ink / 64) - 1).abs().max() < 0.3


def test_exact_rotation_and_shift():
    images = torch.randn(2, 1, 28, 28)
    zeros, ones = torch.zeros(2), torch.ones(2)
    rotated = affine(images, angle=torch.full((2,), 90.0), shear=zeros, zoom=ones, shift=torch.zeros(2, 2))
    assert_close(rotated, torch.rot90(images, k=1, dims=(-2, -1)), atol=1e-4, rtol=0)  # counter-clockwise
    shifted = affine(images, angle=zeros, shear=zeros, zoom=ones, shift=torch.tensor([[2 / 28, 0.0]] * 2), fill=-1.0)
    assert_close(shifted[..., 2:], images[..., :-2], atol=1e-4, rtol=0)  # moved 2 pixels right
    assert_close(shifted[..., :2], torch.full_like(shifted[..., :2], -1.0), atol=1e-4, rtol=0)  # filled


@pytest.mark.parametrize("model, params", [(MLP(), 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10), (ExampleCNN(), 1_199_882)])
def test_baselines_shapes_and_sizes(model, params):
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == params
