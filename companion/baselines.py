"""The models a ViT on MNIST is compared with: an MLP and the CNN of PyTorch's MNIST example.

Both map images ``[batch, 1, 28, 28]`` to logits ``[batch, 10]`` (the PyTorch example ends in
``log_softmax`` + ``nll_loss``; returning logits for ``cross_entropy`` is the same thing).
"""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Flatten the image and apply ``Linear -> ReLU -> Dropout`` layers: no notion of 2-D space at all."""

    def __init__(self, in_features: int = 28 * 28, hidden: tuple[int, ...] = (512, 256), num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]  # [batch, 784]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """images ``[batch, 1, 28, 28]`` -> logits ``[batch, num_classes]``."""
        return self.net(images)


class ExampleCNN(nn.Module):
    """The network of PyTorch's ``examples/mnist/main.py`` (about 1.2 M parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1), nn.ReLU(),   # [batch, 32, 26, 26]
            nn.Conv2d(32, 64, 3, 1), nn.ReLU(),  # [batch, 64, 24, 24]
            nn.MaxPool2d(2),                     # [batch, 64, 12, 12]
            nn.Dropout(0.25),
            nn.Flatten(),                        # [batch, 9216]
        )
        self.classifier = nn.Sequential(nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, num_classes))

    def forward(self, images: Tensor) -> Tensor:
        """images ``[batch, 1, 28, 28]`` -> logits ``[batch, num_classes]``."""
        return self.classifier(self.features(images))
