"""run(config) -> Result: data shards -> local steps -> rounds -> metrics -> a tidy DataFrame.

The pieces (model, data, engine, clock, batch stream) come from `grawa_sim.engine.problem`, the
history from `grawa_sim.engine.recorder`; this module drives the simulated clock's ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from grawa_sim.algorithms import RoundInfo
from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config, ConfigError
from grawa_sim.core.collectives import Params, StackedAxis
from grawa_sim.core.devices import resolve_device
from grawa_sim.engine.lr_schedule import lr_at, worker_factors
from grawa_sim.engine.problem import build_problem, memory_errors, validate
from grawa_sim.engine.recorder import Recorder, diverged, interactive, progress_bar
from grawa_sim.engine.result import Result

DIVERGENCE_CHECK_EVERY = 16  # ticks between finiteness checks when no round or evaluation comes sooner


def run(config: Config, progress: bool | None = None, axis: StackedAxis | None = None,
        device: torch.device | str | None = None, on_step: Callable[[int], None] | None = None,
        devices: list[torch.device | str] | None = None,
        on_evaluate: Callable[[float, Params], None] | None = None,
        on_round: Callable[[int, Params, RoundInfo], None] | None = None,
        on_row: Callable[[dict], None] | None = None) -> Result:
    """Train ``config.workers`` workers with ``config.algorithm``; evaluate every ``eval_every`` steps.

    ``progress=None`` shows a tqdm bar only in a terminal or a notebook.
    ``axis`` places the workers: by default all M on this process (``StackedAxis``); a
    ``DistributedAxis`` runs this process's M/R workers and talks to the other ranks (see
    grawa_sim.cli.distributed). Every rank draws the same shards, batches and probes for all M
    workers and keeps its own slice, so any placement computes the same numbers.
    ``on_step(step)`` is called before every local step; ``on_evaluate(step, evaluated)`` at every
    evaluation with the evaluated model's parameters (e.g. to record a trajectory);
    ``on_round(round, before, info)`` after every round with the stacked worker parameters just
    before it ([M_local, ...]) and what the round reported (GRAWA's weights and scores);
    ``on_row(row)`` after every evaluation with the history row just recorded (an exception it raises,
    e.g. a tuner's pruning, stops the run and propagates; one device only, not with ``devices``).
    ``device`` (default ``config.device``; ``auto``: CUDA when available, else the CPU) is where
    the workers compute; the tensors of the Result stay there. ``devices`` (two or more) shards
    the worker axis over them in this process (grawa_sim.engine.sharded; the Result on the first).
    Raises ``ValueError("<field>: <why> (got <value>)")`` on invalid input, ``DivergenceError`` (one line
    naming the step) at the first non-finite loss, gradient or parameter, ``OutOfMemory`` (one line naming
    M and the model) when the run does not fit.
    """
    if devices is not None:
        if axis is not None or device is not None:
            raise ConfigError(f"devices: give devices, or device / axis, not both (got {devices!r})")
        from grawa_sim.core.devices import parse_devices

        devices = parse_devices(devices)
        if len(devices) > 1:
            from grawa_sim.engine.sharded import run_sharded

            if on_row is not None:
                raise ConfigError(f"devices: on_row takes one device, not a sharded run (got {devices!r})")
            return run_sharded(run, config, devices, progress, on_step, on_evaluate, on_round)
        device = devices[0]
    cfg = validate(config)
    device = resolve_device(cfg.device if device is None else device)
    with memory_errors(cfg, device):
        return _run(cfg, progress, axis, device, on_step, on_evaluate, on_round, on_row)


def _run(cfg: Config, progress, axis, device, on_step, on_evaluate, on_round, on_row=None) -> Result:
    problem = build_problem(cfg, device, axis)
    clock, engine = problem.clock, problem.engine
    recorder = Recorder(problem, on_evaluate, on_row)
    mine = problem.axis.local_slice
    periodic = not problem.communicates_every_step

    factors = worker_factors(cfg)
    like = next(iter(engine.stacked_params().values()))
    # lr x factor in float64, then the parameters' dtype (as run_many's per-run rates)
    scale = None if factors is None else torch.tensor(factors, dtype=torch.float64, device=like.device)[mine]

    def update_lr(step: float, first: bool = False) -> None:
        lr = lr_at(cfg, step if cfg.lr_decay_unit == "steps" else clock.totals.sim_time)
        if first or lr != recorder.lr:
            recorder.lr = lr
            engine.set_lr(lr if scale is None else (lr * scale).to(like.dtype))

    bar = progress_bar(cfg, interactive() if progress is None else progress)
    update_lr(0, first=True)  # per-worker lrs take effect even when the lr never changes
    recorder.evaluate(0)
    if recorder.stop_at_target():  # the initial model already reaches the target
        bar.close()
        return recorder.result()
    next_eval, shown, tick_index = cfg.eval_every, 0, 0
    next_time = cfg.eval_seconds if cfg.eval_seconds is not None else math.inf

    def communicate() -> None:
        before = None
        if on_round is not None and periodic:
            before = {n: p.detach().clone() for n, p in engine.stacked_params().items()}
        info = problem.round()
        recorder.add_round(info)
        if before is not None:
            on_round(recorder.rounds, before, info)

    try:
        for tick in clock.ticks():
            tick_index += 1
            if on_step is not None:
                on_step(tick_index)
            losses = problem.step(None if tick.everyone else tick.stepping[mine])
            step = clock.mean_step()
            step = int(step) if step.is_integer() else round(step, 3)
            recorder.add_losses(step, losses)
            if (tick.round and periodic) or tick_index % DIVERGENCE_CHECK_EVERY == 0:
                recorder.check_finite()  # before a round spreads a non-finite worker to the others
            if tick.round:
                communicate()
            update_lr(step)
            done = step >= cfg.steps
            out_of_time = cfg.time_budget is not None and clock.totals.sim_time >= cfg.time_budget
            out_of_wall = False
            if cfg.wall_budget is not None:  # every rank must stop at the same tick: share the decision
                late = torch.tensor([[float(recorder.wall_time >= cfg.wall_budget)]])
                out_of_wall = bool(problem.axis.all_reduce_sum(late) > 0)
            ending = done or out_of_time or out_of_wall
            if ending and periodic and not tick.round:
                # the run ends between rounds: one last round (charged on the clock) so that the evaluated
                # model holds the local steps since the previous one (DiLoCo's x_global moves only at rounds)
                recorder.check_finite()
                clock.final_round()
                communicate()
            now = clock.totals.sim_time
            timed = tick.round and now >= next_time  # right after a round, once per eval_seconds mark
            if step >= next_eval or timed or ending:
                recorder.check_finite()
                row = recorder.evaluate(step)
                while next_eval <= step:
                    next_eval += cfg.eval_every
                while next_time <= now:
                    next_time += cfg.eval_seconds
                bar.set_postfix(test_acc=f"{row['test_acc']:.3f}", refresh=False)
                ending = ending or recorder.stop_at_target()
            bar.update(math.floor(step) - shown)
            shown = math.floor(step)
            if ending:
                break
    except DivergenceError as e:
        if e.step is None:  # raised inside a round (GRAWA's scores): name the step
            raise diverged(cfg, clock.mean_step(), recorder.rows, "a gradient norm") from None
        raise
    finally:
        bar.close()
    return recorder.result()
