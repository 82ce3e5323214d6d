"""Many runs in one stacked ensemble: ``run_many(configs) -> list[Result]``.

R compatible configurations (the same algorithm, model, data, M, tau, steps, schedule and every
other field; any ``seed``, ``lr``, ``momentum``, ``weight_decay`` and ``prox``) train as one
ensemble of R*M workers on a `GroupedAxis`: every collective reduces within a run's group of M,
the per-run hyperparameters are tensors over the worker rows, run r starts from the model its
own seed initialises and draws exactly the batches and probes it would draw alone (its own
`TrainingStream`), keeps its own simulated clock and records its own history. Each Result equals
``run(config)`` up to the order of floating-point operations (1e-10 in float64, tested).

Synchronous runs only (the asynchronous schedule lets each run's seeded worker speeds decide who
steps), and no wall budget. A time budget, evaluations every ``eval_seconds`` or an lr schedule in
simulated seconds need one clock for every run: no random stragglers and no seeded speed spread
(then every run's clock ticks alike, whatever its seed, and all stop at the same tick). A run
that reaches its ``target_train_loss`` (or, asked to stop there, its ``target_test_acc``) keeps its
Result from that evaluation; the ensemble goes on until every run is done.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from grawa_sim import algorithms
from grawa_sim.algorithms import RoundInfo
from grawa_sim.config import Config, ConfigError
from grawa_sim.core.collectives import GroupedAxis, Params, StackedAxis
from grawa_sim.core.devices import resolve_device
from grawa_sim.data.datasets import TrainingStream
from grawa_sim.engine.ensemble import VmapEngine, per_worker
from grawa_sim.engine.lr_schedule import lr_at, worker_factors
from grawa_sim.engine.problem import Problem, build_clock, build_engine, memory_errors, model_and_data, validate
from grawa_sim.engine.recorder import Recorder, interactive, progress_bar
from grawa_sim.engine.result import Result

PER_RUN = ("seed", "lr", "momentum", "weight_decay", "prox")  # may differ between the runs of one ensemble
ALONE = {"schedule": "sync", "wall_budget": None, "backend": "vmap"}  # what a run must have to share an ensemble
# Reading the simulated clock (a time budget, evaluations or lr decay in simulated seconds) needs one clock
# for every run of the ensemble: one without random stragglers or seeded speed factors (the same ticks
# whatever the seed).
CLOCK_READERS = ("time_budget", "eval_seconds")


def _reads_clock(cfg: Config) -> bool:
    return any(getattr(cfg, f) is not None for f in CLOCK_READERS) or cfg.lr_decay_unit == "seconds"


def _clock_problem(cfg: Config) -> str | None:
    """Why ``cfg``'s simulated clock depends on its seed (None when it does not)."""
    if cfg.straggler_prob > 0:
        return f"straggler_prob: the straggler draws depend on the seed (got {cfg.straggler_prob!r})"
    if cfg.speeds is None and cfg.speed_spread > 0:
        return f"speed_spread: the workers' speeds are drawn from the seed (got {cfg.speed_spread!r})"
    return None


def batch_key(config: Config) -> tuple | None:
    """Runs with equal keys can share one ensemble; None for a run that must run alone."""
    cfg = validate(config)
    if any(getattr(cfg, field) != value for field, value in ALONE.items()):
        return None
    if _reads_clock(cfg) and _clock_problem(cfg) is not None:
        return None
    return tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name not in PER_RUN)


def check_compatible(configs: Sequence[Config]) -> list[Config]:
    """The validated configurations, or a one-line ConfigError naming the first field that keeps them apart."""
    if not configs:
        raise ConfigError("configs: run_many needs at least one configuration (got [])")
    cfgs = [validate(c) for c in configs]
    for field, value in ALONE.items():
        for c in cfgs:
            if getattr(c, field) != value:
                raise ConfigError(f"{field}: runs in one ensemble need {field}={value!r} (got {getattr(c, field)!r})")
    for c in cfgs:
        why = _clock_problem(c) if _reads_clock(c) else None
        if why is not None:
            raise ConfigError(f"{why.split(':')[0]}: runs that read the simulated clock (time_budget, eval_seconds, "
                              f"lr in seconds) share an ensemble only with one clock for all;{why.split(':', 1)[1]}")
    for f in dataclasses.fields(Config):
        if f.name in PER_RUN:
            continue
        values = {repr(getattr(c, f.name)) for c in cfgs}
        if len(values) > 1:
            raise ConfigError(f"{f.name}: runs in one ensemble may differ only in {', '.join(PER_RUN)} "
                              f"(got {', '.join(sorted(values))})")
    return cfgs


class RunView:
    """Run r's rows of a grouped ensemble, seen as a one-run engine (what the Recorder reads)."""

    def __init__(self, engine: VmapEngine, run: int, workers: int):
        self.engine, self.rows, self.first = engine, slice(run * workers, (run + 1) * workers), run * workers

    def stacked_params(self) -> Params:
        return {n: p[self.rows] for n, p in self.engine.params.items()}

    def stacked_buffers(self) -> Params:
        return {n: b[self.rows] for n, b in self.engine.buffers.items()}

    def evaluated(self) -> Params:
        e = self.engine
        return {n: x[self.first] for n, x in e.algorithm.evaluated(e.params, e.state, e.axis).items()}

    def center(self) -> Params:
        return {n: x[self.first] for n, x in self.engine.algorithm.center(self.engine.state).items()}


def _run_info(info: RoundInfo | None, rows: slice) -> RoundInfo | None:
    if info is None or info.weights is None:
        return info
    return dataclasses.replace(info, weights=info.weights[rows])


def run_many(configs: Sequence[Config], progress: bool | None = None,
             device: torch.device | str | None = None) -> list[Result]:
    """Train compatible configurations together as one ensemble; their Results in the same order.

    Raises ``ConfigError`` (one line naming the field) for configurations that cannot share an
    ensemble, and the ``DivergenceError`` of the first run that diverges (the others are lost
    with it: run them alone, as `sweep` does, to keep them).
    """
    cfgs = check_compatible(configs)
    base = cfgs[0]
    device = resolve_device(base.device if device is None else device)
    with memory_errors(dataclasses.replace(base, workers=base.workers * len(cfgs), speeds=None), device):
        return _run_many(cfgs, progress, device)


def _run_many(cfgs: list[Config], progress, device) -> list[Result]:
    r, m, base = len(cfgs), cfgs[0].workers, cfgs[0]
    kind = algorithms.get(base.algorithm)
    built = [model_and_data(c, device) for c in cfgs]
    data = built[0][1]
    axis = GroupedAxis(m, r)
    engine = build_engine(base, built[0][0], data, axis, runs=cfgs)
    stack = lambda tensors: torch.cat([t.detach().unsqueeze(0).expand(m, *t.shape) for t in tensors])  # noqa: E731
    engine.start_from({n: stack([dict(model.named_parameters())[n] for model, _ in built]) for n in engine.params},
                      {n: stack([dict(model.named_buffers())[n] for model, _ in built]) for n in engine.buffers})
    like = next(iter(engine.params.values()))

    streams = [TrainingStream(c, data, slice(0, m)) for c in cfgs]
    clocks = [build_clock(c, model) for c, (model, _) in zip(cfgs, built)]
    recorders = [Recorder(Problem(c, model, data, StackedAxis(m), RunView(engine, i, m), clock, stream))
                 for i, (c, (model, _), clock, stream) in enumerate(zip(cfgs, built, clocks, streams))]

    factors = worker_factors(base)  # lr_spread is shared by the runs of an ensemble (check_compatible)

    def update_lr(step: float, first: bool = False) -> None:
        lrs = [lr_at(c, step if c.lr_decay_unit == "steps" else clocks[0].totals.sim_time) for c in cfgs]
        if first or lrs != [rec.lr for rec in recorders]:
            for rec, lr in zip(recorders, lrs):
                rec.lr = lr
            engine.set_lr(per_worker(lrs, m, like) if factors is None else
                          torch.tensor([lr * f for lr in lrs for f in factors], dtype=like.dtype, device=like.device))

    def batch(draws: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([x for x, _ in draws]), torch.cat([y for _, y in draws])

    def communicate(live: list[int]) -> None:
        probe = batch([s.probe() for s in streams]) if kind.needs_probe else None
        info = engine.communicate(probe)
        for i in live:
            recorders[i].add_round(_run_info(info, slice(i * m, (i + 1) * m)))

    bar = progress_bar(dataclasses.replace(base, workers=m * r, speeds=None),
                       interactive() if progress is None else progress)
    update_lr(0, first=True)  # per-worker lrs take effect even when the lr never changes
    for rec in recorders:
        rec.evaluate(0)
    results: list[Result | None] = [rec.result() if rec.stop_at_target() else None for rec in recorders]
    next_eval, shown = base.eval_every, 0
    next_time = base.eval_seconds if base.eval_seconds is not None else math.inf
    periodic = not kind.communicates_every_step
    try:
        for ticks in zip(*(c.ticks() for c in clocks)):
            if all(res is not None for res in results):
                break
            live = [i for i, res in enumerate(results) if res is None]  # a run that reached its target is done
            losses = engine.local_step(*batch([s.batch() for s in streams]))
            step = clocks[0].mean_step()
            step = int(step) if step.is_integer() else round(step, 3)
            for i in live:
                recorders[i].add_losses(step, losses[i * m:(i + 1) * m])
            if ticks[0].round and periodic:
                for i in live:
                    recorders[i].check_finite()
                communicate(live)
            elif ticks[0].round:
                for i in live:
                    recorders[i].add_round(None)
            update_lr(step)
            now = clocks[0].totals.sim_time  # every run's clock: one clock when it is read (check_compatible)
            done = step >= base.steps or (base.time_budget is not None and now >= base.time_budget)
            if done and periodic and not ticks[0].round:  # ends between rounds: one last round, as run() does
                for i in live:
                    recorders[i].check_finite()
                    clocks[i].final_round()
                communicate(live)
                now = clocks[0].totals.sim_time
            timed = ticks[0].round and now >= next_time  # right after a round, once per eval_seconds mark
            if step >= next_eval or timed or done:
                for i in live:
                    recorders[i].check_finite()
                    recorders[i].evaluate(step)
                    if done or recorders[i].stop_at_target():
                        results[i] = recorders[i].result()
                while next_eval <= step:
                    next_eval += base.eval_every
                while next_time <= now:
                    next_time += base.eval_seconds
                bar.set_postfix(test_acc=f"{min(recorders[i].rows[-1]['test_acc'] for i in live):.3f}", refresh=False)
            bar.update(math.floor(step) - shown)
            shown = math.floor(step)
            if done:
                break
    finally:
        bar.close()
    return [res if res is not None else rec.result() for res, rec in zip(results, recorders)]
