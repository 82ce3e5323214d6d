"""What every algorithm shares: hyper-parameters, parameter-dict helpers, the self-description.

Parameters are dicts name -> stacked tensor [M_local, ...]. A round is a pure function of
(params, state) and the worker axis's collectives: it returns new params, a new state and a
`RoundInfo`, and never changes the state it was given. The engine calls the hooks of an
`Algorithm` and never looks inside its state; the rest of the simulator (config validation,
the clock, the loop backend, plots, the command line) reads the class attributes below through
the registry in ``grawa_sim.algorithms``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from grawa_sim.core.collectives import Collective, Params, StackedAxis


@dataclass(frozen=True)
class Hyper:
    """Round hyper-parameters every algorithm takes: lambda = pull, p = prox (per-step pull), tau = period.

    An algorithm with more hyper-parameters subclasses this; each extra field is named like the
    `grawa_sim.Config` field it is read from, and `check` validates it.
    """

    pull: float
    prox: float
    tau: int

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError('<field>: <why> (got <value>)') for a bad extra field; nothing to check here."""

    @classmethod
    def extra_fields(cls) -> tuple[str, ...]:
        """The Config fields this hyper-parameter class reads beyond pull, prox and tau."""
        common = {f.name for f in dataclasses.fields(Hyper)}
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in common)

    @classmethod
    def extra_default(cls, field: str) -> object:
        """The default of one extra field (what an unset Config field resolves to)."""
        return {f.name: f.default for f in dataclasses.fields(cls)}[field]

    @classmethod
    def from_config(cls, config) -> Hyper:
        """The hyper-parameters of a resolved Config (or any object with its fields)."""
        extras = {f: getattr(config, f) for f in cls.extra_fields() if getattr(config, f) is not None}
        return cls(pull=config.pull, prox=config.prox, tau=config.tau, **extras)


@dataclass(frozen=True)
class Style:
    """How an algorithm appears in tables and figures."""

    label: str
    color: str
    linestyle: str | tuple = "-"


@dataclass
class RoundInfo:
    """What a round reports: GRAWA scores/weights ([M] or [M, L]) or LSGD's leader."""

    weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    leader: int | None = None


def lerp(params: Params, target: Params, weight: float) -> Params:
    """x <- (1 - weight) x + weight * target, tensor by tensor (target broadcasts over workers)."""
    return {n: torch.lerp(x, target[n].expand_as(x), weight) for n, x in params.items()}


def uniform_average(params: Params, axis: StackedAxis) -> Params:
    """mean_j x_j, each tensor of shape [1, ...]."""
    return {n: axis.all_reduce_mean(x) for n, x in params.items()}


def squeeze_worker(params: Params) -> Params:
    """Drop the leading worker dimension of size 1 (a center) -> plain model parameters."""
    return {n: x.squeeze(0) for n, x in params.items()}


def clone(params: Params) -> Params:
    return {n: x.clone() for n, x in params.items()}


def mean_of(workers: list[Params]) -> Params:
    """(1/M) sum_j x_j over a list of per-worker parameter dicts (the loop backend's average)."""
    return {n: sum(w[n] for w in workers) / len(workers) for n in workers[0]}


class Reference:
    """The loop backend's per-worker reference of one algorithm: plain Python over lists of models.

    It shares no code with the stacked round, so the two can check each other. The loop backend
    calls ``observe`` after every local step of worker i, ``reduce_grads`` every step, and ``round``
    every tau steps with the workers' parameters (and, if the algorithm ``needs_probe``, the
    per-layer norms ||grad_l f(x_i)|| of the summed probe loss); ``center`` is the z of the
    proximal pull.
    """

    def __init__(self, hyper: Hyper, initial: Params, workers: int):
        self.hyper, self.workers = hyper, workers
        self.center = clone(initial)

    def observe(self, worker: int, loss: float) -> None:
        """Worker ``worker`` took a local step with minibatch loss ``loss``."""

    def reduce_grads(self, grads: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
        """grads[i][l]: worker i's gradient of tensor l, before the optimizer step."""
        return grads

    def round(self, workers: list[Params], probe_norms: list[list[float]] | None) -> tuple[list[Params], RoundInfo]:
        raise NotImplementedError

    def evaluated(self, workers: list[Params]) -> Params:
        return mean_of(workers)


class Algorithm:
    """One averaging rule: its self-description (class attributes) and the hooks the engine calls.

    Self-description, read by the rest of the simulator through the registry:

    - ``name``, ``style``: the registry key and its label / colour / line style in figures.
    - ``default_tau``, ``default_pull``, ``default_prox``: what an unset Config tau / pull / prox means.
    - ``hyper_type``: the hyper-parameter dataclass (a `Hyper` subclass for algorithm-only Config fields).
    - ``needs_probe``: a round needs gradients on a probe batch; ``communicates_every_step``: it
      communicates through ``reduce_grads`` every step and has no rounds (no tau, pull nor prox).
    - ``takes_pull``: a round uses lambda (else a set ``pull`` is ignored with a warning).
    - ``takes_sam``: accepts sam=True; ``center_description``: what its own center is (None: no center).
    - ``collectives(parameters, layers)``: every collective one communication runs (the clock charges them).
    - ``reference``: its `Reference` for the loop backend.

    Hooks (all pure: none changes the state or params it is given):

    - ``init(params, axis)``: state from the common initial point (params of shape [1, ...]).
    - ``reduce_grads(grads, axis)``: DP's all-reduce of the gradients every step.
    - ``observe_losses(state, losses, workers)``: minibatch losses after every step (of ``workers``, default all).
    - ``round(params, state, axis, probe_grads)``: every tau steps -> (params, state, info).
    - ``center(state)``: z of the proximal pull and the reported center ([1, ...]).
    - ``evaluated(params, state, axis)``: the model the algorithm is evaluated on ([1, ...]).
    """

    name: ClassVar[str] = "base"
    style: ClassVar[Style] = Style("base", "tab:blue")
    default_tau: ClassVar[int] = 32
    default_pull: ClassVar[float] = 1.0
    default_prox: ClassVar[float] = 0.0
    hyper_type: ClassVar[type[Hyper]] = Hyper
    needs_probe: ClassVar[bool] = False
    communicates_every_step: ClassVar[bool] = False
    takes_pull: ClassVar[bool] = True
    takes_sam: ClassVar[bool] = False
    center_description: ClassVar[str | None] = None
    reference: ClassVar[type[Reference]] = Reference

    def __init__(self, hyper: Hyper):
        self.hyper = hyper

    @staticmethod
    def collectives(parameters: int, layers: int) -> list[Collective]:
        raise NotImplementedError

    @classmethod
    def own_hyper(cls, hyper: Hyper) -> Hyper:
        """``hyper`` as this algorithm's hyper-parameter class (its own fields at their defaults if absent)."""
        if isinstance(hyper, cls.hyper_type):
            return hyper
        return cls.hyper_type(pull=hyper.pull, prox=hyper.prox, tau=hyper.tau)

    @classmethod
    def styles(cls) -> dict[str, Style]:
        """Method name -> style, for this algorithm and its variants (DP adds 'dp+sam')."""
        return {cls.name: cls.style}

    def init(self, params: Params, axis: StackedAxis):
        raise NotImplementedError

    def reduce_grads(self, grads: Params, axis: StackedAxis) -> Params:
        return grads

    def observe_losses(self, state, losses: torch.Tensor, workers: torch.Tensor | None = None):
        return state

    def round(self, params: Params, state, axis: StackedAxis, probe_grads: Params | None):
        raise NotImplementedError

    def center(self, state) -> Params:
        return state.center

    def evaluated(self, params: Params, state, axis: StackedAxis) -> Params:
        return uniform_average(params, axis)
