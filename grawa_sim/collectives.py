"""The worker axis: collectives over the global worker dimension of stacked tensors.

Every per-worker tensor has a leading dimension of the workers held locally.
Algorithms talk to the other workers only through these calls, so the
same round code runs on one device (``StackedAxis``) or on several
torch.distributed ranks (a subclass that adds ``dist.all_reduce`` etc.).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class StackedAxis:
    """All M workers live on this process: collectives are reductions over dim 0."""

    def __init__(self, workers: int):
        self.workers = workers  # global worker count M
        self.offset = 0  # global index of local worker 0

    @property
    def local_workers(self) -> int:
        return self.workers

    @property
    def local_slice(self) -> slice:
        """The global worker indices held here."""
        return slice(self.offset, self.offset + self.local_workers)

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


class DistributedAxis(StackedAxis):
    """R torch.distributed ranks, each holding M/R consecutive workers (rank r: workers r*M/R ...).

    Each collective reduces the local slice first, then calls the matching
    torch.distributed collective; only ops gloo supports are used (SUM, MIN,
    broadcast, all_gather: no ReduceOp.AVG). Every rank must call the same
    collectives in the same order, which the deterministic schedule guarantees.
    """

    def __init__(self, workers: int, rank: int, world_size: int, device: torch.device | None = None):
        if workers % world_size:
            raise ValueError(f"workers: must be divisible by the number of ranks {world_size} (got {workers})")
        super().__init__(workers)
        self.rank, self.world_size = rank, world_size
        self.per_rank = workers // world_size
        self.offset = rank * self.per_rank
        self.device = device

    @property
    def local_workers(self) -> int:
        return self.per_rank

    def _wire(self, t: torch.Tensor) -> torch.Tensor:
        """A contiguous copy on the backend's device (nccl needs CUDA tensors, also for CPU-side state)."""
        return t.to(self.device or t.device, copy=True, memory_format=torch.contiguous_format)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        out = self._wire(t.sum(dim=0, keepdim=True))
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def all_reduce_min(self, t: torch.Tensor) -> torch.Tensor:
        out = self._wire(t.min(dim=0, keepdim=True).values)
        dist.all_reduce(out, op=dist.ReduceOp.MIN)
        return out.to(t.device)

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        owner, local = divmod(src, self.per_rank)
        out = self._wire(t[local : local + 1] if owner == self.rank else torch.empty_like(t[:1]))
        dist.broadcast(out, src=owner)
        return out.to(t.device)

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        local = self._wire(t)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return torch.cat(parts).to(t.device)
