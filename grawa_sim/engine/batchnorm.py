"""Batch-norm recalibration: re-estimate the running statistics of a merged model on training data.

An averaged model (the uniform average, EASGD's x~) never produced activations of its
own, so neither any worker's statistics nor their mean describe it. As the reference code
does, the evaluated model's statistics are re-estimated before testing: reset, then
``batches`` forward passes in train mode over fixed training batches with a cumulative
(equal-weight) average (``momentum=None``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from grawa_sim.core.collectives import Params


class Recalibrator:
    """``recalibrator(params) -> buffers``: fresh running statistics of ``params`` on fixed training batches."""

    def __init__(self, model: nn.Module, x_train: torch.Tensor, batches: int, batch_size: int = 256, seed: int = 0):
        self.model = copy.deepcopy(model).train()
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative moving average: every batch counts the same
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
        self.inputs = [x_train[idx.to(x_train.device)] for idx in order[: batches * batch_size].split(batch_size)]

    @torch.no_grad()
    def __call__(self, params: Params) -> Params:
        buffers = {}
        for name, b in self.model.named_buffers():
            kind = name.rsplit(".", 1)[-1]
            buffers[name] = torch.ones_like(b) if kind == "running_var" else torch.zeros_like(b)
        for x in self.inputs:
            functional_call(self.model, (params, buffers), (x,))  # updates ``buffers`` in place
        return buffers
