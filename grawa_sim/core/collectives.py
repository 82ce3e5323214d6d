"""The worker axis: collectives over the global worker dimension of stacked tensors.

Every per-worker tensor has a leading dimension of the workers held locally.
Algorithms talk to the other workers only through these calls, so the
same round code runs on one device (``StackedAxis``), on several devices of one
process (``ShardedAxis``: a thread per shard, partial results combined on the first
device) or on several torch.distributed ranks (``DistributedAxis``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

Params = dict[str, torch.Tensor]  # parameter (or buffer, gradient) name -> tensor; stacked: leading worker dim


@dataclass(frozen=True)
class Collective:
    """One collective of ``values`` float32 numbers (per worker for all_gather)."""

    kind: str  # "all_reduce" | "broadcast" | "reduce" | "all_gather"
    values: int
    op: str = "sum"  # the reduction of an all-reduce or reduce ("sum" | "min"); it does not change the cost


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

    def select_min(self, values: torch.Tensor, params: dict[str, torch.Tensor]):
        """The parameters of the worker with the smallest of ``values`` [M_local] (lowest index on ties):
        (its global index, {name: [1, ...]}). An all-gather of M scalars, then a broadcast from that worker."""
        index = int(torch.argmin(self.all_gather(values)))
        return index, {n: self.broadcast(x, index) for n, x in params.items()}


class GroupedAxis(StackedAxis):
    """R independent groups of M workers on one device: ``groups`` runs of ``workers`` workers each.

    Stacked tensors hold R*M rows, run r's workers at rows r*M ... r*M + M - 1. Every collective
    reduces within a group only and returns one value per row ([R*M, ...], the group's value repeated
    on each of its workers), so a round's code runs R independent runs at once. ``workers`` is M,
    the size of one run; ``local_workers`` is R*M.
    """

    def __init__(self, workers: int, groups: int):
        super().__init__(workers)
        self.groups = groups

    @property
    def local_workers(self) -> int:
        return self.workers * self.groups

    def _grouped(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(self.groups, self.workers, *t.shape[1:])

    def _spread(self, t: torch.Tensor) -> torch.Tensor:
        """[R, 1, ...] -> [R*M, ...]."""
        return t.expand(self.groups, self.workers, *t.shape[2:]).reshape(self.local_workers, *t.shape[2:])

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._spread(self._grouped(t).sum(dim=1, keepdim=True))

    def all_reduce_min(self, t: torch.Tensor) -> torch.Tensor:
        return self._spread(self._grouped(t).min(dim=1, keepdim=True).values)

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        """Worker ``src`` of every group (index within the group)."""
        return self._spread(self._grouped(t)[:, src : src + 1])

    def select_min(self, values: torch.Tensor, params: dict[str, torch.Tensor]):
        """Per group: the worker with the smallest value; (indices [R] within the groups, {name: [R*M, ...]})."""
        index = torch.argmin(self._grouped(values), dim=1)  # first minimum: the lowest index on ties
        rows = torch.arange(self.groups, device=index.device) * self.workers + index
        return index, {n: self._spread(x[rows.to(x.device)].unsqueeze(1)) for n, x in params.items()}


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


class ShardGroup:
    """Where the S shards of one process meet: one thread per shard, a barrier, a slot per shard.

    ``exchange(index, value, combine)``: every shard hands in its value; once all are in, shard
    0 computes ``combine(values)`` and every shard gets that result. Two barrier passes per call
    suffice: a shard writes its next slot only after the combine has read them all, and shard 0
    overwrites the result only once every shard has arrived at the next call (read the last one).
    ``abort()`` (a shard failed) breaks the barrier: the other shards raise BrokenBarrierError.
    """

    def __init__(self, shards: int):
        import threading

        self.shards = shards
        self.barrier = threading.Barrier(shards)
        self.slots: list = [None] * shards
        self.result = None

    def exchange(self, index: int, value, combine):
        self.slots[index] = value
        self.barrier.wait()
        if index == 0:
            self.result = combine(self.slots)
        self.barrier.wait()
        return self.result

    def abort(self) -> None:
        self.barrier.abort()


def shard_sizes(workers: int, shards: int) -> list[int]:
    """Consecutive shards as equal as can be, the larger first: 5 workers on 3 shards -> [2, 2, 1]."""
    if shards < 1 or workers < shards:
        raise ValueError(f"devices: need between 1 and workers={workers} shards (got {shards})")
    base, extra = divmod(workers, shards)
    return [base + (i < extra) for i in range(shards)]


class ShardedAxis(StackedAxis):
    """Shard ``index`` of the worker axis split over S devices of one process (a thread per shard).

    Shard s holds ``sizes[s]`` consecutive workers on ``devices[s]``. A reduction reduces the
    local slice first, then the S partial results are combined on ``devices[0]`` (in shard
    order, so every shard gets the same bits) and copied back to each shard's device. Every
    shard must call the same collectives in the same order, as with `DistributedAxis`.
    """

    def __init__(self, workers: int, index: int, group: ShardGroup, devices: list[torch.device],
                 sizes: list[int] | None = None):
        sizes = sizes or shard_sizes(workers, len(devices))
        if len(sizes) != len(devices) or sum(sizes) != workers or min(sizes) < 1:
            raise ValueError(f"devices: shard sizes {sizes} do not split {workers} workers over {len(devices)} devices")
        super().__init__(workers)
        self.index, self.group, self.devices, self.sizes = index, group, list(devices), list(sizes)
        self.offset = sum(sizes[:index])
        self.home = self.devices[0]

    @property
    def local_workers(self) -> int:
        return self.sizes[self.index]

    def _combine(self, part: torch.Tensor, reduce) -> torch.Tensor:
        def combine(parts: list[torch.Tensor]) -> torch.Tensor:
            out = parts[0].to(self.home, copy=True)
            for p in parts[1:]:
                out = reduce(out, p.to(self.home))
            return out

        total = self.group.exchange(self.index, part, combine)
        return total.to(part.device, copy=True)  # every shard its own copy: none shares storage with another

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._combine(t.sum(dim=0, keepdim=True), torch.add)

    def all_reduce_min(self, t: torch.Tensor) -> torch.Tensor:
        return self._combine(t.min(dim=0, keepdim=True).values, torch.minimum)

    def _owner(self, src: int) -> tuple[int, int]:
        start = 0
        for shard, size in enumerate(self.sizes):
            if src < start + size:
                return shard, src - start
            start += size
        raise IndexError(f"worker {src} out of range for {self.workers} workers")

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        owner, local = self._owner(src)
        mine = t[local : local + 1] if owner == self.index else None
        # copied on the home device inside the exchange: the owner may update t once the exchange returns
        value = self.group.exchange(self.index, mine, lambda parts: parts[owner].to(self.home, copy=True))
        return value.to(t.device, copy=True)

    def all_gather(self, t: torch.Tensor) -> torch.Tensor:
        gathered = self.group.exchange(self.index, t, lambda parts: torch.cat([p.to(self.home) for p in parts]))
        return gathered.to(t.device, copy=True)
