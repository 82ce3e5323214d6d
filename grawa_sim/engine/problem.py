"""The pieces of a run, built in one place for `run()`, the benchmarks and the flatness commands.

``validate(config)`` makes every check a run makes before training (once per configuration and
process: a validated configuration is remembered); ``model_and_data(config)`` gives the freshly
initialised model template and the data set; ``build_problem(config)`` bundles them with the
engine, the simulated clock and the batch stream, and owns the training step that `run()` and
the benchmarks share: ``step()`` (one local step) and ``round()`` (one communication round).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import threading
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from grawa_sim import algorithms
from grawa_sim.algorithms import RoundInfo
from grawa_sim.config import Config, ConfigError, ConfigWarning, check_shard_size, resolve
from grawa_sim.core.collectives import StackedAxis
from grawa_sim.core.devices import resolve_device
from grawa_sim.data.datasets import Dataset, TrainingStream, hold_out, load, validation_size
from grawa_sim.engine.clock import Clock, ClockModel
from grawa_sim.engine.ensemble import VmapEngine, per_worker
from grawa_sim.engine.reference_loop import LoopEngine
from grawa_sim.models import registry as models
from grawa_sim.models.losses import per_sample_loss

_GLOBAL_RNG = threading.RLock()  # model initialisation seeds torch's global generator (shards run in threads)


class OutOfMemory(MemoryError):
    """The run does not fit in memory; the message is one line naming M and the model."""


@contextlib.contextmanager
def memory_errors(config: Config, device: torch.device | str = "cpu"):
    """Turn an allocator failure (CPU or CUDA) into one OutOfMemory line naming M and the model."""
    try:
        yield
    except (MemoryError, RuntimeError) as e:
        text = str(e)
        if isinstance(e, OutOfMemory) or not (isinstance(e, (MemoryError, torch.OutOfMemoryError))
                                              or "can't allocate memory" in text or "out of memory" in text.lower()):
            raise
        asked = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]?i?B)", text)
        size = re.search(r"allocate (\d+) bytes", text)
        amount = asked.group(1) if asked else (f"{int(size.group(1)) / 2**30:.1f} GiB" if size else None)
        width = f" width {config.width}" if config.width is not None else ""
        raise OutOfMemory(
            f"memory: M={config.workers} workers of model {config.model}{width} ({config.dtype}) do not fit in "
            f"{'GPU' if torch.device(device).type == 'cuda' else 'CPU'} memory"
            + (f" (an allocation of {amount} failed)" if amount else "")
            + "; use fewer workers, a smaller model or batch") from None


_VALIDATED: dict[Config, Config] = {}  # a configuration (as given, resolved, or validated) -> its validated form


def validate(config: Config) -> Config:
    """Every check run() makes before training; the resolved config, ``step_time`` derived when unset.

    Loads the data set (for the shard size) and, without a ``step_time``, counts the FLOPs of one
    worker's forward-backward pass on B samples: step_time = FLOPs / device_flops. A configuration
    is checked once per process (a sweep validates every run up front and run() finds it done);
    its warnings are given every time.
    """
    cfg = resolve(config)
    done = _VALIDATED.get(cfg)
    if done is None:
        done = _check(cfg)
        _VALIDATED[cfg] = _VALIDATED[done] = done
    _warn_cosine_cut_short(done)
    return done


def _check(cfg: Config) -> Config:
    resolve_device(cfg.device)  # a CUDA device where there is none: an error before any work
    data = load(cfg.dataset, data_dir=cfg.data_dir, train_size=cfg.train_size)
    check_shard_size(cfg, len(data.y_train) - validation_size(len(data.y_train), cfg.validation))
    if cfg.step_time is None:
        with memory_errors(cfg):
            flops = step_flops(cfg.model, data.input_shape, data.outputs, cfg.batch_size, data.classes, cfg.width)
        cfg = dataclasses.replace(cfg, step_time=flops / cfg.device_flops)
    return cfg


def _warn_cosine_cut_short(cfg: Config) -> None:
    """A cosine schedule over ``steps`` that the time budget surely ends first never anneals to 0: say so."""
    if cfg.lr_schedule != "cosine" or cfg.lr_decay_unit != "steps" or cfg.time_budget is None:
        return
    fastest = cfg.step_time * min(worker_speeds(cfg))  # no worker steps faster than this
    if cfg.steps * fastest > cfg.time_budget:
        warnings.warn(f"lr_schedule: the cosine anneals to 0 at steps={cfg.steps}, but time_budget="
                      f"{cfg.time_budget:g} s ends the run by step {int(cfg.time_budget / fastest)}; set "
                      f"lr_decay_unit='seconds' to anneal over the budget", ConfigWarning, stacklevel=3)


@functools.lru_cache(maxsize=64)
def step_flops(model: str, input_shape: tuple[int, ...], outputs: int, batch_size: int, classes: int,
               width: int | None = None) -> int:
    """FLOPs of one forward-backward pass of ``model`` on ``batch_size`` samples (torch's FLOP counter, whose
    import takes about a second: the count is kept in the user's cache folder, keyed by its arguments and
    the torch version)."""
    from grawa_sim.core.cache import memo_number

    key = json.dumps([model, list(input_shape), outputs, batch_size, classes, width, torch.__version__])
    return memo_number("step-flops", key, lambda: _count_flops(model, input_shape, outputs, batch_size, classes,
                                                                  width))


def _count_flops(model: str, input_shape: tuple[int, ...], outputs: int, batch_size: int, classes: int,
                 width: int | None) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = models.build(model, input_shape, outputs, width)
    x = torch.zeros(batch_size, *input_shape)
    y = torch.zeros(batch_size, dtype=torch.long) if classes else torch.zeros(batch_size)
    with FlopCounterMode(display=False) as counter:
        per_sample_loss(classes)(net(x), y).mean().backward()
    return max(1, counter.get_total_flops())


def worker_speeds(cfg: Config) -> tuple[float, ...]:
    """Per-worker step-time factors: ``speeds``, else all 1, or log-normal(``speed_spread``) drawn from the seed."""
    speeds = cfg.speeds
    if speeds is None:
        speeds = (1.0,) * cfg.workers
        if cfg.speed_spread > 0:
            generator = torch.Generator().manual_seed(cfg.seed * 31 + 7)
            draw = torch.randn(cfg.workers, generator=generator, dtype=torch.float64)
            speeds = tuple(float(v) for v in torch.exp(cfg.speed_spread * draw))
    return speeds


def dtype_of(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def model_and_data(config: Config, device: torch.device | str = "cpu") -> tuple[nn.Module, Dataset]:
    """The freshly initialised model (seeded by config.seed, in config.dtype) and the data set, on ``device``
    (``config.validation`` of the training set held out as ``x_val`` / ``y_val``)."""
    cfg = resolve(config)
    data = hold_out(load(cfg.dataset, dtype_of(cfg.dtype), cfg.data_dir, cfg.train_size), cfg.validation)
    if torch.device(device).type != "cpu":
        data = dataclasses.replace(data, **{f: getattr(data, f).to(device)
                                            for f in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val")
                                            if getattr(data, f) is not None})
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # the global generator: one thread at a time
        torch.manual_seed(cfg.seed)
        model = models.build(cfg.model, data.input_shape, data.outputs, cfg.width).to(dtype_of(cfg.dtype))
    return model.to(device), data


def build_engine(cfg: Config, model: nn.Module, data: Dataset, axis: StackedAxis | None = None,
                 runs: Sequence[Config] | None = None):
    """The stacked engine (``backend="vmap"``) or the per-worker loop reference (``"loop"``) of a run.

    ``runs``: the configurations of the runs sharing one grouped ensemble (`run_many`); their lr,
    momentum, weight decay and prox become one value per worker row."""
    hyper = algorithms.get(cfg.algorithm).hyper_type.from_config(cfg)
    loss = per_sample_loss(data.classes, data.loss)
    sam_rho = cfg.sam_rho if cfg.sam else None
    axis = axis or StackedAxis(cfg.workers)
    if cfg.backend == "loop":
        if axis.local_workers != cfg.workers:
            raise ConfigError(f"backend: the loop backend runs in one process only (got {cfg.backend!r})")
        return LoopEngine(model, cfg.algorithm, cfg.workers, hyper, loss, cfg.lr, cfg.momentum,
                          cfg.weight_decay, sam_rho)
    runs = runs or [cfg]
    like = next(model.parameters())
    lr, momentum, weight_decay, prox = (per_worker([getattr(c, f) for c in runs], cfg.workers, like)
                                        for f in ("lr", "momentum", "weight_decay", "prox"))
    algorithm = algorithms.build(cfg.algorithm, hyper)
    return VmapEngine(model, algorithm, axis, loss, lr, momentum, weight_decay, prox, cfg.tau, sam_rho,
                      cfg.execution)


def build_clock(cfg: Config, model: nn.Module) -> Clock:
    """The simulated clock of a run: its step-time model, schedule and per-round collectives."""
    costs = ClockModel(workers=cfg.workers, step_time=cfg.step_time, speeds=worker_speeds(cfg),
                       straggler_prob=cfg.straggler_prob, straggler_slowdown=cfg.straggler_slowdown,
                       bandwidth=cfg.bandwidth, latency=cfg.latency, passes_per_step=2 if cfg.sam else 1,
                       seed=cfg.seed)
    parameters = sum(p.numel() for p in model.parameters())
    kind = algorithms.get(cfg.algorithm)
    collectives = kind.collectives(parameters, len(list(model.parameters())))
    return Clock(costs, cfg.tau, kind.communicates_every_step, cfg.schedule == "async", collectives,
                 probe=kind.needs_probe)


@dataclasses.dataclass
class Problem:
    """A validated run's model template, data, engine, simulated clock and batch stream on ``axis``."""

    config: Config
    model: nn.Module
    data: Dataset
    axis: StackedAxis
    engine: VmapEngine | LoopEngine
    clock: Clock
    stream: TrainingStream

    @property
    def communicates_every_step(self) -> bool:
        return algorithms.get(self.config.algorithm).communicates_every_step

    def step(self, stepping: torch.Tensor | None = None) -> torch.Tensor | None:
        """One local step of this process's workers (of those where ``stepping[local]`` is True): the
        per-worker minibatch losses, or None when none of them steps. The batch is drawn for every
        worker either way, so that every rank's (and shard's) stream stays in step."""
        if stepping is None or bool(stepping.all()):
            return self.engine.local_step(*self.stream.batch())
        x, y = self.stream.batch(stepping)
        workers = torch.nonzero(stepping).flatten()
        return self.engine.local_step(x, y, workers=workers) if len(workers) else None

    def round(self) -> RoundInfo | None:
        """One communication round (its probe batch drawn when the algorithm needs one); None for an
        algorithm that communicates inside every step."""
        if self.communicates_every_step:
            return None
        needs_probe = algorithms.get(self.config.algorithm).needs_probe
        return self.engine.communicate(self.stream.probe() if needs_probe else None)


def build_problem(config: Config, device: torch.device | str = "cpu", axis: StackedAxis | None = None) -> Problem:
    """Everything a run trains with, from a configuration (validated here unless it already was)."""
    cfg = validate(config)
    axis = axis or StackedAxis(cfg.workers)
    model, data = model_and_data(cfg, device)
    engine = build_engine(cfg, model, data, axis)
    return Problem(cfg, model, data, axis, engine, build_clock(cfg, model),
                   TrainingStream(cfg, data, axis.local_slice))
