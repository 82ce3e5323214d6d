"""LSGD: leader SGD (Teng et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grawa_sim.algorithms.base import Algorithm, Params, RoundInfo, lerp
from grawa_sim.collectives import StackedAxis

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


class LSGD(Algorithm):
    """Every tau steps pull toward the worker with the lowest 4-batch running loss.

    The per-step proximal pull (p = 0.1 by default) goes toward the last leader.
    Evaluated on the uniform average.
    """

    name = "lsgd"

    def init(self, params: Params, axis: StackedAxis) -> LSGDState:
        m = axis.local_workers
        return LSGDState(center={n: x.clone() for n, x in params.items()},
                         recent_losses=torch.zeros(m, LOSS_WINDOW, dtype=torch.float64),
                         seen=torch.zeros(m, dtype=torch.long))

    def observe_losses(self, state: LSGDState, losses: torch.Tensor, workers: torch.Tensor | None = None) -> LSGDState:
        rows = torch.arange(len(state.seen)) if workers is None else workers.cpu()
        state.recent_losses[rows, state.seen[rows] % LOSS_WINDOW] = losses.detach().cpu().to(torch.float64)
        state.seen[rows] += 1
        return state

    def round(self, params, state, axis, probe_grads):
        params, leader_params, leader = lsgd_round(params, running_loss(state), self.hyper.pull, axis)
        state.center = leader_params
        return params, state, RoundInfo(leader=leader)
