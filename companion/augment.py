"""Batched data augmentation for small images, applied on whatever device the batch is on.

One ``affine_grid``/``grid_sample`` call warps the whole batch ``[batch, C, H, W]``, so
augmentation costs about as much as one small convolution instead of a Python loop over
PIL images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class RandomAffine:
    """Random rotation, scaling, shear and translation of each image in a batch.

    Args:
        degrees: rotation drawn from ``[-degrees, degrees]``.
        translate: shift drawn from ``[-translate, translate]`` as a fraction of the image size.
        scale: zoom factor drawn from ``[1 - scale, 1 + scale]``.
        shear: shear angle drawn from ``[-shear, shear]`` degrees.
        fill: value of pixels that come from outside the image (use the normalised background).
    """

    degrees: float = 10.0
    translate: float = 0.1
    scale: float = 0.1
    shear: float = 0.0
    fill: float = 0.0

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """images ``[batch, C, H, W]`` -> warped images, same shape (random numbers drawn on the CPU)."""
        b = images.shape[0]

        def uniform(bound: float) -> Tensor:  # [batch] in [-bound, bound]
            return (torch.rand(b, generator=generator) * 2 - 1) * bound

        return affine(
            images,
            angle=uniform(self.degrees),
            shear=uniform(self.shear),
            zoom=1 + uniform(self.scale),
            shift=torch.stack([uniform(self.translate), uniform(self.translate)], dim=-1),
            fill=self.fill,
        )


def affine(images: Tensor, angle: Tensor, shear: Tensor, zoom: Tensor, shift: Tensor, fill: float = 0.0) -> Tensor:
    """Warp each image: rotate by ``angle`` degrees (counter-clockwise as displayed), shear by
    ``shear`` degrees, zoom by ``zoom``, move by ``shift`` (fractions of width, height).

    images ``[batch, C, H, W]``; angle, shear, zoom ``[batch]``; shift ``[batch, 2]`` -> ``[batch, C, H, W]``.
    """
    a, s = torch.deg2rad(angle), torch.deg2rad(shear)
    cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(s)
    # affine_grid maps OUTPUT coordinates (x right, y down, in [-1, 1]) to INPUT coordinates,
    # so this is the inverse warp (y points down, so R(angle) here turns the picture counter-clockwise).
    theta = torch.stack(
        [
            torch.stack([cos, tan * cos - sin, -2 * shift[:, 0]], dim=-1),
            torch.stack([sin, tan * sin + cos, -2 * shift[:, 1]], dim=-1),
        ],
        dim=1,
    )  # [batch, 2, 3]
    theta[:, :, :2] /= zoom[:, None, None]
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # [batch, H, W, 2]
    # grid_sample pads with zeros: sample (images - fill) and add fill back
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
