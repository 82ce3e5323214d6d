"""The loop backend: M ordinary nn.Modules, M torch.optim.SGD, per-worker Python math for every round.

It shares nothing with the stacked engine but the data stream, so the tests can
use it as an independent reference. It is written for clarity, not speed.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from grawa_sim.algorithms import Hyper, RoundInfo
from grawa_sim.algorithms.grawa import SMOOTHING

Params = dict[str, torch.Tensor]


class LoopEngine:
    def __init__(self, model: nn.Module, algorithm: str, workers: int, hyper: Hyper, loss,
                 lr: float, momentum: float, weight_decay: float, sam_rho: float | None = None):
        self.name, self.hyper, self.loss = algorithm, hyper, loss
        self.models = [copy.deepcopy(model) for _ in range(workers)]
        self.optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum,
                                           nesterov=momentum > 0, weight_decay=weight_decay)
                           for m in self.models]
        self.sam_rho = sam_rho
        self.z = self._snapshot(self.models[0])  # center / leader / x~; the initial point at first
        self.recent_losses = [[] for _ in range(workers)]  # LSGD: last 4 minibatch losses
        self.score_average = [None] * workers  # GRAWA: moving average g_i (float or list per layer)
        self.rounds = 0

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
        if self.name == "dp":
            for params in zip(*(m.parameters() for m in self.models)):
                mean = sum(p.grad for p in params) / len(params)
                for p in params:
                    p.grad = mean.clone()
        for i in chosen:
            self.optimizers[i].step()
        if self.hyper.prox > 0:
            w = self.hyper.prox / self.hyper.tau
            with torch.no_grad():
                for i in chosen:
                    for n, p in self.models[i].named_parameters():
                        p.copy_((1 - w) * p + w * self.z[n])
        for i, loss in zip(chosen, losses):
            self.recent_losses[i] = (self.recent_losses[i] + [loss])[-4:]
        return torch.tensor(losses, dtype=torch.float64)

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

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

    def communicate(self, probe: tuple[torch.Tensor, torch.Tensor] | None) -> RoundInfo:
        with torch.no_grad():
            workers = [self._snapshot(m) for m in self.models]
        names = list(workers[0])
        m = len(workers)
        lam = self.hyper.pull
        info = RoundInfo()
        if self.name == "localsgd":
            avg = {n: sum(w[n] for w in workers) / m for n in names}
            new = [{n: (1 - lam) * w[n] + lam * avg[n] for n in names} for w in workers]
            self.z = avg
        elif self.name == "easgd":
            alpha = lam / m
            avg = {n: sum(w[n] for w in workers) / m for n in names}
            new = [{n: w[n] - alpha * (w[n] - self.z[n]) for n in names} for w in workers]
            self.z = {n: (1 - lam) * self.z[n] + lam * avg[n] for n in names}
        elif self.name == "lsgd":
            running = [sum(r) / len(r) if r else float("inf") for r in self.recent_losses]
            leader = min(range(m), key=lambda i: (running[i], i))
            self.z = {n: workers[leader][n].clone() for n in names}
            new = [{n: (1 - lam) * w[n] + lam * self.z[n] for n in names} for w in workers]
            info.leader = leader
        elif self.name in ("mgrawa", "lgrawa"):
            new, info = self._grawa(workers, names, probe)
        else:
            raise RuntimeError(f"{self.name} has no rounds")
        with torch.no_grad():
            for model, values in zip(self.models, new):
                for n, p in model.named_parameters():
                    p.copy_(values[n])
        return info

    def _grawa(self, workers: list[Params], names: list[str], probe):
        self.rounds += 1
        k, b, lam, m = self.rounds, SMOOTHING, self.hyper.pull, len(workers)
        per_layer = self.name == "lgrawa"
        scores = []
        for i, model in enumerate(self.models):
            saved = {n: t.clone() for n, t in model.named_buffers()}
            self._backward(model, probe[0][i], probe[1][i], reduction="sum")
            with torch.no_grad():
                for n, t in model.named_buffers():
                    t.copy_(saved[n])
            norms = [float(p.grad.norm()) for p in model.parameters()]
            if per_layer:
                score = norms
            elif self.hyper.grawa_norm == "layer_sum":
                score = [sum(norms)]
            else:
                score = [math.sqrt(sum(v * v for v in norms))]
            if self.hyper.grawa_smoothing:
                prev = self.score_average[i] or [0.0] * len(score)
                self.score_average[i] = [b * g + (1 - b) * s for g, s in zip(prev, score)]
                score = [g / (1 - b**k) for g in self.score_average[i]]
            scores.append(score)
        columns = len(scores[0])
        weights = [[0.0] * columns for _ in range(m)]
        for l in range(columns):
            column = [scores[i][l] for i in range(m)]
            zeros = [i for i in range(m) if column[i] == 0.0]
            for i in range(m):
                if zeros:
                    weights[i][l] = (1.0 / len(zeros)) if i in zeros else 0.0
                else:
                    weights[i][l] = (1.0 / column[i]) / sum(1.0 / c for c in column)
        center = {}
        for l, n in enumerate(names):
            col = l if per_layer else 0
            center[n] = sum(weights[i][col] * workers[i][n] for i in range(m))
        self.z = center
        new = [{n: (1 - lam) * w[n] + lam * center[n] for n in names} for w in workers]
        as_tensor = torch.tensor(weights, dtype=torch.float64)
        info = RoundInfo(weights=as_tensor if per_layer else as_tensor[:, 0],
                         scores=torch.tensor(scores if per_layer else [s[0] for s in scores], dtype=torch.float64))
        return new, info

    def stacked_params(self) -> Params:
        return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in self.models])
                for n, _ in self.models[0].named_parameters()}

    def stacked_buffers(self) -> Params:
        return {n: torch.stack([dict(m.named_buffers())[n] for m in self.models])
                for n, _ in self.models[0].named_buffers()}

    def evaluated(self) -> Params:
        if self.name == "dp":
            return self._snapshot(self.models[0])
        if self.name == "easgd":
            return {n: t.clone() for n, t in self.z.items()}
        workers = [self._snapshot(m) for m in self.models]
        return {n: sum(w[n] for w in workers) / len(workers) for n in workers[0]}

    def center(self) -> Params:
        if self.name == "dp":
            return self._snapshot(self.models[0])
        return {n: t.clone() for n, t in self.z.items()}
