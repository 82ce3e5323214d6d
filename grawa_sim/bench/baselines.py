"""The simulator against plain PyTorch (`grawa_sim.bench.plain`), side by side in one process.

`end_to_end`: whole runs, ``grawa_sim.run`` (data, model, clock, recorder, an evaluation every
``eval_every`` steps) against a hand-written loop with the same evaluations: at M workers (LocalSGD,
B = 32, tau = 32) against one plain model on the FLOP-equal batch M*B, and at M = 1 (DP) against a plain
loop on the same batch. The engine at M = 1 on the batch M*B is a second column, and the same run with
every forward pass through ``torch.vmap`` (the engine before `grawa_sim.models.batched` wrote the known
models' passes out) a third.

`step_profile`: where a run's time per step goes, measured inside whole runs by timers around the
run's own methods (forward/backward, the update, the rounds, data sampling, the simulated clock, the
recorder, the evaluations and building the problem, spread over the steps) and the rest of ``run()``
(Python: the runner's loop) as the difference to the whole run's time; the plain loop's parts beside it.

Contenders alternate repeat by repeat (A, B, A, B, ...) and medians are reported: the machine is shared.
With one torch thread the timer is this process's CPU time (``time.process_time``), which other jobs on
the machine inflate far less than wall time (they still share caches and memory bandwidth); with more
threads it is wall time.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from grawa_sim.bench.plain import PlainTrainer, plain_run
from grawa_sim.config import Config
from grawa_sim.engine import ensemble
from grawa_sim.engine.recorder import Recorder
from grawa_sim.engine.runner import run


def workload(model: str, workers: int, steps: int, eval_every: int = 100, **fields) -> tuple[Config, int]:
    """The benchmark's run and the plain loop's batch: LocalSGD, B = 32, tau = 32 for M > 1 (plain batch
    M*B); DP with B = 100 for M = 1 (plain batch 100)."""
    if workers == 1:
        cfg = Config(algorithm="dp", workers=1, model=model, batch_size=100, steps=steps, eval_every=eval_every,
                     **fields)
        return cfg, 100
    cfg = Config(algorithm="localsgd", workers=workers, tau=32, model=model, batch_size=32, steps=steps,
                 eval_every=eval_every, **fields)
    return cfg, 32 * workers


def timer() -> Callable[[], float]:
    """CPU seconds of this process with one torch thread (robust to other jobs), else wall seconds."""
    return time.process_time if torch.get_num_threads() == 1 else time.perf_counter


@contextmanager
def vmap_only() -> Iterator[None]:
    """Inside the block, the engine runs every model's forward pass through ``torch.vmap`` (none written out)."""
    saved = ensemble.batched
    ensemble.batched = lambda module: None
    try:
        yield
    finally:
        ensemble.batched = saved


def _run_vmapped(cfg: Config) -> None:
    with vmap_only():
        run(cfg, progress=False)


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int, warmup: bool = True) -> dict[str, float]:
    """Median seconds (`timer`) of each contender's call, the contenders alternating repeat by repeat."""
    if warmup:
        for fn in contenders.values():
            fn()
    clock = timer()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def end_to_end(cases: tuple[tuple[str, int, int], ...] = (("mlp", 16, 2000), ("mlp", 64, 1000), ("cnn", 16, 1000),
                                                           ("cnn", 64, 300), ("mlp", 1, 2000), ("cnn", 1, 1000)),
               eval_every: int = 100, repeats: int = 3, out=None, **fields) -> list[dict]:
    """Seconds of ``run(config)`` against `plain_run`, against the same run through ``torch.vmap`` only
    (`vmap_only`) and, for M > 1, against the engine at M = 1 on the batch M*B, per case (model, M, steps);
    ``fields`` go into every Config (e.g. ``compile=True``)."""
    out = out or sys.stdout
    rows = []
    for model, m, steps in cases:
        cfg, batch = workload(model, m, steps, eval_every, **fields)
        contenders = {"run": lambda c=cfg: run(c, progress=False),
                      "plain": lambda b=batch, s=steps, mo=model: plain_run(mo, b, s, eval_every),
                      "run_vmap": lambda c=cfg: _run_vmapped(c)}
        if m > 1:
            single = dataclasses.replace(cfg, algorithm="dp", workers=1, batch_size=batch, tau=None)
            contenders["engine_m1"] = lambda c=single: run(c, progress=False)
        wall = interleaved(contenders, repeats)
        row = {"model": model, "workers": m, "batch": cfg.batch_size, "plain_batch": batch, "steps": steps,
               "eval_every": eval_every, "threads": torch.get_num_threads(),
               **{f"{k}_s": round(v, 4) for k, v in wall.items()},
               "run_over_plain": round(wall["run"] / wall["plain"], 3),
               "run_vmap_over_plain": round(wall["run_vmap"] / wall["plain"], 3)}
        if m > 1:
            row["run_over_engine_m1"] = round(wall["run"] / wall["engine_m1"], 3)
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows


def _passes(model: str, m: int, batch_size: int, calls: int) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """``calls`` forward and backward passes of a run's M stacked workers (the engine's own
    `VmapEngine._losses_and_grads` on one minibatch of B per worker) and of the run's model on those M*B
    samples (one ``nn.Module``, mean cross-entropy), as two contenders; each returns its last gradients
    (the stacked ones [M, ...])."""
    import copy

    from grawa_sim.engine.problem import build_problem

    problem = build_problem(Config(algorithm="localsgd", workers=m, tau=32, model=model, batch_size=batch_size))
    engine = problem.engine
    x, y = problem.stream.batch()
    plain = copy.deepcopy(problem.model)  # the workers' starting point
    xs, ys, own = x.reshape(m * batch_size, *x.shape[2:]), y.reshape(-1), list(plain.parameters())

    def ours() -> list[torch.Tensor]:
        for _ in range(calls):
            _, grads = engine._losses_and_grads(engine.params, engine.buffers, x, y)
        return grads

    def theirs() -> list[torch.Tensor]:
        for _ in range(calls):
            grads = torch.autograd.grad(torch.nn.functional.cross_entropy(plain(xs), ys), own)
        return list(grads)

    return {"stacked": ours, "plain": theirs}


def forward_backward(cases: tuple[tuple[str, int], ...] = (("mlp", 16), ("mlp", 64), ("cnn", 16), ("cnn", 64)),
                     batch_size: int = 32, calls: int = 50, repeats: int = 5, out=None) -> list[dict]:
    """Milliseconds of one forward and backward pass of M stacked models against one plain model on the
    batch M*B, per (model, M): what M workers' small products cost against one large one, without data,
    update or bookkeeping (`_passes`)."""
    out = out or sys.stdout
    rows = []
    for model, m in cases:
        spent = interleaved(_passes(model, m, batch_size, calls), repeats)
        row = {"what": "forward_backward", "model": model, "workers": m, "batch": batch_size,
               "stacked_ms": round(1e3 * spent["stacked"] / calls, 4),
               "plain_MB_ms": round(1e3 * spent["plain"] / calls, 4),
               "stacked_over_plain": round(spent["stacked"] / spent["plain"], 3)}
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows


class _Timers:
    """Seconds (`timer`) spent inside chosen methods of classes, collected while a whole run goes on: each
    method is wrapped for the duration of a ``with`` block, and nested parts are told apart by their names."""

    def __init__(self, methods: dict[str, tuple[type, str]]):
        self.methods, self.spent = methods, dict.fromkeys(methods, 0.0)
        self.clock = timer()
        self._saved: list[tuple[type, str, object]] = []

    def _wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[part] += self.clock() - t0

        return timed

    def __enter__(self) -> _Timers:
        for part, (cls, name) in self.methods.items():
            original = cls.__dict__[name]
            self._saved.append((cls, name, original))
            setattr(cls, name, self._wrap(part, original))
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, original in reversed(self._saved):
            setattr(cls, name, original)
        self._saved.clear()


def _ticks_timed(timers: _Timers):
    """Clock.ticks with the time spent computing each tick (between two ``next`` calls' returns) counted."""
    from grawa_sim.engine.clock import Clock

    original = Clock.ticks

    def ticks(self):
        inner = original(self)
        while True:
            t0 = timers.clock()
            tick = next(inner)
            timers.spent["clock"] += timers.clock() - t0
            yield tick

    return original, ticks


def _profile_run(cfg: Config) -> dict[str, float]:
    """Seconds of one ``run(cfg)`` and of its parts, measured inside it (see `step_profile`)."""
    from grawa_sim.data.datasets import TrainingStream
    from grawa_sim.engine import runner
    from grawa_sim.engine.clock import Clock
    from grawa_sim.engine.ensemble import VmapEngine

    timers = _Timers({"step": (VmapEngine, "local_step"), "forward_backward": (VmapEngine, "_losses_and_grads"),
                      "round": (VmapEngine, "communicate"), "data": (TrainingStream, "batch"),
                      "recorder_losses": (Recorder, "add_losses"), "recorder_checks": (Recorder, "check_finite"),
                      "evaluation": (Recorder, "evaluate"), "result": (Recorder, "result")})
    timers.spent["clock"] = 0.0
    original, ticks = _ticks_timed(timers)
    build = runner.build_problem
    runner.build_problem = timers._wrap("build", build)
    timers.spent["build"] = 0.0
    Clock.ticks = ticks
    try:
        with timers:
            t0 = timers.clock()
            run(cfg, progress=False)
            total = timers.clock() - t0
    finally:
        Clock.ticks, runner.build_problem = original, build
    parts = dict(timers.spent)
    parts["update"] = parts.pop("step") - parts["forward_backward"]
    parts["recorder"] = parts.pop("recorder_losses") + parts.pop("recorder_checks")
    parts["evaluation"] += parts.pop("result")
    parts["python_other"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def _profile_plain(model: str, batch: int, steps: int, eval_every: int) -> dict[str, float]:
    """Seconds of `plain_run`'s loop and of its parts (the same loop as `PlainTrainer`, with timers)."""
    clock = timer()
    spent = dict.fromkeys(("build", "data", "forward_backward", "update", "evaluation"), 0.0)
    t0 = clock()
    trainer = PlainTrainer(model, batch)
    spent["build"] = clock() - t0
    marks = [clock()]
    trainer.evaluate()
    spent["evaluation"] += clock() - marks[-1]
    for step in range(1, steps + 1):
        marks = [clock()]
        x, y = trainer._batch()
        marks.append(clock())
        loss = torch.nn.functional.cross_entropy(trainer.model(x), y)
        trainer.optimizer.zero_grad()
        loss.backward()
        marks.append(clock())
        trainer.optimizer.step()
        marks.append(clock())
        for part, (a, b) in zip(("data", "forward_backward", "update"), zip(marks, marks[1:])):
            spent[part] += b - a
        if step % eval_every == 0 or step == steps:
            t1 = clock()
            trainer.evaluate()
            spent["evaluation"] += clock() - t1
    total = clock() - t0
    spent["python_other"] = total - sum(spent.values())
    spent["total"] = total
    return spent


def step_profile(model: str = "mlp", workers: int = 16, steps: int = 400, eval_every: int = 100, repeats: int = 3,
                 out=None) -> dict:
    """Milliseconds per training step of each part of ``run()`` and of the plain loop, measured inside whole
    runs (timers around the run's own methods), the two alternating ``repeats`` times (medians per part)."""
    out = out or sys.stdout
    cfg, batch = workload(model, workers, steps, eval_every)
    run(cfg, progress=False)  # warm-ups (caches, first calls)
    plain_run(model, batch, eval_every, eval_every)
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    for _ in range(repeats):
        for parts, measured in ((ours, _profile_run(cfg)), (theirs, _profile_plain(model, batch, steps, eval_every))):
            for k, v in measured.items():
                parts.setdefault(k, []).append(1e3 * v / steps)
    ours_ms = {k: statistics.median(v) for k, v in ours.items()}
    theirs_ms = {k: statistics.median(v) for k, v in theirs.items()}
    row = {"model": model, "workers": workers, "plain_batch": batch, "steps": steps, "eval_every": eval_every,
           "threads": torch.get_num_threads(), "run_ms_per_step": round(ours_ms.pop("total"), 4),
           "plain_ms_per_step": round(theirs_ms.pop("total"), 4)}
    row["run_over_plain"] = round(row["run_ms_per_step"] / row["plain_ms_per_step"], 3)
    row.update({f"run_{k}_ms": round(v, 4) for k, v in ours_ms.items()})
    row.update({f"plain_{k}_ms": round(v, 4) for k, v in theirs_ms.items()})
    print(json.dumps(row), file=out, flush=True)
    return row
