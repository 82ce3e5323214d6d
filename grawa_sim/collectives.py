"""The worker axis: collectives over the global worker dimension of stacked tensors.

Every per-worker tensor has a leading dimension of the workers held locally.
Algorithms talk to the other workers only through these calls, so the
same round code runs on one device (``StackedAxis``) or on several
torch.distributed ranks (a subclass that adds ``dist.all_reduce`` etc.).
"""

from __future__ import annotations

import torch


class StackedAxis:
    """All M workers live on this process: collectives are reductions over dim 0."""

    def __init__(self, workers: int):
        self.workers = workers  # global worker count M
        self.offset = 0  # global index of local worker 0

    @property
    def local_workers(self) -> int:
        return self.workers

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """sum_j t_j, shape [1, ...]: broadcasts against every local worker."""
        return t.sum(dim=0, keepdim=True)

    def all_reduce_min(self, t: torch.Tensor) -> torch.Tensor:
        """min_j t_j, shape [1, ...]."""
        return t.min(dim=0, keepdim=True).values

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_sum(t) / self.workers

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        """Worker ``src``'s value (global index), shape [1, ...]."""
        return t[src : src + 1]

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every worker's value, shape [M, ...] in global worker order."""
        return t
