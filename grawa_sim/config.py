"""Run configuration: one plain dataclass, validated with one-line messages.

`Config` holds what the user asked for and checks it when built; `resolve(config)` fills the
per-algorithm defaults (``pull=None``, ``prox=None``, ``eval_every=None``) and
validates every field, raising ``ValueError("<field>: <why> (got <value>)")``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

from grawa_sim import algorithms
from grawa_sim.core.errors import ConfigError, ConfigWarning

ALGORITHMS = algorithms.names()  # every registered algorithm (grawa_sim/algorithms/__init__.py)
DATASETS = ("mnist1d", "digits", "lstsq", "two_basins", "cifar10", "cifar100")
IMAGE_DATASETS = ("cifar10", "cifar100")
MODELS = ("logistic", "mlp", "cnn", "cnn_bn", "resnet1d", "resnet20", "vgg11", "vgg13", "vgg16", "vgg19", "point")
IMAGE_MODELS = ("resnet20", "vgg11", "vgg13", "vgg16", "vgg19")  # [C, 32, 32] inputs
SIGNAL_MODELS = ("cnn", "cnn_bn", "resnet1d")  # [features] inputs read as 1-D signals
PARTITIONS = ("iid", "iid_fixed", "dirichlet")
LR_SCHEDULES = ("constant", "step", "cosine", "inverse")
DEFAULT_ALPHA = 0.5  # Dirichlet concentration when partition="dirichlet" and alpha is unset
BACKENDS = ("vmap", "loop")
DTYPES = ("float32", "float64")
EXECUTIONS = ("auto", "vmap", "unrolled")
SCHEDULES = ("sync", "async")
LR_DECAY_UNITS = ("steps", "seconds")
MAX_TRAIN_SIZE = 256_000  # the largest MNIST-1D training set generated (grawa_sim/data/mnist1d_cache.MAX_TRAIN)


FIELD_HELP = {
    "algorithm": "one of " + ", ".join(ALGORITHMS),
    "workers": "M, the number of workers",
    "seed": "seed of the initial model, the shards, the minibatches and the clock's draws",
    "tau": "local steps between rounds (default: the algorithm's reference value)",
    "pull": "lambda in [0, 1], pull of a round (default per algorithm)",
    "prox": "p in [0, 1], per-step proximal pull toward the last center (default per algorithm)",
    "lr": "learning rate of the local SGD",
    "momentum": "momentum in [0, 1), Nesterov when > 0",
    "weight_decay": "L2 weight decay of the local SGD",
    "batch_size": "per-worker minibatch B",
    "steps": "local steps per worker",
    "dataset": "one of " + ", ".join(DATASETS),
    "model": "one of " + ", ".join(MODELS),
    "width": "model width: hidden units / first-stage channels (default: the model's standard width)",
    "device": "where to compute: auto (CUDA when available, else the CPU), cpu, cuda or cuda:N; "
              "not part of a run's identity",
    "data_dir": "folder holding cifar-10-batches-py / cifar-100-python (default: $GRAWA_DATA or ./data)",
    "augment": "random crop (4-pixel padding) + horizontal flip per sample (default: on for CIFAR)",
    "partition": "iid (equal random shards dealt afresh every epoch, as the reference's DistributedSampler), "
                 "iid_fixed (equal random shards kept for the whole run) or dirichlet (label-skewed, concentration "
                 "alpha, fixed)",
    "alpha": "Dirichlet concentration of partition='dirichlet' (default 0.5; small: more skew; only with dirichlet)",
    "backend": "vmap (stacked engine) or loop (per-worker reference)",
    "sam": "DP+SAM (dp only)",
    "sam_rho": "radius rho of SAM's ascent step (only with sam=true)",
    "grawa_norm": "GRAWA model score: layer_sum or global",
    "grawa_smoothing": "bias-corrected moving average of GRAWA scores",
    "weighting": "GRAWA's weights: inverse_norm (w_i proportional to 1/n_i, the default) or uniform (w_i = 1/M, "
                 "the control: everything else unchanged; mgrawa / lgrawa only)",
    "outer_lr": "DiLoCo's outer learning rate eta_out > 0 (default 0.7; diloco only)",
    "outer_momentum": "DiLoCo's outer Nesterov momentum mu in [0, 1) (default 0.9; diloco only)",
    "dtype": "float32 or float64",
    "eval_every": "evaluation period in local steps (default: about steps/20, a multiple of tau; "
                  "with a time_budget: every eval_seconds instead)",
    "eval_seconds": "evaluation period in simulated seconds, at the first round past each mark "
                    "(default with a time_budget and no eval_every: time_budget/20)",
    "execution": "auto, vmap or unrolled (stacked forward pass)",
    "bn_recalibration": "batches of 256 to re-estimate BN statistics of the evaluated model (0: average)",
    "schedule": "sync or async",
    "step_time": "simulated seconds per local step (default: FLOPs / device_flops)",
    "device_flops": "simulated device speed in FLOP/s",
    "speeds": "per-worker step-time factors, comma-separated (one per worker; default: all 1, "
              "or drawn with speed_spread)",
    "speed_spread": "sigma of log-normal per-worker speed factors (when speeds is unset)",
    "straggler_prob": "probability that a local step is a straggler",
    "straggler_slowdown": "how many times slower a straggler step is",
    "bandwidth": "network bandwidth in bytes/s (alpha-beta model)",
    "latency": "per-message latency in seconds (alpha-beta model)",
    "time_budget": "stop after this many simulated seconds (default: no budget)",
    "wall_budget": "stop after this many real seconds (default: no budget)",
    "lr_schedule": "constant, step (x lr_decay_factor at lr_decay_at), cosine (to 0 at steps/time_budget) "
                   "or inverse (lr / (1 + t / lr_t0)) (default: step when lr_decay_at is given, else constant)",
    "lr_t0": "time scale t0 of lr_schedule 'inverse', lr / (1 + t / t0), in lr_decay_unit "
             "(default: none; 'inverse' requires it)",
    "lr_decay_at": "comma-separated times at which the step schedule multiplies the lr by lr_decay_factor",
    "lr_decay_factor": "factor of each step decay",
    "lr_decay_unit": "steps or seconds (simulated) for lr_decay_at, warmup and the cosine horizon",
    "warmup": "linear lr warm-up length (in lr_decay_unit), 0 for none",
    "lr_spread": "ratio >= 1 of the largest to the smallest worker's lr: worker i of M trains at "
                 "lr x lr_spread^(i/(M-1) - 1/2), geometric around lr (default: every worker at lr; periodic "
                 "algorithms only)",
    "flatness": "measure lambda_max, trace, Lanczos and eps-sharpness at the end",
    "target_train_loss": "stop at the first evaluation whose train loss (of the evaluated model) is <= this; the "
                         "step and simulated time are recorded (train_loss_reached_step / _time)",
    "target_test_acc": "record the first step and simulated time at which test accuracy reaches this "
                       "(test_acc_reached_step / _time); the run goes on unless stop_at_target_acc",
    "stop_at_target_acc": "stop the run once target_test_acc is reached",
    "train_size": "training samples (default: the data set's own split, 4000 for MNIST-1D): fewer takes the first "
                  "ones; MNIST-1D generates more (up to 256000, cached on disk); the test set is unchanged",
    "validation": "fraction in [0, 1) of the training set held out before sharding (the same samples for every "
                  "seed); > 0 adds val_loss / val_acc to the history (0: none)",
}


@dataclass(frozen=True)
class Config:
    """Everything that defines a run; same config and seed give the same numbers on CPU.

    Simulated time: a local step of worker i takes ``step_time`` (None: the model's
    forward-backward FLOPs on B samples / ``device_flops``) x ``speeds[i]`` (None: all 1, or
    log-normal with sigma ``speed_spread``) x ``straggler_slowdown`` with probability
    ``straggler_prob``; collectives cost alpha = ``latency`` s, beta = 1/``bandwidth`` s/byte.
    A run stops at ``steps``, ``time_budget`` simulated or ``wall_budget`` real seconds.
    The lr follows ``lr_schedule`` (grawa_sim/engine/lr_schedule.py): constant; ``step`` (x ``lr_decay_factor``
    at each of ``lr_decay_at``); or ``cosine`` (to 0 at ``steps``, or at ``time_budget`` when the unit is
    seconds); or ``inverse`` (lr / (1 + t / ``lr_t0``)); all after a linear ``warmup``, times in
    ``lr_decay_unit``. ``None`` picks step when ``lr_decay_at`` is given, else constant. ``lr_spread`` s
    gives worker i of M its own lr, the scheduled one times s^(i/(M-1) - 1/2).

    Data: ``partition`` cuts the training set into per-worker shards (iid, or label-skewed
    Dirichlet(``alpha``)); CIFAR is read from ``data_dir`` and augmented (crop + flip) unless
    ``augment=False``. ``width`` scales the model (tests use tiny nets).

    ``tau``, ``pull`` (lambda, reference c2) and ``prox`` (p, reference p2) default to
    the chosen algorithm's defaults when left as ``None`` (its ``default_tau``, ``default_pull``,
    ``default_prox``, see docs/algorithms.md). DP communicates every step and takes no ``tau``
    (nor ``pull``, ``prox``). Fields only one algorithm reads (``grawa_norm``, ``grawa_smoothing``:
    MGRAWA / LGRAWA) are declared by that algorithm's hyper-parameter class.

    A Config validates itself when it is built (``ConfigError``, a ValueError; ``tau`` > ``steps`` too: no
    round would happen); a field set where it has no effect (``alpha`` without Dirichlet shards, ``tau`` or
    ``pull`` with DP, ...) gives a ``ConfigWarning`` naming it and is left out of the resolved config.
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
    width: int | None = None
    data_dir: str | None = None
    device: str = "auto"
    augment: bool | None = None
    partition: str = "iid"
    alpha: float | None = None
    seed: int = 0
    backend: str = "vmap"
    sam: bool = False
    sam_rho: float = 0.05
    grawa_norm: str = "layer_sum"
    grawa_smoothing: bool = True
    weighting: str | None = None  # GRAWA's weights (None: its default inverse_norm); "uniform" is the control
    outer_lr: float | None = None  # DiLoCo's outer learning rate (None: its default 0.7)
    outer_momentum: float | None = None  # DiLoCo's outer Nesterov momentum (None: its default 0.9)
    dtype: str = "float32"
    eval_every: int | None = None
    eval_seconds: float | None = None
    execution: str = "auto"
    bn_recalibration: int = 10
    # simulated time (grawa_sim/engine/clock.py)
    schedule: str = "sync"
    step_time: float | None = None
    device_flops: float = 1e12
    speeds: tuple[float, ...] | None = None
    speed_spread: float = 0.0
    straggler_prob: float = 0.0
    straggler_slowdown: float = 4.0
    bandwidth: float = 1.25e9
    latency: float = 1e-5
    time_budget: float | None = None
    wall_budget: float | None = None
    lr_schedule: str | None = None
    lr_decay_at: tuple[float, ...] = ()
    lr_decay_factor: float = 0.1
    lr_decay_unit: str = "steps"
    warmup: float = 0.0
    lr_t0: float | None = None  # time scale of lr_schedule "inverse"
    lr_spread: float | None = None  # largest / smallest worker lr (geometric across workers); None: all at lr
    # flatness of the final models (grawa_sim/flatness): lambda_max, trace, Lanczos, eps-sharpness
    flatness: bool = False
    # a held-out part of the training set (grawa_sim/data/datasets.py hold_out), scored as val_loss / val_acc
    validation: float = 0.0
    # targets: stop at the first evaluation whose train loss is <= target_train_loss; record when the test
    # accuracy first reaches target_test_acc (and stop there with stop_at_target_acc)
    target_train_loss: float | None = None
    target_test_acc: float | None = None
    stop_at_target_acc: bool = False
    # training samples (None: the data set's own split; MNIST-1D generates more, grawa_sim/data/mnist1d_cache.py)
    train_size: int | None = None

    def __post_init__(self):
        _check(self)  # a Config that exists is valid (the data-dependent checks wait for runner.validate)


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


def _check_time_fields(c: Config) -> None:
    for field in ("device_flops", "bandwidth", "straggler_slowdown", "latency", "speed_spread", "straggler_prob"):
        _number(field, getattr(c, field))
    for field in ("device_flops", "bandwidth"):
        if getattr(c, field) <= 0:
            _fail(field, "must be > 0", getattr(c, field))
    for field in ("latency", "speed_spread"):
        if getattr(c, field) < 0:
            _fail(field, "must be >= 0", getattr(c, field))
    _unit_interval("straggler_prob", c.straggler_prob)
    if c.straggler_slowdown < 1:
        _fail("straggler_slowdown", "must be >= 1", c.straggler_slowdown)
    for field in ("step_time", "time_budget", "wall_budget"):
        value = getattr(c, field)
        if value is not None:
            _number(field, value)
            if value <= 0:
                _fail(field, "must be > 0 (or left unset)", value)
    if c.speeds is not None:
        if not isinstance(c.speeds, tuple) or len(c.speeds) != c.workers:
            _fail("speeds", f"must give one factor per worker ({c.workers})", c.speeds)
        for v in c.speeds:
            _number("speeds", v)
            if v <= 0:
                _fail("speeds", "every factor must be > 0", c.speeds)
    if not isinstance(c.lr_decay_at, tuple):
        _fail("lr_decay_at", "must be a tuple of increasing times", c.lr_decay_at)
    for v in c.lr_decay_at:
        _number("lr_decay_at", v)
    if list(c.lr_decay_at) != sorted(c.lr_decay_at) or any(v <= 0 for v in c.lr_decay_at):
        _fail("lr_decay_at", "must be positive and increasing", c.lr_decay_at)


def _check_lr_schedule(c: Config) -> str:
    """The resolved lr_schedule; its fields checked."""
    schedule = c.lr_schedule if c.lr_schedule is not None else ("step" if c.lr_decay_at else "constant")
    _choice("lr_schedule", schedule, LR_SCHEDULES)
    if c.lr_decay_at and schedule != "step":
        _fail("lr_decay_at", "is only used by lr_schedule 'step'", c.lr_decay_at)
    _number("lr_decay_factor", c.lr_decay_factor)
    if not 0 < c.lr_decay_factor <= 1:
        _fail("lr_decay_factor", "must lie in (0, 1]", c.lr_decay_factor)
    _number("warmup", c.warmup)
    if c.warmup < 0:
        _fail("warmup", "must be >= 0", c.warmup)
    if schedule == "inverse":
        if c.lr_t0 is None:
            _fail("lr_t0", "lr_schedule 'inverse' needs its time scale t0 > 0", c.lr_t0)
        _number("lr_t0", c.lr_t0)
        if c.lr_t0 <= 0:
            _fail("lr_t0", "must be > 0", c.lr_t0)
    elif c.lr_t0 is not None:
        _fail("lr_t0", "is only used by lr_schedule 'inverse'", c.lr_t0)
    if schedule == "step" and not c.lr_decay_at:
        _fail("lr_decay_at", "lr_schedule 'step' needs decay times", c.lr_decay_at)
    if schedule == "cosine" and c.lr_decay_unit == "seconds" and c.time_budget is None:
        _fail("lr_schedule", "cosine in simulated seconds needs a time_budget (its horizon)", schedule)
    horizon = c.steps if c.lr_decay_unit == "steps" else c.time_budget
    if c.warmup > 0 and horizon is not None and c.warmup >= horizon:
        name = "steps" if c.lr_decay_unit == "steps" else "time_budget"
        _fail("warmup", f"must be shorter than the run ({name} = {horizon})", c.warmup)
    return schedule


def _check_data_fields(c: Config) -> bool:
    """Model/data compatibility, width, partition; returns the resolved ``augment``."""
    images = c.dataset in IMAGE_DATASETS
    if images and c.model in SIGNAL_MODELS:
        _fail("model", "image data takes logistic, mlp, " + ", ".join(IMAGE_MODELS), c.model)
    if not images and c.model in IMAGE_MODELS:
        _fail("model", f"{c.model} needs image data (dataset " + " or ".join(IMAGE_DATASETS) + ")", c.model)
    if (c.dataset == "two_basins") != (c.model == "point"):
        _fail("model", "the two_basins landscape goes with the model point, and point only with two_basins", c.model)
    if c.width is not None:
        _number("width", c.width, integer=True)
        if c.width < 1:
            _fail("width", "must be >= 1 (or left unset)", c.width)
        if c.model in ("logistic", "point"):
            _fail("width", f"the {c.model} model has no width", c.width)
    if c.data_dir is not None and not isinstance(c.data_dir, str):
        _fail("data_dir", "must be a path (string)", c.data_dir)
    _choice("partition", c.partition, PARTITIONS)
    if c.alpha is not None:
        _number("alpha", c.alpha)
        if c.alpha <= 0:
            _fail("alpha", "must be > 0", c.alpha)
    if c.partition == "dirichlet" and c.dataset == "lstsq":
        _fail("partition", "dirichlet shards need class labels (lstsq is a regression)", c.partition)
    augment = images if c.augment is None else c.augment
    if not isinstance(augment, bool):
        _fail("augment", "must be true or false", c.augment)
    if augment and not images:
        _fail("augment", "crop-and-flip augmentation is for image data (" + ", ".join(IMAGE_DATASETS) + ")", augment)
    return augment


def _check(c: Config, warn: bool = True) -> dict:
    """Every check that needs no data; the resolved values of the defaulted fields (see `resolve`).

    A field set where it has no effect (`UNUSED`) gives a ConfigWarning naming it when ``warn``.
    """
    _choice("algorithm", c.algorithm, ALGORITHMS)
    _choice("dataset", c.dataset, DATASETS)
    _choice("model", c.model, MODELS)
    _choice("backend", c.backend, BACKENDS)
    _choice("dtype", c.dtype, DTYPES)
    _choice("execution", c.execution, EXECUTIONS)
    _choice("schedule", c.schedule, SCHEDULES)
    _choice("lr_decay_unit", c.lr_decay_unit, LR_DECAY_UNITS)
    from grawa_sim.core.devices import check_name  # the name only; availability is checked when a run starts

    check_name(c.device)
    kind = algorithms.get(c.algorithm)
    tau = kind.default_tau if c.tau is None else c.tau
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
    for field in ("sam", "flatness"):
        if not isinstance(getattr(c, field), bool):
            _fail(field, "must be true or false", getattr(c, field))
    if c.sam and not kind.takes_sam:
        takers = " / ".join(repr(n) for n, k in algorithms.classes().items() if k.takes_sam)
        _fail("sam", f"SAM is defined for algorithm {takers} only", c.sam)
    _check_algorithm_fields(c)
    if c.dataset == "lstsq" and c.model != "logistic":
        _fail("model", "the lstsq objective takes model 'logistic' (a linear map)", c.model)
    _check_time_fields(c)
    for field in ("target_train_loss", "target_test_acc"):
        if getattr(c, field) is not None:
            _number(field, getattr(c, field))
    if c.target_test_acc is not None and not 0 <= c.target_test_acc <= 1:
        _fail("target_test_acc", "must lie in [0, 1] (an accuracy)", c.target_test_acc)
    if not isinstance(c.stop_at_target_acc, bool):
        _fail("stop_at_target_acc", "must be true or false", c.stop_at_target_acc)
    if c.stop_at_target_acc and c.target_test_acc is None:
        _fail("stop_at_target_acc", "needs a target_test_acc to stop at", c.stop_at_target_acc)
    if c.train_size is not None:
        _number("train_size", c.train_size, integer=True)
        if not 1 <= c.train_size <= MAX_TRAIN_SIZE:
            _fail("train_size", f"must lie in [1, {MAX_TRAIN_SIZE}] (or be left unset)", c.train_size)
    _number("validation", c.validation)
    if not 0.0 <= c.validation < 1.0:
        _fail("validation", "must lie in [0, 1) (a fraction of the training set)", c.validation)
    if c.lr_spread is not None:
        _number("lr_spread", c.lr_spread)
        if not c.lr_spread >= 1:
            _fail("lr_spread", "must be >= 1 (the largest worker lr over the smallest; or left unset)", c.lr_spread)
    lr_schedule = _check_lr_schedule(c)
    augment = _check_data_fields(c)
    _check_unused(c, tau, warn)
    pull = kind.default_pull if c.pull is None else c.pull
    prox = kind.default_prox if c.prox is None else c.prox
    _unit_interval("pull", pull)
    _unit_interval("prox", prox)
    if kind.communicates_every_step and prox != 0:
        _fail("prox", f"{kind.style.label} keeps all workers identical; the proximal pull must be 0", prox)
    eval_every, eval_seconds = c.eval_every, c.eval_seconds
    if eval_seconds is None and eval_every is None and c.time_budget is not None:
        eval_seconds = c.time_budget / 20  # about 20 points over the budget, whatever the step count
        eval_every = c.steps  # the step budget's end only
    if eval_seconds is not None:
        _number("eval_seconds", eval_seconds)
        if not eval_seconds > 0:
            _fail("eval_seconds", "must be > 0", eval_seconds)
        eval_seconds = float(eval_seconds)
    if eval_every is None:  # about 20 evaluations, right after a round (a multiple of tau)
        period = 1 if kind.communicates_every_step else tau
        eval_every = max(1, round(c.steps / 20 / period)) * period
    _number("eval_every", eval_every, integer=True)
    if eval_every < 1:
        _fail("eval_every", "must be >= 1", eval_every)
    alpha = (DEFAULT_ALPHA if c.alpha is None else float(c.alpha)) if c.partition == "dirichlet" else None
    # 1 (or a single worker): every worker at lr, the same run as unset
    lr_spread = None if c.lr_spread in (None, 1) or c.workers < 2 else float(c.lr_spread)
    resolved = dict(tau=tau, pull=float(pull), prox=float(prox), eval_every=eval_every,
                    eval_seconds=eval_seconds, lr_schedule=lr_schedule, augment=augment, alpha=alpha,
                    lr_spread=lr_spread)
    for field in kind.hyper_type.extra_fields():  # the algorithm's own unset fields take its defaults
        if getattr(c, field) is None:
            resolved[field] = kind.hyper_type.extra_default(field)
    for field, _ in unused_fields(c):  # an ignored field is left out: the same run as without it
        resolved[field] = {"tau": kind.default_tau, "pull": kind.default_pull}.get(
            field, Config.__dataclass_fields__[field].default)
    return resolved


def _check_algorithm_fields(c: Config) -> None:
    """Every algorithm-only field that is set is checked by the hyper-parameter class declaring it."""
    for kind in algorithms.classes().values():
        extras = {f: getattr(c, f) for f in kind.hyper_type.extra_fields() if getattr(c, f) is not None}
        if extras:
            kind.hyper_type(pull=0.0, prox=0.0, tau=1, **extras)


# Fields that only some configurations use: (field, is it unused by config c?, why). Setting one where it is
# unused warns (a shared base changed with dataclasses.replace is legitimate); the command line's `run` makes
# an explicit flag of that kind an error; grid() leaves it unset in those combinations (one warning).
UNUSED = (
    ("alpha", lambda c: c.partition != "dirichlet", "is only used by partition 'dirichlet'"),
    ("tau", lambda c: _every_step(c) and c.tau != 1, "DP communicates every step and takes no tau"),
    ("pull", lambda c: _every_step(c) and c.pull != 0, "DP has no rounds to pull in"),
    ("sam_rho", lambda c: not c.sam and c.sam_rho != Config.sam_rho, "is only used with sam=true"),
    ("speed_spread", lambda c: c.speeds is not None and c.speed_spread != 0, "is not used when speeds are given"),
    ("lr_spread", lambda c: _every_step(c) and c.lr_spread != 1, "DP trains one model, at one lr"),
)


def _every_step(c) -> bool:
    return c.algorithm in algorithms.REGISTERED and algorithms.get(c.algorithm).communicates_every_step


def unused_rules() -> tuple:
    """UNUSED plus one rule per algorithm-only field that defaults to None (e.g. DiLoCo's outer_lr):
    unused by every other algorithm; and ``pull`` for the algorithms that take none. (GRAWA's grawa_norm
    and grawa_smoothing have non-None defaults and stay in every run's identity, as they always have.)"""
    owners: dict[str, list[str]] = {}
    for name, kind in algorithms.classes().items():
        for field in kind.hyper_type.extra_fields():
            owners.setdefault(field, []).append(name)
    rules = [(field, lambda c, users=tuple(users): c.algorithm not in users,
              "is only used by algorithm " + " / ".join(repr(u) for u in users))
             for field, users in owners.items() if Config.__dataclass_fields__[field].default is None]
    pull_free = {n: k.default_pull for n, k in algorithms.classes().items()
                 if not k.takes_pull and not k.communicates_every_step}
    if pull_free:
        rules.append(("pull", lambda c: c.algorithm in pull_free and c.pull != pull_free[c.algorithm],
                      "is not used by " + " / ".join(repr(n) for n in pull_free) + " (its workers restart from the "
                      "global model)"))
    return (*UNUSED, *rules)


def unused_fields(c) -> list[tuple[str, str]]:
    """(field, why) for every field that ``c`` (a Config or any object with its fields) sets without effect."""
    return [(field, why) for field, unused, why in unused_rules() if getattr(c, field) is not None and unused(c)]


def _check_unused(c: Config, tau: int, warn: bool) -> None:
    for field, why in unused_fields(c) if warn else ():
        warnings.warn(f"{field}: {why}; ignored (got {getattr(c, field)!r})", ConfigWarning, stacklevel=5)
    if c.algorithm != "dp" and tau > c.steps:
        _fail("tau", f"larger than steps={c.steps}: no round would happen", tau)


def resolve(config: Config) -> Config:
    """Validate ``config`` and return a copy with the per-algorithm defaults filled in."""
    if not isinstance(config, Config):
        raise TypeError(f"expected a grawa_sim.Config, got {type(config).__name__}")
    return dataclasses.replace(config, **_check(config, warn=False))


def check_shard_size(config: Config, train_size: int) -> None:
    """The minibatch must fit in one worker's shard (Dirichlet shards are topped up to one batch); a set
    ``train_size`` that leaves too few samples is named as the cause."""
    shard = train_size // config.workers
    if config.train_size is not None and shard < config.batch_size:
        _fail("train_size", f"too small for M x B = {config.workers} x {config.batch_size} samples"
              + (f" ({train_size} left after the validation split)" if train_size != config.train_size else ""),
              config.train_size)
    if shard < 1:
        _fail("workers", f"more workers than training samples ({train_size})", config.workers)
    if config.batch_size > shard:
        _fail("batch_size", f"larger than a worker's shard of {shard} samples", config.batch_size)


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


NOT_IDENTITY = ("data_dir", "device")  # where the data lives, where the run computes
# Fields added after runs were stored, left out of a run's identity at the value that changes nothing
NEUTRAL = {"validation": 0.0, "weighting": "inverse_norm", "stop_at_target_acc": False}
# Raised when the same configuration computes other numbers, so that stored results are recomputed, not
# reused. 2: IID shards dealt afresh every epoch ("iid"; the fixed shards became "iid_fixed") and a final
# round before the last evaluation of a periodic run that ends between rounds.
ENGINE_REVISION = 2


def run_identity(config: Config) -> dict:
    """The fields that decide a run's numbers: every field but ``data_dir`` and ``device``
    (NOT_IDENTITY), leaving out fields that are unset (None) or at their NEUTRAL value, so that adding
    an optional field keeps the keys of earlier runs; and the ENGINE_REVISION that computed them."""
    fields = {k: v for k, v in to_dict(config).items()
              if k not in NOT_IDENTITY and v is not None and not (k in NEUTRAL and v == NEUTRAL[k])}
    return {**fields, "revision": ENGINE_REVISION}


def digest(value, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``value`` as sorted JSON: a stable file-name key."""
    import hashlib
    import json

    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def from_dict(values: dict) -> Config:
    """Build a Config from a dict (e.g. config.json), rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config field (got {values[unknown[0]]!r})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return Config(**values)
