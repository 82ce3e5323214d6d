"""Run configuration: one plain dataclass, validated with one-line messages.

`Config` holds what the user asked for; `resolve(config)` fills the
per-algorithm defaults (``pull=None``, ``prox=None``, ``eval_every=None``) and
validates every field, raising ``ValueError("<field>: <why> (got <value>)")``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

ALGORITHMS = ("dp", "localsgd", "easgd", "lsgd", "mgrawa", "lgrawa")
DATASETS = ("mnist1d", "digits", "lstsq")
MODELS = ("logistic", "mlp", "cnn", "cnn_bn")
BACKENDS = ("vmap", "loop")
DTYPES = ("float32", "float64")
GRAWA_NORMS = ("layer_sum", "global")
EXECUTIONS = ("auto", "vmap", "unrolled")

# The reference code's sample.sh: EASGD tau 4, c2 0.1, p2 0; LSGD tau 4, c2 0.1, p2 0.1;
# GRAWA tau 32, c2 0.5, p2 0.01. LocalSGD (no sample) takes GRAWA's tau with plain averaging.
DEFAULT_TAU = {"dp": 1, "localsgd": 32, "easgd": 4, "lsgd": 4, "mgrawa": 32, "lgrawa": 32}
DEFAULT_PULL = {"dp": 0.0, "localsgd": 1.0, "easgd": 0.1, "lsgd": 0.1, "mgrawa": 0.5, "lgrawa": 0.5}
DEFAULT_PROX = {"dp": 0.0, "localsgd": 0.0, "easgd": 0.0, "lsgd": 0.1, "mgrawa": 0.01, "lgrawa": 0.01}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run; same config and seed give the same numbers on CPU.

    ``tau``, ``pull`` (lambda, reference c2) and ``prox`` (p, reference p2) default to
    the reference samples of the chosen algorithm when left as ``None`` (DEFAULT_*).
    DP communicates every step and ignores ``tau``.
    """

    algorithm: str = "mgrawa"
    workers: int = 4
    tau: int | None = None
    pull: float | None = None
    prox: float | None = None
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 32
    steps: int = 1000
    dataset: str = "mnist1d"
    model: str = "mlp"
    seed: int = 0
    backend: str = "vmap"
    sam: bool = False
    sam_rho: float = 0.05
    grawa_norm: str = "layer_sum"
    grawa_smoothing: bool = True
    dtype: str = "float32"
    eval_every: int | None = None
    execution: str = "auto"
    bn_recalibration: int = 10


class ConfigError(ValueError):
    """Invalid user input; the message reads '<field>: <why> (got <value>)'."""


def _fail(field: str, why: str, value: object) -> None:
    raise ConfigError(f"{field}: {why} (got {value!r})")


def _choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(field, "must be one of " + ", ".join(allowed), value)


def _number(field: str, value: object, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        _fail(field, "must be an integer" if integer else "must be a number", value)
    if not math.isfinite(value):
        _fail(field, "must be a finite number", value)


def _unit_interval(field: str, value: float) -> None:
    _number(field, value)
    if not 0.0 <= value <= 1.0:
        _fail(field, "must lie in [0, 1]", value)


def resolve(config: Config) -> Config:
    """Validate ``config`` and return a copy with the per-algorithm defaults filled in."""
    if not isinstance(config, Config):
        raise TypeError(f"expected a grawa_sim.Config, got {type(config).__name__}")
    c = config
    _choice("algorithm", c.algorithm, ALGORITHMS)
    _choice("dataset", c.dataset, DATASETS)
    _choice("model", c.model, MODELS)
    _choice("backend", c.backend, BACKENDS)
    _choice("dtype", c.dtype, DTYPES)
    _choice("grawa_norm", c.grawa_norm, GRAWA_NORMS)
    _choice("execution", c.execution, EXECUTIONS)
    tau = DEFAULT_TAU[c.algorithm] if c.tau is None else c.tau
    for field, value in (("workers", c.workers), ("tau", tau), ("batch_size", c.batch_size),
                         ("steps", c.steps), ("seed", c.seed), ("bn_recalibration", c.bn_recalibration)):
        _number(field, value, integer=True)
    if c.bn_recalibration < 0:
        _fail("bn_recalibration", "must be >= 0 (batches; 0 averages the workers' statistics)", c.bn_recalibration)
    if c.workers < 1:
        _fail("workers", "must be >= 1", c.workers)
    if tau < 1:
        _fail("tau", "must be >= 1", tau)
    if c.batch_size < 1:
        _fail("batch_size", "must be >= 1", c.batch_size)
    if c.steps < 1:
        _fail("steps", "must be >= 1", c.steps)
    if c.seed < 0:
        _fail("seed", "must be >= 0", c.seed)
    for field in ("lr", "weight_decay", "sam_rho"):
        _number(field, getattr(c, field))
        if getattr(c, field) < 0:
            _fail(field, "must be >= 0", getattr(c, field))
    _number("momentum", c.momentum)
    if not 0.0 <= c.momentum < 1.0:
        _fail("momentum", "must lie in [0, 1)", c.momentum)
    for field in ("sam", "grawa_smoothing"):
        if not isinstance(getattr(c, field), bool):
            _fail(field, "must be true or false", getattr(c, field))
    if c.sam and c.algorithm != "dp":
        _fail("sam", "SAM is defined for algorithm 'dp' only", c.sam)
    if c.dataset == "lstsq" and c.model != "logistic":
        _fail("model", "the lstsq objective takes model 'logistic' (a linear map)", c.model)
    pull = DEFAULT_PULL[c.algorithm] if c.pull is None else c.pull
    prox = DEFAULT_PROX[c.algorithm] if c.prox is None else c.prox
    _unit_interval("pull", pull)
    _unit_interval("prox", prox)
    if c.algorithm == "dp" and prox != 0:
        _fail("prox", "DP keeps all workers identical; the proximal pull must be 0", prox)
    eval_every = c.eval_every
    if eval_every is None:  # about 20 evaluations, right after a round (a multiple of tau)
        period = 1 if c.algorithm == "dp" else tau
        eval_every = max(1, round(c.steps / 20 / period)) * period
    _number("eval_every", eval_every, integer=True)
    if eval_every < 1:
        _fail("eval_every", "must be >= 1", eval_every)
    return dataclasses.replace(c, tau=tau, pull=float(pull), prox=float(prox), eval_every=eval_every)


def check_shard_size(config: Config, train_size: int) -> None:
    """The minibatch must fit in one worker's IID shard."""
    shard = train_size // config.workers
    if shard < 1:
        _fail("workers", f"more workers than training samples ({train_size})", config.workers)
    if config.batch_size > shard:
        _fail("batch_size", f"larger than a worker's shard of {shard} samples", config.batch_size)


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(values: dict) -> Config:
    """Build a Config from a dict (e.g. config.json), rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config field (got {values[unknown[0]]!r})")
    return Config(**values)
