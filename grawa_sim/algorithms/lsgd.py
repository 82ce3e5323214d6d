"""LSGD: leader SGD (Teng et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import Algorithm, Params, Reference, RoundInfo, Style, lerp
from grawa_sim.core.collectives import Collective, StackedAxis

LOSS_WINDOW = 4


@dataclass
class LSGDState:
    center: Params  # the last leader's parameters ([1, ...]); the initial point before round 1
    recent_losses: torch.Tensor  # [M_local, 4] ring buffer of minibatch losses
    seen: torch.Tensor  # [M_local] minibatches recorded so far per worker


def running_loss(state: LSGDState) -> torch.Tensor:
    """Mean of each worker's last min(seen_i, 4) minibatch losses, [M_local] (+inf before any loss)."""
    filled = state.seen.clamp(max=LOSS_WINDOW)
    slots = torch.arange(LOSS_WINDOW).unsqueeze(0) < filled.unsqueeze(1)
    total = torch.where(slots, state.recent_losses, torch.zeros_like(state.recent_losses)).sum(dim=1)
    return torch.where(filled > 0, total / filled.clamp(min=1), torch.full_like(total, float("inf")))


def lsgd_round(params: Params, running: torch.Tensor, pull: float, axis: StackedAxis) -> tuple[Params, Params, int]:
    """leader = argmin_j running_loss_j (lowest index on ties; all-gather of M scalars);
    x_i <- (1 - lambda) x_i + lambda x_leader (broadcast from the leader).

    Returns (new params, leader params, leader index).
    """
    leader, leader_params = axis.select_min(running, params)
    return lerp(params, leader_params, pull), leader_params, leader


class LSGDReference(Reference):
    """The same rule over Python lists: each worker's last four losses, the leader by (loss, index)."""

    def __init__(self, hyper, initial, workers):
        super().__init__(hyper, initial, workers)
        self.recent: list[list[float]] = [[] for _ in range(workers)]

    def observe(self, worker: int, loss: float) -> None:
        self.recent[worker] = (self.recent[worker] + [loss])[-LOSS_WINDOW:]

    def round(self, workers: list[Params], probe_norms) -> tuple[list[Params], RoundInfo]:
        lam = self.hyper.pull
        running = [sum(r) / len(r) if r else float("inf") for r in self.recent]
        leader = min(range(len(workers)), key=lambda i: (running[i], i))
        self.center = {n: x.clone() for n, x in workers[leader].items()}
        new = [{n: (1 - lam) * x + lam * self.center[n] for n, x in w.items()} for w in workers]
        return new, RoundInfo(leader=leader)


class LSGD(Algorithm):
    """Every tau steps pull toward the worker with the lowest running loss (mean of its last 4 minibatch losses):

        leader = argmin_j running_loss_j;  x_i <- (1 - lambda) x_i + lambda x_leader

    The per-step proximal pull (p = 0.1 by default) goes toward the last leader.
    Evaluated on the uniform average. Collectives: an all-gather of one running loss per worker,
    then the leader's parameters broadcast. Defaults (the reference code's sample): tau 4, lambda 0.1, p 0.1.
    """

    name = "lsgd"
    style = Style("LSGD", "tab:purple", (0, (5, 1, 1, 1)))
    default_tau, default_pull, default_prox = 4, 0.1, 0.1
    center_description = "the last leader (LSGD)"
    reference = LSGDReference

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        return [Collective("all_gather", 1), Collective("broadcast", parameters)]

    def init(self, params: Params, axis: StackedAxis) -> LSGDState:
        m = axis.local_workers
        return LSGDState(center={n: x.clone() for n, x in params.items()},
                         recent_losses=torch.zeros(m, LOSS_WINDOW, dtype=torch.float64),
                         seen=torch.zeros(m, dtype=torch.long))

    def observe_losses(self, state: LSGDState, losses: torch.Tensor, workers: torch.Tensor | None = None) -> LSGDState:
        rows = torch.arange(len(state.seen)) if workers is None else workers.cpu()
        recent, seen = state.recent_losses.clone(), state.seen.clone()
        recent[rows, seen[rows] % LOSS_WINDOW] = losses.detach().cpu().to(torch.float64)
        seen[rows] += 1
        return LSGDState(center=state.center, recent_losses=recent, seen=seen)

    def round(self, params, state, axis, probe_grads):
        params, leader_params, leader = lsgd_round(params, running_loss(state), self.hyper.pull, axis)
        return params, LSGDState(leader_params, state.recent_losses, state.seen), RoundInfo(leader=leader)
