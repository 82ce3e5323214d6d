"""The model registry: ``build(name, ...)`` for every model name, and model inspection.

Vector inputs are [batch, features]; the 1-D CNNs read them as one-channel signals.
Logistic regression and the MLP flatten any input (images too). The deep nets
(ResNet-20, VGG, the 1-D ResNet) live in grawa_sim/models/deep.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grawa_sim.config import IMAGE_MODELS, MODELS, SIGNAL_MODELS, ConfigError
from grawa_sim.models.small import MLP, CNN1d, LogisticRegression


def build(name: str, input_shape: int | tuple[int, ...], outputs: int, width: int | None = None) -> nn.Module:
    """A freshly initialised model (uses torch's global RNG; seed it first).

    ``input_shape``: one sample's shape, (features,) or (C, H, W) (an int means (features,)).
    ``width``: hidden units (mlp), channels (cnn) or first-stage channels (resnets, vgg); None: standard.
    """
    from grawa_sim.data.two_basins import Point
    from grawa_sim.models import deep as deep_models

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
        from grawa_sim.data.two_basins import basins, landscape

        where = basins(landscape(dim=features))
        return Point(landscape(dim=features), where.ridge.float() + 0.5 * torch.randn(features))
    raise ConfigError(f"model: must be one of {', '.join(MODELS)} (got {name!r})")


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def has_conv(model: nn.Module) -> bool:
    """Any convolution (1-D, 2-D or 3-D)."""
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
