import pytest
import torch

from companion.vit import ViT, ViTConfig


@pytest.mark.parametrize(
    "config",
    [
        ViTConfig(),
        ViTConfig(image_size=(30, 20), patch_size=5, in_channels=3, num_classes=7, dim=18, depth=2, heads=3, mlp_dim=11),
        ViTConfig(image_size=9, patch_size=3, dim=8, depth=1, heads=1, mlp_dim=8, pool="mean", dropout=0.1),
    ],
    ids=["default", "odd-rectangular-rgb", "tiny-mean-pool"],
)
def test_shapes_and_every_parameter_gets_a_gradient(config):
    model = ViT(config)
    h, w = (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size
    images = torch.randn(3, config.in_channels, h, w)
    logits = model(images)
    assert logits.shape == (3, config.num_classes)
    torch.nn.functional.cross_entropy(logits, torch.arange(3) % config.num_classes).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"


def test_mean_pool_has_no_cls_token():
    model = ViT(ViTConfig(pool="mean"))
    assert model.cls_token is None and model.pos_embedding.shape == (1, 16, 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image_size=28, patch_size=5), "not divisible by patch_size=5"),
        (dict(dim=30, heads=4), r"dim \(30\) must be divisible by heads \(4\)"),
        (dict(pool="max"), "pool must be 'cls' or 'mean'"),
        (dict(depth=0), "depth must be a positive int"),
        (dict(dropout=1.5), r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_configs_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**kwargs)


def test_wrong_inputs_raise_clear_errors():
    model = ViT()
    with pytest.raises(ValueError, match="expected 1 input channel"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="channels-last"):
        model(torch.randn(2, 28, 28, 1))
    with pytest.raises(ValueError, match="rank 4"):
        model(torch.randn(28, 28))
    with pytest.raises(ValueError, match="expected 28x28 images"):
        model(torch.randn(2, 1, 32, 32))


def test_conv_stem_keeps_the_token_grid_and_learns_end_to_end():
    config = ViTConfig(stem="conv", patch_size=4, dim=16, depth=1, heads=2, mlp_dim=16)
    model = ViT(config)
    assert model.patch_embed.num_patches == 49 and model.pos_embedding.shape == (1, 50, 16)
    logits = model(torch.randn(2, 1, 28, 28))
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert ViT(ViTConfig(stem="conv", patch_size=8, image_size=32, dim=16, heads=2)).patch_embed.num_patches == 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(stem="conv", patch_size=7), "power-of-two patch_size"),
        (dict(stem="hybrid"), "stem must be 'patch' or 'conv'"),
    ],
)
def test_bad_stems_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**kwargs)
