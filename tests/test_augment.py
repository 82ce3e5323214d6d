"""Crop-and-flip augmentation against a per-image reference written with plain slicing."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from grawa_sim.data.augment import CropFlip, crop_flip


def _reference(image: torch.Tensor, dy: int, dx: int, flip: bool, padding: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    out = F.pad(image, (padding,) * 4)[:, dy : dy + h, dx : dx + w]
    return out.flip(-1) if flip else out


def test_crop_flip_matches_per_image_reference():
    x = torch.randn(3, 5, 2, 6, 7)  # [M, B, C, H, W]
    aug = CropFlip(seed=0, padding=2)
    offsets, flips = aug.draw((3, 5))
    out = aug.apply(x, offsets, flips)
    assert out.shape == x.shape
    for m in range(3):
        for b in range(5):
            dy, dx = offsets[m, b].tolist()
            assert torch.equal(out[m, b], _reference(x[m, b], dy, dx, bool(flips[m, b]), 2))


def test_centre_offset_is_identity_and_corner_shifts_in_zeros():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4) + 1
    centre = torch.tensor([[1, 1]])
    assert torch.equal(crop_flip(x, centre, torch.tensor([False]), padding=1), x)
    assert torch.equal(crop_flip(x, centre, torch.tensor([True]), padding=1), x.flip(-1))
    corner = crop_flip(x, torch.tensor([[0, 0]]), torch.tensor([False]), padding=1)
    assert (corner[..., 0, :] == 0).all() and (corner[..., :, 0] == 0).all()
    assert torch.equal(corner[..., 1:, 1:], x[..., :-1, :-1])


def test_draws_are_seeded_and_cover_the_range():
    a, b, c = CropFlip(7), CropFlip(7), CropFlip(8)
    oa, fa = a.draw((8, 64))
    ob, fb = b.draw((8, 64))
    oc, _ = c.draw((8, 64))
    assert torch.equal(oa, ob) and torch.equal(fa, fb)
    assert not torch.equal(oa, oc)
    assert oa.min() == 0 and oa.max() == 8  # padding 4: offsets 0..8
    assert 0.3 < fa.float().mean() < 0.7
