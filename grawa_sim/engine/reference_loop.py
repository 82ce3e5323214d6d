"""The loop backend: M ordinary nn.Modules, M torch.optim.SGD, per-worker Python math for every round.

It shares nothing with the stacked engine but the data stream: each algorithm's round is its
`Reference` (plain Python over lists of per-worker parameter dicts, in the algorithm's module),
so the tests can use it as an independent reference. It is written for clarity, not speed.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from grawa_sim import algorithms
from grawa_sim.algorithms.base import Hyper, Params, RoundInfo


class LoopEngine:
    def __init__(self, model: nn.Module, algorithm: str, workers: int, hyper: Hyper, loss,
                 lr: float, momentum: float, weight_decay: float, sam_rho: float | None = None):
        self.kind = algorithms.get(algorithm)
        self.name, self.hyper, self.loss = algorithm, self.kind.own_hyper(hyper), loss
        self.models = [copy.deepcopy(model) for _ in range(workers)]
        self.optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum,
                                           nesterov=momentum > 0, weight_decay=weight_decay)
                           for m in self.models]
        self.sam_rho = sam_rho
        self.rule = self.kind.reference(self.hyper, self._snapshot(self.models[0]), workers)

    @staticmethod
    def _snapshot(model: nn.Module) -> Params:
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def _backward(self, model: nn.Module, x, y, reduction: str = "mean") -> float:
        model.zero_grad()
        per_sample = self.loss(model(x), y)
        loss = per_sample.mean() if reduction == "mean" else per_sample.sum()
        loss.backward()
        return loss.item()

    def local_step(self, x: torch.Tensor, y: torch.Tensor, workers: torch.Tensor | None = None) -> torch.Tensor:
        """Workers ``workers`` (default all) each take one step on their row of x; the others wait."""
        chosen = list(range(len(self.models))) if workers is None else [int(i) for i in workers]
        losses = []
        for row, i in enumerate(chosen):
            losses.append(self._backward(self.models[i], x[row], y[row]))
            if self.sam_rho is not None:
                self._sam_gradient(self.models[i], x[row], y[row])
        grads = self.rule.reduce_grads([[p.grad for p in self.models[i].parameters()] for i in chosen])
        for i, worker_grads in zip(chosen, grads):
            for p, g in zip(self.models[i].parameters(), worker_grads):
                p.grad = g
        for i in chosen:
            self.optimizers[i].step()
        if self.hyper.prox > 0:
            w = self.hyper.prox / self.hyper.tau
            with torch.no_grad():
                for i in chosen:
                    for n, p in self.models[i].named_parameters():
                        p.copy_((1 - w) * p + w * self.rule.center[n])
        for i, loss in zip(chosen, losses):
            self.rule.observe(i, loss)
        return torch.tensor(losses, dtype=torch.float64)

    def set_lr(self, lr: float | torch.Tensor) -> None:
        """One lr for every worker, or a tensor [M] of one per worker."""
        for i, opt in enumerate(self.optimizers):
            for group in opt.param_groups:
                group["lr"] = float(lr[i]) if isinstance(lr, torch.Tensor) else lr

    def _sam_gradient(self, model: nn.Module, x, y) -> None:
        """Replace .grad by the gradient at w + rho g/||g||; parameters and BN statistics restored."""
        params = list(model.parameters())
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        norm = math.sqrt(sum(float((p.grad**2).sum()) for p in params))
        eps = [self.sam_rho * p.grad / (norm + 1e-12) for p in params]
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.add_(e)
        self._backward(model, x, y)
        with torch.no_grad():
            for p, e in zip(params, eps):
                p.sub_(e)
            for n, b in model.named_buffers():
                b.copy_(buffers[n])

    def _probe_norms(self, probe: tuple[torch.Tensor, torch.Tensor]) -> list[list[float]]:
        """||grad_l f(x_i)|| of the summed probe loss, per worker i and layer l (running statistics kept)."""
        norms = []
        for i, model in enumerate(self.models):
            saved = {n: t.clone() for n, t in model.named_buffers()}
            self._backward(model, probe[0][i], probe[1][i], reduction="sum")
            with torch.no_grad():
                for n, t in model.named_buffers():
                    t.copy_(saved[n])
            norms.append([float(p.grad.norm()) for p in model.parameters()])
        return norms

    def communicate(self, probe: tuple[torch.Tensor, torch.Tensor] | None) -> RoundInfo:
        norms = self._probe_norms(probe) if self.kind.needs_probe else None
        with torch.no_grad():
            workers = [self._snapshot(m) for m in self.models]
        new, info = self.rule.round(workers, norms)
        with torch.no_grad():
            for model, values in zip(self.models, new):
                for n, p in model.named_parameters():
                    p.copy_(values[n])
        return info

    def stacked_params(self) -> Params:
        return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in self.models])
                for n, _ in self.models[0].named_parameters()}

    def stacked_buffers(self) -> Params:
        return {n: torch.stack([dict(m.named_buffers())[n] for m in self.models])
                for n, _ in self.models[0].named_buffers()}

    def evaluated(self) -> Params:
        return self.rule.evaluated([self._snapshot(m) for m in self.models])

    def center(self) -> Params:
        if self.kind.communicates_every_step:
            return self._snapshot(self.models[0])
        return {n: t.clone() for n, t in self.rule.center.items()}
