"""The small MNIST-1D models: logistic regression, the MLP and the 1-D CNNs; all vmap-safe.

Vector inputs are [batch, features]; the 1-D CNNs read them as one-channel signals.
Logistic regression and the MLP flatten any input (images too).
"""

from __future__ import annotations

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """One affine map: logistic regression for classes, linear regression for one output."""

    def __init__(self, features: int, outputs: int):
        super().__init__()
        self.linear = nn.Linear(features, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """features -> hidden -> hidden -> outputs with ReLU (MNIST-1D's reference MLP, hidden = 100)."""

    def __init__(self, features: int, outputs: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN1d(nn.Module):
    """MNIST-1D's reference ConvBase: three stride-2 conv layers of ``channels`` filters, then linear.

    ``batch_norm=True`` inserts BatchNorm1d after each conv (stacked buffers under vmap).
    """

    def __init__(self, features: int, outputs: int, channels: int = 25, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        length, in_ch = features, 1
        for kernel in (5, 3, 3):
            layers.append(nn.Conv1d(in_ch, channels, kernel, stride=2, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(channels))
            layers.append(nn.ReLU())
            length = (length + 2 - kernel) // 2 + 1
            in_ch = channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels * length, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(-2))
        return self.head(h.flatten(-2))
