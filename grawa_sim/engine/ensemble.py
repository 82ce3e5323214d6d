"""The stacked engine: M workers as stacked parameters, buffers and momentum on one device.

Forward passes run all workers at once with ``torch.vmap`` over
the model called with the stacked tensors in place of its own (`grawa_sim.models.stateless`: what
``torch.func.functional_call`` computes, with the slots looked up once) on a 'meta' copy of the model; for
the models `grawa_sim.models.batched` knows, the same operations written out by hand (bitwise vmap's
numbers without its dispatch cost). Or, for
2-D convolutions on CPU where vmap's grouped convolutions are slow, one call per
worker slice: ``execution="unrolled"``; ``"auto"`` picks per model and device,
`grawa_sim.models.execution.choose_execution`). Gradients come from one backward of
the summed per-worker losses: worker i's loss depends only on slice i of the
stacked leaves, so the slices of the gradient are the per-worker gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from grawa_sim.algorithms import Algorithm, Params, RoundInfo
from grawa_sim.algorithms.base import squeeze_worker
from grawa_sim.core.collectives import StackedAxis
from grawa_sim.models.batched import batched
from grawa_sim.models.execution import choose_execution
from grawa_sim.models.stateless import stateless


class StackedModel:
    """A model template plus stacked per-worker forward passes."""

    def __init__(self, model: nn.Module, execution: str, by_hand: bool = True):
        """``by_hand=False`` always calls ``torch.vmap`` (the reference `grawa_sim.models.batched` is
        tested against); otherwise a known model's vmapped pass runs written out, with the same numbers."""
        self.meta = copy.deepcopy(model).to("meta")
        self.execution = choose_execution(model, execution, next(model.parameters()).device)
        self._single = stateless(self.meta)
        self._all_workers = (by_hand and batched(self.meta)) or torch.vmap(self._single, randomness="different")

    def forward(self, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs [M, B, ...] of every worker on its own inputs x [M, B, ...] (train mode).

        Batch-norm running statistics in ``buffers`` are updated in place.
        """
        if self.execution == "vmap":
            return self._all_workers(params, buffers, x)
        outs = []
        for i in range(x.shape[0]):
            outs.append(self._single({n: p[i] for n, p in params.items()},
                                     {n: b[i] for n, b in buffers.items()}, x[i]))
        return torch.stack(outs)


Rate = float | torch.Tensor  # one value for every worker, or one per worker ([M]: runs sharing an ensemble)


def per_row(value: Rate, like: torch.Tensor) -> Rate:
    """A per-worker value [M] as a [M, 1, ...] view that broadcasts against ``like``; a float as it is."""
    return value.view(-1, *[1] * (like.ndim - 1)) if isinstance(value, torch.Tensor) else value


def per_worker(values: Sequence[float], workers: int, like: torch.Tensor) -> Rate:
    """Each run's value repeated over its ``workers`` rows ([R*M], ``like``'s dtype and device), or the
    plain float when every run has the same value."""
    if len(set(values)) == 1:
        return values[0]
    return torch.tensor(list(values), dtype=like.dtype, device=like.device).repeat_interleave(workers)


def is_on(value: Rate) -> bool:
    """Any worker's value is non-zero."""
    return bool((value != 0).any()) if isinstance(value, torch.Tensor) else value != 0


def _add_scaled(target: torch.Tensor, t: torch.Tensor, scale: Rate, value: float = 1.0) -> None:
    """target += value * scale * t in place (``scale``: a float, or a per-row view)."""
    if isinstance(scale, torch.Tensor):
        target.addcmul_(t, scale, value=value)
    else:
        target.add_(t, alpha=value * scale)


def _dense_order(t: torch.Tensor) -> list[int] | None:
    """The permutation of ``t``'s dimensions that makes it contiguous; None when no permutation does."""
    order = sorted(range(t.ndim), key=lambda d: (-t.stride(d), -t.shape[d]))
    return order if t.permute(order).is_contiguous() else None


def _fused_views(params: list[torch.Tensor], grads: list[torch.Tensor], buffers: list[torch.Tensor],
                 cache: dict | None = None) -> tuple[list[torch.Tensor], ...] | None:
    """(params, grads, buffers) as contiguous views in one shared layout per tensor, for torch's fused SGD
    kernel (which walks memory linearly); each gradient must have its parameter's layout (`own_layout`).
    None where the kernel does not serve (no kernel, not a CPU/CUDA float, or a layout that cannot match).

    This runs every step. Contiguous tensors pass as they are; for the others (a weight kept in its
    gradient's transposed layout) the permuted views of the parameter and its momentum are kept in
    ``cache`` while those tensors stay the same objects, so a step permutes only the new gradients."""
    like = params[0]
    if not (hasattr(torch, "_fused_sgd_") and like.device.type in ("cpu", "cuda") and like.is_floating_point()):
        return None
    cache = {} if cache is None else cache
    views: tuple[list[torch.Tensor], ...] = ([], [], [])
    for i, (p, g, v) in enumerate(zip(params, grads, buffers)):
        if p.is_contiguous() and v.is_contiguous():
            trio = (p, g, v)
        else:
            kept = cache.get(i)
            if kept is None or kept[0] is not p or kept[1] is not v:
                order = _dense_order(p)
                if order is None or v.stride() != p.stride():
                    return None
                kept = cache[i] = (p, v, order, p.permute(order), v.permute(order))
            trio = (kept[3], g.permute(kept[2]), kept[4])
        for out, t in zip(views, trio):
            out.append(t)
    return views


def own_layout(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each gradient in its parameter's layout: a copy where the strides differ, which also gives a gradient
    autograd returned with overlapping memory (an expanded one, of a parameter used only through ``.sum()``)
    storage of its own, so the in-place update can write into it."""
    return [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for p, g in zip(params, grads)]


def match_layout(tensors: Params, like: Sequence[torch.Tensor]) -> Params:
    """Each tensor in the memory layout (strides) of its partner in ``like``; a copy only where they differ."""
    return {n: t if t.stride() == o.stride() else torch.empty_like(o).copy_(t)
            for (n, t), o in zip(tensors.items(), like)}


class SGDState:
    """Stacked SGD state: momentum buffers [M, ...] (Nesterov when momentum > 0), weight decay.

    ``lr``, ``momentum`` and ``weight_decay`` are floats, or tensors [M] of one value per worker
    (several runs in one ensemble: `grawa_sim.engine.run_many`). Only ``lr`` changes during a run.
    """

    def __init__(self, params: Params, lr: Rate, momentum: Rate, weight_decay: Rate):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.decay, self.nesterov = is_on(weight_decay), is_on(momentum)
        self.rows = isinstance(momentum, torch.Tensor) or isinstance(weight_decay, torch.Tensor)
        self.buffers = self.fresh_buffers(params)
        self._views: dict = {}  # the fused update's permuted views of parameters and momentum (`_fused_views`)

    def fresh_buffers(self, params: Params) -> list[torch.Tensor]:
        return [torch.zeros_like(p) for p in params.values()] if self.nesterov else []

    def apply(self, params: list[torch.Tensor], grads: list[torch.Tensor],
              buffers: list[torch.Tensor] | None = None, workers: torch.Tensor | None = None) -> None:
        """g += wd x;  v <- mu v + g;  d = g + mu v (Nesterov) or g;  x <- x - lr d (in place).

        ``buffers``: the momentum of the subset ``workers`` (indices; default: all of them), whose
        per-worker rates are taken from the same rows.
        """
        buffers = self.buffers if buffers is None else buffers
        grads = own_layout(params, grads)
        if not (self.rows or isinstance(self.lr, torch.Tensor)):
            views = _fused_views(params, grads, buffers, self._views) if self.nesterov else None
            if views is not None:
                # one pass over memory per tensor instead of five (torch.optim.SGD's fused kernel; v starts at
                # zero, so mu v + g on the first step is the kernel's v = g, and is_first_step stays False)
                torch._fused_sgd_(*views, weight_decay=float(self.weight_decay), momentum=float(self.momentum),
                                  lr=float(self.lr), dampening=0.0, nesterov=True, maximize=False,
                                  is_first_step=False)
                return
            if self.decay:
                torch._foreach_add_(grads, params, alpha=self.weight_decay)
            if self.nesterov:
                torch._foreach_mul_(buffers, self.momentum)
                torch._foreach_add_(buffers, grads)
                torch._foreach_add_(grads, buffers, alpha=self.momentum)
            torch._foreach_add_(params, grads, alpha=-self.lr)
            return
        lr, momentum, weight_decay = (v[workers] if workers is not None and isinstance(v, torch.Tensor) else v
                                      for v in (self.lr, self.momentum, self.weight_decay))
        for i, (p, g) in enumerate(zip(params, grads)):  # one value per worker: the same update, row by row
            if self.decay:
                _add_scaled(g, p, per_row(weight_decay, p))
            if self.nesterov:
                mu = per_row(momentum, p)
                buffers[i].mul_(mu).add_(g)
                _add_scaled(g, buffers[i], mu)
            _add_scaled(p, g, per_row(lr, p), value=-1.0)


class VmapEngine:
    """M workers as stacked tensors; algorithm rounds are the pure functions of grawa_sim.algorithms."""

    def __init__(self, model: nn.Module, algorithm: Algorithm, axis: StackedAxis, loss: Callable,
                 lr: Rate, momentum: Rate, weight_decay: Rate, prox: Rate, tau: int,
                 sam_rho: float | None = None, execution: str = "auto"):
        m = axis.local_workers
        self.model = StackedModel(model, execution)
        self.algorithm, self.axis, self.loss = algorithm, axis, loss
        self.params = {n: p.detach().unsqueeze(0).repeat(m, *[1] * p.ndim) for n, p in model.named_parameters()}
        self.buffers = {n: b.detach().unsqueeze(0).repeat(m, *[1] * b.ndim) for n, b in model.named_buffers()}
        self.sgd = SGDState(self.params, lr, momentum, weight_decay)
        self.tau, self.sam_rho = tau, sam_rho
        self.prox_step = prox / tau if is_on(prox) else None  # the proximal pull per local step, p / tau
        self.state = algorithm.init({n: p[:1].clone() for n, p in self.params.items()}, axis)

    def start_from(self, params: Params, buffers: Params | None = None, center: Params | None = None) -> None:
        """Begin from these stacked parameters (and buffers) instead of the model's: fresh momentum and
        the algorithm's state initialised from ``center`` (default: the parameters), one row per worker."""
        self.params = {n: p.clone() for n, p in params.items()}
        if buffers is not None:
            self.buffers = {n: b.clone() for n, b in buffers.items()}
        self.sgd.buffers = self.sgd.fresh_buffers(self.params)
        self.state = self.algorithm.init({n: x.clone() for n, x in (center or self.params).items()}, self.axis)

    def _losses_and_grads(self, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
                          shift: list[torch.Tensor] | None = None, reduction: str = "mean"):
        leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
        inputs = leaves if shift is None else {n: p + s for (n, p), s in zip(leaves.items(), shift)}
        per_sample = self.loss(self.model.forward(inputs, buffers, x), y)
        losses = per_sample.mean(dim=1) if reduction == "mean" else per_sample.sum(dim=1)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return losses.detach(), list(grads)

    def local_step(self, x: torch.Tensor, y: torch.Tensor, workers: torch.Tensor | None = None) -> torch.Tensor:
        """One SGD step of every worker (or of the local ``workers`` indices) on its minibatch x [k, B, ...].

        Returns the minibatch losses [k]. Workers not listed keep their parameters,
        buffers and momentum (the asynchronous schedule).
        """
        if workers is None:
            losses, self.params = self._step(self.params, self.buffers, None, x, y, None)
            return losses
        params = {n: p[workers] for n, p in self.params.items()}
        buffers = {n: b[workers] for n, b in self.buffers.items()}
        momentum = [v[workers] for v in self.sgd.buffers]
        losses, params = self._step(params, buffers, momentum, x, y, workers)
        for n, p in params.items():
            self.params[n][workers] = p
        for n, b in buffers.items():
            self.buffers[n][workers] = b
        for v, sub in zip(self.sgd.buffers, momentum):
            v[workers] = sub
        return losses

    def _step(self, params: Params, buffers: Params, momentum: list[torch.Tensor] | None,
              x: torch.Tensor, y: torch.Tensor, workers: torch.Tensor | None) -> tuple[torch.Tensor, Params]:
        losses, grads = self._losses_and_grads(params, buffers, x, y)
        if workers is None and any(p.stride() != g.stride() for p, g in zip(params.values(), grads)):
            # autograd returns some gradients transposed (a linear layer's weight): keeping the parameters and
            # momentum in the gradients' layout lets the SGD update run as one fused pass without copies
            params = self.params = match_layout(params, grads)
            self.sgd.buffers = list(match_layout(dict(enumerate(self.sgd.buffers)), grads).values())
        if self.sam_rho is not None:
            grads = self._sam_grads(params, buffers, x, y, grads)
        names = list(params)
        grads = list(self.algorithm.reduce_grads(dict(zip(names, grads)), self.axis).values())
        self.sgd.apply(list(params.values()), grads, momentum, workers)
        if self.prox_step is not None:  # x_i <- (1 - p/tau) x_i + (p/tau) z, in place
            center = self.algorithm.center(self.state)
            for n, p in params.items():
                p.lerp_(center[n].expand_as(p), per_row(self.prox_step, p))
        self.state = self.algorithm.observe_losses(self.state, losses, workers)
        return losses, params

    def _sam_grads(self, params: Params, buffers: Params, x, y, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """SAM: e_i = rho g_i / ||g_i||; the gradient at x_i + e_i (buffers left untouched)."""
        norm = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()
        scale = self.sam_rho / (norm + 1e-12)
        shift = [g * scale.view(-1, *[1] * (g.ndim - 1)) for g in grads]
        _, grads = self._losses_and_grads(params, _clone(buffers), x, y, shift)
        return grads

    def probe_grads(self, x: torch.Tensor, y: torch.Tensor) -> Params:
        """Gradients of the summed loss on the probe batch (train mode, running stats untouched)."""
        _, grads = self._losses_and_grads(self.params, _clone(self.buffers), x, y, reduction="sum")
        return dict(zip(self.params, grads))

    def communicate(self, probe: tuple[torch.Tensor, torch.Tensor] | None) -> RoundInfo:
        grads = self.probe_grads(*probe) if probe is not None else None
        with torch.no_grad():
            self.params, self.state, info = self.algorithm.round(self.params, self.state, self.axis, grads)
        return info

    def set_lr(self, lr: Rate) -> None:
        self.sgd.lr = lr

    def stacked_params(self) -> Params:
        return self.params

    def stacked_buffers(self) -> Params:
        return self.buffers

    def evaluated(self) -> Params:
        return squeeze_worker(self.algorithm.evaluated(self.params, self.state, self.axis))

    def center(self) -> Params:
        return squeeze_worker(self.algorithm.center(self.state))


def _clone(t: Params) -> Params:
    return {n: v.clone() for n, v in t.items()}

