"""Simulated time: the α-β communication cost model, per-worker step times, sync and async schedules.

Everything here is deterministic given the seed (straggler draws come from their own
generator), so the same config always produces the same clock, whatever the backend.

Communication of P float32 values among M workers (α = latency in s, β = 1/bandwidth in s/byte,
n = 4P bytes), the standard α-β costs (Thakur, Rabenseifner & Gropp 2005):

    ring all-reduce      2 (M-1)/M · n β + 2 (M-1) α     bytes sent, all workers: 2 (M-1) n
    binomial broadcast   ⌈log2 M⌉ (α + n β)             bytes sent: (M-1) n
    binomial reduce      ⌈log2 M⌉ (α + n β)             bytes sent: (M-1) n
    ring all-gather      (M-1) (α + n β)                 bytes sent: M (M-1) n   (n per worker)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from grawa_sim.core.collectives import Collective

FLOAT_BYTES = 4


def collective_time(c: Collective, workers: int, bandwidth: float, latency: float) -> float:
    """Seconds one collective takes under the α-β model (0 for a single worker)."""
    m, n = workers, FLOAT_BYTES * c.values
    if m <= 1:
        return 0.0
    if c.kind == "all_reduce":
        return 2 * (m - 1) / m * n / bandwidth + 2 * (m - 1) * latency
    if c.kind in ("broadcast", "reduce"):
        return math.ceil(math.log2(m)) * (latency + n / bandwidth)
    if c.kind == "all_gather":
        return (m - 1) * (latency + n / bandwidth)
    raise ValueError(f"collective: unknown kind {c.kind!r}")


def collective_bytes(c: Collective, workers: int) -> int:
    """Bytes sent by all workers together for one collective."""
    m, n = workers, FLOAT_BYTES * c.values
    if m <= 1:
        return 0
    return {"all_reduce": 2 * (m - 1) * n, "broadcast": (m - 1) * n, "reduce": (m - 1) * n,
            "all_gather": m * (m - 1) * n}[c.kind]


@dataclass(frozen=True)
class ClockModel:
    """Step time of worker i = step_time · speed_i · (straggler_slowdown with prob. straggler_prob, else 1)."""

    workers: int
    step_time: float
    speeds: tuple[float, ...]
    straggler_prob: float
    straggler_slowdown: float
    bandwidth: float
    latency: float
    passes_per_step: int = 1  # SAM: two forward-backward passes
    seed: int = 0

    def communication(self, collectives: list[Collective]) -> tuple[float, int]:
        return (sum(collective_time(c, self.workers, self.bandwidth, self.latency) for c in collectives),
                sum(collective_bytes(c, self.workers) for c in collectives))


@dataclass
class Tick:
    """Workers ``stepping`` (bool [M]) each do one local step; then a round if ``round``. ``everyone``: all
    of them step (the synchronous schedule), which spares a reader looking at ``stepping``."""

    stepping: torch.Tensor
    round: bool
    everyone: bool = False


@dataclass
class ClockTotals:
    sim_time: float = 0.0  # simulated seconds since the start (the latest event)
    compute_time: float = 0.0  # local computation, seconds per worker on average
    comm_time: float = 0.0  # seconds spent in collectives
    comm_bytes: int = 0  # bytes sent, all workers together


class Clock:
    """Yields ticks in simulated-time order and keeps the clock.

    sync:  every worker does tau steps, then a round; the round is a barrier at the slowest
           worker's arrival. DP: every step is a barrier followed by the gradient all-reduce.
    async: a global counter grants local steps. Before each step a worker asks for a grant, the
           requests taken in order of simulated time (ties by worker index); the first M·tau
           requests of a round are granted and every later one waits for the round. The round is a
           barrier that starts when the last granted step has finished, so a round holds exactly
           M·tau local steps and fast workers take more of them than slow ones.
    """

    def __init__(self, clock: ClockModel, tau: int, every_step: bool, asynchronous: bool,
                 collectives: list[Collective], probe: bool):
        self.clock, self.tau = clock, tau
        self.every_step, self.asynchronous = every_step, asynchronous and not every_step
        self.comm_seconds, self.comm_bytes = clock.communication(collectives)
        self.probe = probe
        m = clock.workers
        self.speeds = torch.tensor(clock.speeds, dtype=torch.float64)
        self.time = torch.zeros(m, dtype=torch.float64)  # when each worker is free
        self.steps = torch.zeros(m, dtype=torch.long)
        self._sync_steps = 0  # every worker's step count under the synchronous schedule (all the same)
        self.totals = ClockTotals()
        self._draws = torch.Generator().manual_seed(clock.seed * 7919 + 11)

    def _durations(self, workers: torch.Tensor) -> torch.Tensor:
        """Step times of the given workers (one straggler draw each, in worker order)."""
        c = self.clock
        d = c.step_time * c.passes_per_step * self.speeds[workers]
        if c.straggler_prob > 0:
            slow = torch.rand(len(workers), generator=self._draws, dtype=torch.float64) < c.straggler_prob
            d = torch.where(slow, d * c.straggler_slowdown, d)
        return d

    def _compute(self, durations: torch.Tensor) -> None:
        self.totals.compute_time += float(durations.sum()) / self.clock.workers

    def _round(self) -> None:
        """Barrier at the last arrival, optional probe pass, then the collectives."""
        start = float(self.time.max())
        if self.probe:
            probe = self._durations(torch.arange(self.clock.workers)) / self.clock.passes_per_step
            self._compute(probe)
            start += float(probe.max())
        end = start + self.comm_seconds
        self.time[:] = end
        self.totals.comm_time += self.comm_seconds
        self.totals.comm_bytes += self.comm_bytes
        self.totals.sim_time = end

    def final_round(self) -> None:
        """A round outside the schedule (a run that ends between two rounds), charged like any other."""
        self._round()

    def ticks(self) -> Iterator[Tick]:
        """Endless; the caller stops by steps or budget."""
        m = self.clock.workers
        everyone = torch.ones(m, dtype=torch.bool)
        if self.asynchronous:
            yield from self._async_ticks()
            return
        workers = torch.arange(m)
        fixed = None if self.clock.straggler_prob > 0 else self._durations(workers)  # no draws: every step alike
        share = None if fixed is None else float(fixed.sum()) / m  # what _compute adds for them
        while True:
            if fixed is None:
                d = self._durations(workers)
                self._compute(d)
            else:
                d = fixed
                self.totals.compute_time += share
            self.time += d
            self.steps += 1
            self._sync_steps += 1
            self.totals.sim_time = float(self.time.max())
            is_round = self.every_step or self._sync_steps % self.tau == 0
            if is_round:
                self._round()
            yield Tick(everyone, is_round, everyone=True)

    def mean_step(self) -> float:
        """Local steps per worker so far, on average."""
        if not self.asynchronous:
            return float(self._sync_steps)
        return float(self.steps.double().mean())

    def _async_ticks(self) -> Iterator[Tick]:
        """Grant-based rounds: exactly M·tau local steps between two rounds (see the class docstring)."""
        m, budget = self.clock.workers, self.clock.workers * self.tau
        while True:
            everyone = torch.arange(m)
            length = self._durations(everyone)  # every worker asks at the round's end: M grants
            finish = self.time + length
            busy = torch.ones(m, dtype=torch.bool)
            granted = m
            while True:
                now = float(finish[busy].min())
                done = busy & (finish == now)
                self._complete(done, length, now)
                asking = torch.nonzero(done).flatten()  # these workers ask again at `now`, in index order
                grants = asking[: max(0, budget - granted)]
                granted += len(grants)
                busy &= ~done
                if len(grants):
                    length[grants] = self._durations(grants)
                    finish[grants] = now + length[grants]
                    busy[grants] = True
                last = not bool(busy.any())
                if last:
                    self._round()
                yield Tick(done, last)
                if last:
                    break

    def _complete(self, group: torch.Tensor, length: torch.Tensor, now: float) -> None:
        """Workers in ``group`` finish their current step at ``now``."""
        self._compute(length[group])
        self.time[group] = now
        self.steps[group] += 1
        self.totals.sim_time = now
