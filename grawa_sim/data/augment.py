"""Training augmentation for images, per sample, vectorised over [workers, batch] on the device.

Random crop with zero padding followed by a random horizontal flip (the standard CIFAR
recipe): x'[c, h, w] = pad(x)[c, h + dy, w' + dx], w' = W - 1 - w when flipped, with
dy, dx uniform in {0, ..., 2 * padding}. The padding is applied to normalised images, so
padded pixels hold the channel mean. Offsets and flips come from a seeded CPU generator,
drawn for all M workers at once, so every rank and both backends see the same images.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


class CropFlip:
    """``draw(shape)`` -> (offsets [*shape, 2], flips [*shape]); ``apply(x, offsets, flips)``."""

    def __init__(self, seed: int, padding: int = 4):
        self.padding = padding
        self._generator = torch.Generator().manual_seed(seed * 1_000_003 + 3)

    def draw(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.randint(2 * self.padding + 1, (*shape, 2), generator=self._generator)
        flips = torch.rand(shape, generator=self._generator) < 0.5
        return offsets, flips

    def apply(self, x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Images x [..., C, H, W] with one offset pair and flip per leading index."""
        return crop_flip(x, offsets.to(x.device), flips.to(x.device), self.padding)


def crop_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each image of x [..., C, H, W] at ``offsets`` [..., 2] from its zero-padded copy, then flip."""
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    images = x.reshape(-1, c, h, w)
    offsets, flips = offsets.reshape(-1, 2), flips.reshape(-1)
    padded = F.pad(images, (padding,) * 4)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [N, W]
    cols = torch.where(flips[:, None], cols.flip(-1), cols)
    n = torch.arange(len(images), device=x.device)[:, None, None]
    out = padded[n, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: [N, H, W, C]
    return out.permute(0, 3, 1, 2).reshape(*lead, c, h, w)
