"""Stacked forward passes written out by hand: what ``torch.vmap`` computes, without its dispatch cost.

`batched(module)` returns ``forward(params, buffers, x)`` for M stacked models (every tensor with a
leading worker dim: params [M, ...], x [M, B, ...]), or None when the module is not one it knows. It
issues the ATen operations that vmap's batching rules issue for the same model, on tensors of the same
shapes and memory layouts, so outputs, gradients and batch-norm running statistics are bitwise those of
``torch.vmap(stateless(module))`` (tested against it for every model it knows). What it saves is
functorch's per-operation wrapping and unwrapping (`python -m grawa_sim bench --plain` times whole runs
both ways, side by side).

The layers, for x [M, B, ...] and worker i's weights W_i, b_i:
- linear:  y_i = x_i W_i^T + b_i, one batched matrix product (``bmm``) and a broadcast add;
- conv1d:  the M convolutions as one grouped convolution of M * groups groups over channels
  [B, M * C, L], then y_i += b_i;
- batch norm (training mode): one ``native_batch_norm`` over channels [B, M * C, ...] with the stacked
  running statistics viewed as [M * C] (updated in place), then y_i = W_i * x̂_i + b_i;
- ReLU elementwise; a residual block's shortcut (subsampling and zero channels, or a 1x1 convolution
  and batch norm) on the stacked tensor as it is.
Known modules: the registry's logistic regression, MLP, 1-D CNNs (with or without batch norm) and 1-D
ResNet, and ``nn.Sequential`` of the layers above, each of exactly these classes (no subclass, parametrization or
hook); anything else (the deep nets, other activations, a batch norm in eval mode or without running
statistics) gives None and the caller keeps ``torch.vmap``. The module's structure and training mode
are read once, when `batched` is called (the engine's 'meta' copy never changes).

Running statistics held in strided buffers (views with gaps) are updated through a contiguous copy;
``torch.vmap`` leaves such buffers unchanged (torch 2.13). The engine's buffers are contiguous, so
the two agree wherever the engine uses them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from grawa_sim.models.deep import BasicBlock, ResNet1d, pad_shortcut
from grawa_sim.models.small import MLP, CNN1d, LogisticRegression

Tensors = dict[str, torch.Tensor]
Layer = Callable[[Tensors, Tensors, torch.Tensor], torch.Tensor]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """y_i = x_i W_i^T + b_i for x [M, B, in], W [M, out, in], b [M, out]."""
    y = torch.bmm(x, weight.transpose(1, 2))
    return y if bias is None else bias.unsqueeze(1) + y


def _channels_of_all(x: torch.Tensor) -> torch.Tensor:
    """[M, B, C, ...] -> [B, M * C, ...]: the workers' channels side by side (vmap's layout)."""
    return x.movedim(0, 1).reshape(x.shape[1], -1, *x.shape[3:])


def _per_worker(y: torch.Tensor, workers: int) -> torch.Tensor:
    """[B, M * C, ...] -> [M, B, C, ...]."""
    return y.view(y.shape[0], workers, -1, *y.shape[2:]).movedim(1, 0)


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv1d) -> torch.Tensor:
    """Worker i's ``conv`` with W_i, b_i on x_i, for x [M, B, C, L], W [M, O, C / g, k], b [M, O]."""
    m = x.shape[0]
    y = torch.conv1d(_channels_of_all(x), weight.reshape(-1, *weight.shape[2:]), None, conv.stride, conv.padding,
                     conv.dilation, conv.groups * m)
    y = _per_worker(y, m)
    return y if bias is None else y + bias.unsqueeze(-1).view(m, 1, -1, 1)


def batch_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, mean: torch.Tensor,
               var: torch.Tensor, count: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Training-mode batch norm of every worker on its own batch, x [M, B, C, ...]; the stacked running
    ``mean``, ``var`` [M, C] and ``count`` [M] are updated in place."""
    m, channels = x.shape[0], x.shape[2]
    if count is not None:
        count.add_(1)
    flat = _channels_of_all(x)
    ones = torch.ones(m * channels, dtype=x.dtype, device=x.device)
    zeros = torch.zeros(m * channels, dtype=x.dtype, device=x.device)
    running = [t.contiguous() for t in (mean, var)]  # [M * C] views need contiguous memory
    y, _, _ = torch.native_batch_norm(flat, ones, zeros, running[0].view(-1), running[1].view(-1), True,
                                      bn.momentum, bn.eps)
    for stacked, updated in zip((mean, var), running):
        if updated is not stacked:  # a strided buffer: its update went into a copy
            stacked.copy_(updated)
    y = y.transpose(0, 1).view(m, channels, *y.shape[:1], *y.shape[2:])
    shape = (m, channels) + (1,) * (y.ndim - 2)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    return y.transpose(1, 2)


def _hooked(module: nn.Module) -> bool:
    """Any forward or backward hook on the module, or a global module hook (the written-out pass runs none)."""
    from torch.nn.modules import module as base

    own = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
           getattr(module, "_backward_pre_hooks", {}))
    shared = (base._global_forward_hooks, base._global_forward_pre_hooks, base._global_backward_hooks,
              getattr(base, "_global_backward_pre_hooks", {}))
    return any(len(h) for h in own + shared)


def _layer(module: nn.Module, prefix: str) -> Layer | None:
    """The stacked forward of one known layer (its tensors named ``prefix`` + name), or None."""
    weight, bias, mean, var, count = (prefix + n for n in ("weight", "bias", "running_mean", "running_var",
                                                           "num_batches_tracked"))
    kind = type(module)
    if _hooked(module):
        return None
    if kind is nn.Linear:
        return lambda p, b, x: linear(x, p[weight], p.get(bias))
    if kind is nn.Conv1d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return lambda p, b, x: conv1d(x, p[weight], p.get(bias), module)
    if kind is nn.ReLU:
        return lambda p, b, x: torch.relu(x)
    if kind is nn.BatchNorm1d and module.training and module.track_running_stats and module.momentum is not None:
        return lambda p, b, x: batch_norm(x, p.get(weight), p.get(bias), b[mean], b[var], b.get(count), module)
    if kind is BasicBlock and module.dims == 1:
        return _block(module, prefix)
    if kind is nn.Sequential:
        layers = [_layer(sub, f"{prefix}{name}.") for name, sub in module.named_children()]
        if any(layer is None for layer in layers):
            return None

        def chain(p: Tensors, b: Tensors, x: torch.Tensor) -> torch.Tensor:
            for layer in layers:
                x = layer(p, b, x)
            return x
        return chain
    return None


def _block(block: BasicBlock, prefix: str) -> Layer | None:
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) of a 1-D residual block, or None."""
    conv1, bn1, conv2, bn2 = (_layer(getattr(block, n), f"{prefix}{n}.") for n in ("conv1", "bn1", "conv2", "bn2"))
    project = None if block.project is None else _layer(block.project, f"{prefix}project.")
    if None in (conv1, bn1, conv2, bn2) or (block.project is not None and project is None):
        return None

    def forward(p: Tensors, b: Tensors, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(bn1(p, b, conv1(p, b, x)))
        if block.identity:
            shortcut = x
        elif project is None:
            shortcut = pad_shortcut(x, block.out_channels, block.stride, dims=1)
        else:
            shortcut = project(p, b, x)
        return torch.relu(bn2(p, b, conv2(p, b, h)) + shortcut)
    return forward


def batched(module: nn.Module) -> Layer | None:
    """``forward(params, buffers, x)`` of M stacked copies of ``module`` (see the module docstring), or
    None when ``module`` is not one this file knows."""
    kind = type(module)
    if _hooked(module):
        return None
    if kind is LogisticRegression:
        head = _layer(module.linear, "linear.")
        return None if head is None else (lambda p, b, x: head(p, b, x.flatten(2)))
    if kind is MLP:
        net = _layer(module.net, "net.")
        return None if net is None else (lambda p, b, x: net(p, b, x.flatten(2)))
    if kind is CNN1d:
        features, head = _layer(module.features, "features."), _layer(module.head, "head.")
        if features is None or head is None:
            return None
        return lambda p, b, x: head(p, b, features(p, b, x.unsqueeze(-2)).flatten(-2))
    if kind is ResNet1d:
        stem = [_layer(getattr(module, n), f"{n}.") for n in ("conv", "bn", "blocks", "head")]
        if None in stem:
            return None
        conv, bn, blocks, head = stem
        return lambda p, b, x: head(p, b, blocks(p, b, torch.relu(bn(p, b, conv(p, b, x.unsqueeze(-2))))).mean(-1))
    return None
