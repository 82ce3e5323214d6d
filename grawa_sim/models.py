"""Small models and the model registry (``build``); all vmap-safe.

Vector inputs are [batch, features]; the 1-D CNNs read them as one-channel signals.
Logistic regression and the MLP flatten any input (images too). The deep nets
(ResNet-20, VGG, the 1-D ResNet) live in grawa_sim/deep_models.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grawa_sim.config import IMAGE_MODELS, MODELS, SIGNAL_MODELS, ConfigError


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


def build(name: str, input_shape: int | tuple[int, ...], outputs: int, width: int | None = None) -> nn.Module:
    """A freshly initialised model (uses torch's global RNG; seed it first).

    ``input_shape``: one sample's shape, (features,) or (C, H, W) (an int means (features,)).
    ``width``: hidden units (mlp), channels (cnn) or first-stage channels (resnets, vgg); None: standard.
    """
    from grawa_sim import deep_models
    from grawa_sim.two_basins import Point

    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    features = math.prod(shape)
    if name in SIGNAL_MODELS and len(shape) != 1:
        raise ConfigError(f"model: {name} takes vector inputs, not shape {shape} (got {name!r})")
    if name in IMAGE_MODELS and len(shape) != 3:
        raise ConfigError(f"model: {name} takes [C, H, W] images, not shape {shape} (got {name!r})")
    sized = {} if width is None else {"width": width}
    if name == "logistic":
        return LogisticRegression(features, outputs)
    if name == "mlp":
        return MLP(features, outputs, hidden=width or 100)
    if name in ("cnn", "cnn_bn"):
        return CNN1d(features, outputs, channels=width or 25, batch_norm=name == "cnn_bn")
    if name == "resnet1d":
        return deep_models.ResNet1d(features, outputs, **sized)
    if name == "resnet20":
        return deep_models.ResNet20(outputs, in_channels=shape[0], **sized)
    if name in ("vgg11", "vgg13", "vgg16", "vgg19"):
        return deep_models.VGG(int(name[3:]), outputs, in_channels=shape[0], **sized)
    if name == "point":
        from grawa_sim.two_basins import basins, landscape

        where = basins(landscape(dim=features))
        return Point(landscape(dim=features), where.ridge.float() + 0.5 * torch.randn(features))
    raise ConfigError(f"model: must be one of {', '.join(MODELS)} (got {name!r})")


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
