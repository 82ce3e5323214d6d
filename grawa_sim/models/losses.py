"""Per-sample losses: what every engine, evaluator and flatness measure differentiates."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def per_sample_loss(classes: int, kind: str | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss of every sample: cross-entropy for classes, 0.5 * squared error for regression, or
    the model's output itself when ``kind == "value"`` (the model computes its loss)."""
    if kind == "value":
        return lambda out, y: out
    if classes:
        def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)

        return cross_entropy
    return lambda out, y: 0.5 * (out.squeeze(-1) - y) ** 2
