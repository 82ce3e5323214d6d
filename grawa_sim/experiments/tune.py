"""Equal-budget hyperparameter tuning with Optuna: one study per algorithm, the same number of trials each.

Every trial trains one run of ``base`` with the trial's hyperparameters and a held-out part of the
training set (``Config.validation`` > 0) and is scored on the **final** validation accuracy
(``val_acc`` at the last step; the test set plays no part in tuning). The search space of an
algorithm is read from the algorithm registry (`search_space`):

    lr      ~ log-uniform [LR_RANGE]                      every algorithm
    tau     in TAUS (powers of 2, at most ``steps``)      algorithms with rounds (not DP)
    pull    ~ log-uniform [PULL_RANGE]                    algorithms whose round takes lambda
    prox    ~ log-uniform [PROX_RANGE]                    algorithms with a proximal pull (default p > 0)
    sam_rho ~ log-uniform [RHO_RANGE]                     with SAM ("dp+sam")

The sampler is TPE seeded with ``seed``; the validation accuracy at every evaluation is reported to a
MedianPruner, and a run that diverges is pruned with the reason in the trial's ``pruned_reason``.
Studies live in any Optuna RDB storage (default SQLite; a read-only study file is one error line, and
reading creates nothing). Rerunning asks only for the missing trials (COMPLETE + PRUNED count): a trial
left RUNNING by a dead process of this machine (its pid gone, or now another process's), or FAIL by an
interrupted one, is run again with the same parameters; a RUNNING trial whose process cannot be checked
(no pid, another host) is reported with its age and retired after ``stale_after`` seconds. Several
processes may share one study: a trial is claimed under a lock (a file next to a SQLite database), so
together they run exactly N.

Each trial is scored on ``seeds_per_trial`` seeds (default 3): the mean final validation accuracy, a
diverged seed scored at chance (1 / classes) and named in the trial's ``diverged`` attribute; the first
seed runs alone and feeds the pruner, the others train as one ensemble. A study runs ``trials`` trials,
by default 8 per searched hyperparameter (`study_trials`); TPE draws its first 10 at random. With a
``time_budget`` in the base setting every trial trains for the same simulated seconds, so τ, the rounds
and GRAWA's probe cost what they cost. GRAWA's uniform twins (``mgrawa+uniform``) are tuned as methods
of their own, with the same budget.

Then `best_configs` picks each method's best trial and `final_comparison` reruns it with fresh seeds
(the same for every method) on the full training set: test accuracy and failures per method, and the
declared `final_family` (GRAWA − twin, − DP, − LocalSGD) paired by seed with Holm's correction;
`importances` gives fANOVA parameter importances.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from grawa_sim import algorithms
from grawa_sim.algorithms import COMPARED
from grawa_sim.config import ALGORITHMS, Config, ConfigError, ConfigWarning, run_identity
from grawa_sim.core.folders import Holder, reason

LR_RANGE = (1e-3, 0.5)
TAUS = (1, 2, 4, 8, 16, 32, 64)
PULL_RANGE = (0.01, 1.0)
PROX_RANGE = (1e-3, 0.3)
RHO_RANGE = (0.01, 0.5)
DEFAULT_METHODS = (*COMPARED, "mgrawa+uniform")  # what `tune` tunes when none is named; one twin serves both GRAWAs
SEARCHED = ("lr", "tau", "pull", "prox", "sam_rho")  # the Config fields a study may search
# tuned as their own methods: DP with SAM (rho searched) and GRAWA's uniform-weight twins (the control)
VARIANTS = {"dp+sam": ("dp", True, None), "mgrawa+uniform": ("mgrawa", False, "uniform"),
            "lgrawa+uniform": ("lgrawa", False, "uniform")}
TRIALS_PER_DIMENSION = 8  # the default trials of a study: this many per searched hyperparameter
SEEDS_PER_TRIAL = 3  # a trial's score: the mean final val_acc over this many seeds (a diverged one at chance)
VALIDATION = 0.2  # the held-out fraction when the base setting has none
FINAL_SEED_OFFSET = 1000  # final runs use seeds seed + 1000, + 1001, ...: never a tuning seed
COUNTED = ("COMPLETE", "PRUNED")
STALE_AFTER = 24 * 3600.0  # seconds after which a RUNNING trial that cannot be checked is retired


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: log-uniform in [low, high], or one of ``choices``."""

    low: float | None = None
    high: float | None = None
    choices: tuple | None = None

    def suggest(self, trial, name: str):
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        return trial.suggest_float(name, self.low, self.high, log=True)


def method_names() -> tuple[str, ...]:
    """What ``algorithms`` may name: every registered algorithm and the variants (dp+sam)."""
    return (*ALGORITHMS, *VARIANTS)


def _method(name: str) -> tuple[str, bool, str | None]:
    """(registered algorithm, SAM on?, weighting) of a method name."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm: must be one of {', '.join(method_names())} (got {name!r})")
    return name, False, None


def method_config(base: Config, method: str, params: dict | None = None) -> Config:
    """``base`` as ``method`` with ``params``; a field ``method`` does not use (tau, pull for DP) is left unset."""
    from grawa_sim.results.sweep import grid

    algorithm, sam, weighting = _method(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        one = dataclasses.replace(base, algorithm=algorithm, sam=base.sam or sam, **(params or {}),
                                  **({"weighting": weighting} if weighting else {}))
        return grid(one, algorithm=[algorithm])[0]


def search_space(method: str, base: Config, fixed: Collection[str] = ()) -> dict[str, Param]:
    """The hyperparameters searched for ``method`` on ``base`` (see the module docstring), less ``fixed``."""
    algorithm, sam, _ = _method(method)
    kind = algorithms.get(algorithm)
    space = {"lr": Param(*LR_RANGE)}
    if not kind.communicates_every_step:
        space["tau"] = Param(choices=tuple(t for t in TAUS if t <= base.steps))
        if kind.takes_pull:
            space["pull"] = Param(*PULL_RANGE)
        if kind.default_prox > 0:
            space["prox"] = Param(*PROX_RANGE)
    if (sam or base.sam) and kind.takes_sam:
        space["sam_rho"] = Param(*RHO_RANGE)
    return {name: p for name, p in space.items() if name not in fixed}


def study_name(prefix: str, method: str) -> str:
    return f"{prefix}-{method}"


def _optuna():
    """The optuna module, or one ConfigError line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("tune: needs the package optuna (pip install 'grawa-sim[tune]') (got none)") from None
    return optuna


def open_storage(url: str, create: bool = True):
    """Optuna's RDB storage at ``url``; one ConfigError line if it fails.

    ``create`` (tuning): a SQLite file and its folder are created when missing, and the file must be writable
    (``storage: cannot write the study <path>: read-only``). Without it (reading studies) nothing is created:
    a SQLite file that does not exist is an error, and a read-only one can be read."""
    optuna = _optuna()
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"storage: must be an RDB URL such as sqlite:///results/tune.db (got {url!r})")
    kwargs = {}
    path = _sqlite_path(url)
    if path is not None:
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"storage: cannot create the folder of {url} ({e.strerror}) (got {url!r})") from None
            _check_writable(path, url)
        elif not path.is_file():
            raise ConfigError(f"storage: no database at {path} (got {url!r})")
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # processes sharing the file wait their turn
    try:
        with _claim_lock(url, create):  # two processes creating one SQLite file's tables would collide
            return optuna.storages.RDBStorage(url, **kwargs)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's many errors: a bad URL, a missing driver, a locked file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"storage: cannot open it: {first} (got {url!r})") from None


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix):]) if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:") else None


def _not_writable(path: Path, url: str, error: OSError | None = None) -> ConfigError:
    denied = error is None or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    return ConfigError(f"storage: cannot write the study {path}: {'read-only' if denied else reason(error)} "
                       f"(got {url!r})")


def _check_writable(path: Path, url: str) -> None:
    """A SQLite study file that tuning can write: the file (when it exists) opens for writing and its folder
    takes new files (SQLite's journal); else one ConfigError line, before any trial (a read-only file would
    fail at the first commit with a long traceback)."""
    try:
        os.close(os.open(path, os.O_RDWR))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _not_writable(path, url, e) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _not_writable(path, url)


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """A write the storage refuses while tuning (the file made read-only, a full disk): one ConfigError line."""
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except StorageInternalError as e:
        cause = e.__cause__ or e.__context__ or e
        text = (str(getattr(cause, "orig", None) or cause).strip().splitlines() or [type(cause).__name__])[0]
        why = "read-only" if "readonly" in text.replace("-", "").replace(" ", "").lower() else text
        raise ConfigError(f"storage: cannot write the study {_sqlite_path(url) or url}: {why} (got {url!r})") from None


@contextlib.contextmanager
def _claim_lock(url: str, create: bool = True) -> Iterator[None]:
    """Held while a process creates the tables or a study, or counts the trials and claims the next one: a
    lock file next to a SQLite database (processes of this machine); other databases rely on their own
    transactions and on the surplus check in `_claim`. A reader (``create`` False) shares the lock if the
    file exists and creates nothing."""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    import fcntl

    lock = Path(str(path) + ".lock")
    try:
        handle = open(lock, "a") if create else open(lock)
    except FileNotFoundError:
        if create:
            raise _not_writable(path, url) from None
        yield  # nothing is being created: there is no lock file to share
        return
    except OSError as e:
        raise _not_writable(path, url, e) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX if create else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check(trial) -> str | None:
    """Whether a RUNNING trial's process still runs: None if it does, "dead" if it is gone (or its pid now names
    another process), else why it cannot be checked from here (no pid recorded, or another host)."""
    pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
    if pid is None:
        return "no pid recorded"
    if host != socket.gethostname():
        return f"pid {pid} on {host}"
    started, boot = trial.user_attrs.get("started"), trial.user_attrs.get("boot")
    return None if Holder(pid, host, started, boot).alive() else "dead"


def _age(trial) -> float:
    """Seconds since ``trial`` started (Optuna records local times)."""
    start = trial.datetime_start
    return 0.0 if start is None else max(0.0, (datetime.datetime.now() - start).total_seconds())


def duration(seconds: float) -> str:
    """A short duration: 45 s, 12 min, 3.2 h, 2.5 d."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _retry(study, trial, why: str) -> None:
    """Mark ``trial`` failed (if it is not yet) and queue its parameters again, once."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:  # a finished trial's attributes can no longer change
        study._storage.set_trial_user_attr(trial._trial_id, "failed_because", why)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def _claim(study, trials: int, url: str, stale_after: float = STALE_AFTER):
    """The next trial of this process, or None when the study holds ``trials`` finished or running ones.

    A RUNNING trial whose process is gone is failed and queued again; so is one whose process cannot be
    checked from here (no pid recorded, another host) once it is older than ``stale_after`` seconds."""
    from optuna.trial import TrialState

    with _claim_lock(url):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            why = _check(t)
            if why == "dead":
                _retry(study, t, f"its process {t.user_attrs['pid']} died")
            elif why is not None and _age(t) > stale_after:
                _retry(study, t, f"retired after {duration(_age(t))} RUNNING with {why} (stale_after "
                                 f"{duration(stale_after)})")
        retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.number not in retried and not t.user_attrs.get("surplus"):
                _retry(study, t, "it failed or was interrupted")
        active = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        if len(study.get_trials(deepcopy=False, states=active)) >= trials:
            return None
        trial = study.ask()
        me = Holder.me()
        for key, value in (("host", me.host), ("pid", me.pid), ("started", me.started), ("boot", me.boot)):
            trial.set_user_attr(key, value)
        ahead = [t for t in study.get_trials(deepcopy=False, states=active) if t.number <= trial.number]
        if len(ahead) > trials:  # another machine claimed the last one at the same moment
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return None
        return trial


def _report(storage: str, methods: Sequence[str], trials: int, prefix: str, stale_after: float, log) -> None:
    """After tuning: one line per RUNNING trial whose process cannot be checked (with its age), and one line
    per study that holds fewer than its trials finished, saying why."""
    import optuna
    from optuna.trial import TrialState

    store = open_storage(storage, create=False)
    for m in methods:
        study = optuna.load_study(study_name=study_name(prefix, m), storage=store)
        target = study_trials(trials, study.user_attrs.get("setting", {}).get("space", {"?": None}))
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        unchecked = [(t, why) for t in running if (why := _check(t)) not in (None, "dead")]
        for t, why in unchecked:
            print(f"[{m} trial {t.number}] RUNNING for {duration(_age(t))} with {why}: its process cannot be "
                  f"checked from here; it counts as running until stale_after ({duration(stale_after)}) retires "
                  f"it", file=log)
        if done < target:
            live = len(running) - len(unchecked)
            why = [f"{live} still RUNNING in live processes" if live else "",
                   f"{len(unchecked)} RUNNING where their processes cannot be checked (retire them with a shorter "
                   f"--stale-after, or run tune again once they finish)" if unchecked else ""]
            left = "; ".join(w for w in why if w) or "run tune again for the rest"
            print(f"{study.study_name}: {done} of {target} trials finished; {left}", file=log)


def _pruner_period(base: Config) -> float | None:
    """Under a time budget, the simulated seconds between the pruner's reports (the evaluation period,
    ``eval_seconds`` or a twentieth of the budget); None when the budget counts steps."""
    if base.time_budget is None:
        return None
    return base.eval_seconds or base.time_budget / 20


def _pruner_key(base: Config, row: dict) -> int:
    """Where a trial reports an evaluation to the pruner, which compares trials at equal keys: its local step;
    under a time budget the index of the evaluation period it falls in (trials of different τ evaluate at
    different steps but at the same simulated times)."""
    period = _pruner_period(base)
    if period is None:
        return int(row["step"])
    return int(math.floor(row["sim_time"] / period + 1e-9))


def _pruner_warmup(base: Config) -> int:
    """The pruner's keys before it may stop a trial: a quarter of the run (of its steps, or of the budget's
    evaluation periods)."""
    period = _pruner_period(base)
    if period is None:
        return max(1, base.steps // 4)
    return max(1, round(base.time_budget / 4 / period))


def _open_study(storage, name: str, seed: int, base: Config, space: dict[str, Param], seeds_per_trial: int = 1):
    """Create or load study ``name``; a study tuned on another base setting, space or number of seeds per trial
    is an error."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=_pruner_warmup(base))
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    setting = {"base": {k: list(v) if isinstance(v, tuple) else v for k, v in run_identity(base).items()},
               "space": {k: dataclasses.asdict(p) | {"choices": list(p.choices or [])} for k, p in space.items()}}
    stored = study.user_attrs.get("setting")
    if stored is None:
        study.set_user_attr("setting", setting)
        study.set_user_attr("seeds_per_trial", seeds_per_trial)
    elif study.user_attrs.get("seeds_per_trial", 1) != seeds_per_trial:
        raise ConfigError(f"seeds_per_trial: {name} scored each trial on {study.user_attrs.get('seeds_per_trial', 1)} "
                          f"seed(s); give another --study or the same number (got {seeds_per_trial})")
    elif stored != setting:
        keys = sorted(set(stored["base"]) | set(setting["base"]))
        field = next((k for k in keys if stored["base"].get(k) != setting["base"].get(k)), None)
        if field is None:
            raise ConfigError(f"study: {name} was tuned on another search space ({', '.join(stored['space'])}); "
                              f"give another --study or fix the same fields (got {', '.join(space)})")
        raise ConfigError(f"study: {name} was tuned on another setting ({field}: {stored['base'].get(field)!r} "
                          f"there); give another --study or the same setting (got {setting['base'].get(field)!r})")
    return study


def _chance(config: Config) -> float:
    """The accuracy of guessing one class: 1 / classes of ``config``'s data set (0 for a regression)."""
    from grawa_sim.data.datasets import load

    classes = load(config.dataset, data_dir=config.data_dir).classes
    return 1.0 / classes if classes else 0.0


def _seed_scores(configs: list[Config], on_row=None) -> tuple[list[float], list[str]]:
    """The final val_acc of every config, a diverged one at chance, and the divergence messages. The first
    config runs alone with ``on_row`` (the pruner watches it); the others train as one ensemble where they
    can (`run_many`), else, or when one of them diverges, one by one."""
    from grawa_sim.algorithms.grawa import DivergenceError
    from grawa_sim.engine.run_many import batch_key, run_many
    from grawa_sim.engine.runner import run

    scores, diverged = [], []

    def alone(config: Config, **kwargs) -> None:
        try:
            scores.append(float(run(config, progress=False, **kwargs).final["val_acc"]))
        except DivergenceError as e:
            scores.append(_chance(config))
            diverged.append(f"seed {config.seed}: {e}")

    alone(configs[0], on_row=on_row)
    rest = configs[1:]
    if len(rest) > 1 and batch_key(rest[0]) is not None:
        try:
            scores += [float(r.final["val_acc"]) for r in run_many(rest, progress=False)]
            return scores, diverged
        except DivergenceError:
            pass  # the ensemble lost every run with the diverged one: compute them one by one
    for config in rest:
        alone(config)
    return scores, diverged


def _objective(trial, method: str, base: Config, space: dict[str, Param], seeds_per_trial: int = 1) -> float:
    """Train the trial's configuration on ``seeds_per_trial`` seeds (seed, seed + 1, ...); report the first
    seed's val_acc at every evaluation (the pruner may stop the trial there); return the mean final val_acc
    over the seeds, a diverged seed scored at chance (its message kept in the trial's ``diverged``)."""
    import optuna

    params = {name: p.suggest(trial, name) for name, p in space.items()}
    config = method_config(base, method, params)
    reported = set()

    def on_row(row: dict) -> None:
        key = _pruner_key(base, row)
        if int(row["step"]) == 0 or key in reported:
            return
        reported.add(key)
        trial.report(row["val_acc"], key)
        if trial.should_prune():
            where = f"step {key}" if _pruner_period(base) is None else f"{row['sim_time']:.3g} simulated s"
            trial.set_user_attr("pruned_reason", f"median pruner at {where} (val_acc {row['val_acc']:.4f})")
            raise optuna.TrialPruned(trial.user_attrs["pruned_reason"])

    configs = [dataclasses.replace(config, seed=config.seed + k) for k in range(seeds_per_trial)]
    scores, diverged = _seed_scores(configs, on_row)
    trial.set_user_attr("seed_scores", scores)
    if diverged:
        trial.set_user_attr("diverged", diverged)
    return sum(scores) / len(scores)


def _describe(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def study_trials(trials: int | None, space: Collection[str]) -> int:
    """The trials a study runs: ``trials``, or TRIALS_PER_DIMENSION per searched hyperparameter when None; one
    when nothing is searched (its trials would all be the same run)."""
    if not space:
        return 1
    return trials if trials is not None else TRIALS_PER_DIMENSION * len(space)


def tune(base: Config, methods: Sequence[str], trials: int | None, storage: str, prefix: str = "tune", seed: int = 0,
         fixed: Collection[str] = (), log=None, stale_after: float = STALE_AFTER, report: bool = True,
         seeds_per_trial: int = SEEDS_PER_TRIAL) -> pd.DataFrame:
    """Run the missing trials of one study per method (``<prefix>-<method>``), ``trials`` per study (None:
    `study_trials`, 8 per searched hyperparameter), each scored on ``seeds_per_trial`` seeds (`_objective`).

    ``base``: the setting every trial trains (its ``validation`` > 0, else VALIDATION is held out);
    ``fixed``: searched fields kept at ``base``'s value (a method left with nothing to search gets one trial,
    with a ConfigWarning: its trials would all be the same run). Trials go on until the study holds
    ``trials`` COMPLETE or PRUNED ones, whichever process ran them. A RUNNING trial whose process cannot be
    checked (no pid recorded, another host) counts as running until it is ``stale_after`` seconds old, then it
    is failed and run again. Returns `trials_table` of the studies; one line per trial on ``log`` (default
    sys.stderr) and, with ``report``, a line for each unchecked trial and for a study left short (`_report`).
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    log = log or sys.stderr
    base, methods, spaces = _checked(base, methods, trials, fixed, stale_after, seeds_per_trial)
    store = open_storage(storage)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with _storage_errors(storage):
            for m in methods:
                target = study_trials(trials, spaces[m])
                with _claim_lock(storage):
                    study = _open_study(store, study_name(prefix, m), seed, base, spaces[m], seeds_per_trial)
                while (trial := _claim(study, target, storage, stale_after)) is not None:
                    # a sampler seeded by (seed, trial number): the same trials for the same seed, and a
                    # resumed or shared study draws new parameters rather than repeating the first ones
                    study.sampler = optuna.samplers.TPESampler(seed=seed * 100_003 + trial.number)
                    started = time.perf_counter()
                    head = f"[{m} trial {trial.number}]"
                    try:
                        value = _objective(trial, m, base, spaces[m], seeds_per_trial)
                    except optuna.TrialPruned as e:
                        study.tell(trial, state=TrialState.PRUNED)
                        print(f"{head} {_describe(trial.params)}: pruned, {e} "
                              f"({time.perf_counter() - started:.1f} s)", file=log)
                        continue
                    except BaseException:
                        study.tell(trial, state=TrialState.FAIL)  # asked again by the next run, same parameters
                        raise
                    study.tell(trial, value)
                    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
                    failed = len(trial.user_attrs.get("diverged", []))
                    print(f"{head} {_describe(trial.params)}: val_acc {value:.4f}"
                          f"{f' over {seeds_per_trial} seeds' if seeds_per_trial > 1 else ''}"
                          f"{f' ({failed} diverged, scored at chance)' if failed else ''} "
                          f"({time.perf_counter() - started:.1f} s; {done}/{target} done)", file=log)
            if report:
                _report(storage, methods, trials, prefix, stale_after, log)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return trials_table(storage, methods, prefix)


def _quiet_tune(*args, **kwargs) -> None:
    """`tune` in a worker of `tune_in_processes`: the parent has said the warnings and reports at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        tune(*args, **kwargs, report=False)


def _checked(base: Config, methods: Sequence[str], trials: int | None, fixed: Collection[str],
             stale_after: float = STALE_AFTER, seeds_per_trial: int = 1):
    """(base with its validation split, the distinct methods, their search spaces), every method's
    setting validated (with its largest tau) before any training; bad input: a ConfigError naming it.
    A method with nothing left to search is a ConfigWarning: it gets one trial, not ``trials`` copies."""
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError(f"algorithm: name at least one of {', '.join(method_names())} (got {methods!r})")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ConfigError(f"trials: must be an integer >= 1, or None for 8 per searched hyperparameter "
                          f"(got {trials!r})")
    if isinstance(seeds_per_trial, bool) or not isinstance(seeds_per_trial, int) or seeds_per_trial < 1:
        raise ConfigError(f"seeds_per_trial: must be an integer >= 1 (got {seeds_per_trial!r})")
    check_stale_after(stale_after)
    unknown = sorted(set(fixed) - set(SEARCHED))
    if unknown:
        raise ConfigError(f"fixed: each must be one of {', '.join(SEARCHED)} (got {unknown[0]!r})")
    base = with_validation(base)
    spaces = {m: search_space(m, base, fixed) for m in methods}
    from grawa_sim.engine.runner import validate

    for m in methods:
        validate(method_config(base, m, {n: p.choices[-1] for n, p in spaces[m].items() if p.choices}))
        if not spaces[m] and trials is not None and trials > 1:
            given = ", ".join(sorted(search_space(m, base)))
            warnings.warn(f"fixed: nothing left to search for {m} (every hyperparameter it takes is fixed: {given}); "
                          f"its {trials} trials would be the same run, so it gets one", ConfigWarning, stacklevel=3)
    return base, methods, spaces


def check_stale_after(stale_after: float) -> None:
    """``stale_after`` is a number of seconds >= 0; else one ConfigError line."""
    if isinstance(stale_after, bool) or not isinstance(stale_after, (int, float)) or not stale_after >= 0:
        raise ConfigError(f"stale_after: must be a duration >= 0 such as 90s, 30m, 24h or 2d (got {stale_after!r})")


def tune_in_processes(jobs: int, base: Config, methods: Sequence[str], trials: int | None, storage: str,
                      prefix: str = "tune", seed: int = 0, fixed: Collection[str] = (),
                      stale_after: float = STALE_AFTER, log=None, seeds_per_trial: int = SEEDS_PER_TRIAL
                      ) -> pd.DataFrame:
    """`tune` in ``jobs`` processes at once (one torch thread each, ending with this process however it ends),
    all working on the same studies through ``storage``: each claims the next missing trial, so together
    they run ``trials`` per method; then the report of `tune` (on ``log``, default sys.stderr)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1 (got {jobs!r})")
    if jobs == 1:
        return tune(base, methods, trials, storage, prefix, seed=seed, fixed=fixed, log=log, stale_after=stale_after,
                    seeds_per_trial=seeds_per_trial)
    from grawa_sim.core.processes import process_pool

    _checked(base, methods, trials, fixed, stale_after, seeds_per_trial)  # bad input: one error, before any process
    open_storage(storage)
    with process_pool(jobs) as pool:
        futures = [pool.submit(_quiet_tune, base, methods, trials, storage, prefix, seed, fixed,
                               stale_after=stale_after, seeds_per_trial=seeds_per_trial) for _ in range(jobs)]
        for future in futures:
            future.result()
    with _storage_errors(storage):
        _report(storage, methods, trials, prefix, stale_after, log or sys.stderr)
    return trials_table(storage, methods, prefix)


def comparison_folder(results: str | os.PathLike, prefix: str, storage: str, default_storage: str) -> Path:
    """Where the final comparison of the studies ``prefix`` in ``storage`` is stored: ``<results>/tune/<prefix>``
    for the default storage, ``<results>/tune/<prefix>-<8 hex digits of the storage>`` for any other, so that
    two databases holding studies of the same name never share (and overwrite) one results.csv."""
    folder = Path(results) / "tune"
    if _canonical(storage) == _canonical(default_storage):
        return folder / prefix
    return folder / f"{prefix}-{hashlib.sha1(_canonical(storage).encode()).hexdigest()[:8]}"


def _canonical(url: str) -> str:
    path = _sqlite_path(url)
    return url if path is None else f"sqlite:///{path.resolve()}"


def with_validation(base: Config) -> Config:
    """``base`` with a held-out set: its own ``validation``, else VALIDATION."""
    return base if base.validation > 0 else dataclasses.replace(base, validation=VALIDATION)


def _studies(storage: str, methods: Sequence[str], prefix: str):
    import optuna

    path = _sqlite_path(storage) if isinstance(storage, str) else None
    if path is not None and not path.is_file() and methods:  # reading creates no database (and no lock file)
        raise ConfigError(f"study: no study {study_name(prefix, methods[0])} in the storage (got {storage!r})")
    store = open_storage(storage, create=False)
    names = set(optuna.get_all_study_names(store))
    for m in methods:
        if study_name(prefix, m) not in names:
            raise ConfigError(f"study: no study {study_name(prefix, m)} in the storage (got {storage!r})")
        yield m, optuna.load_study(study_name=study_name(prefix, m), storage=store)


def trials_table(storage: str, methods: Sequence[str], prefix: str = "tune") -> pd.DataFrame:
    """One row per counted trial (COMPLETE or PRUNED) of every study: method, number, state, value
    (final val_acc; NaN when pruned), pruned_reason and the parameters."""
    rows = []
    for m, study in _studies(storage, methods, prefix):
        for t in study.get_trials(deepcopy=False):
            if t.state.name in COUNTED:
                rows.append({"algorithm": m, "number": t.number, "state": t.state.name.lower(),
                             "value": t.value if t.state.name == "COMPLETE" else math.nan,
                             "pruned_reason": t.user_attrs.get("pruned_reason"), **t.params})
    return pd.DataFrame(rows)


def best_configs(base: Config, methods: Sequence[str], storage: str, prefix: str = "tune") -> dict[str, Config]:
    """method -> ``base`` with the parameters of the study's best complete trial (highest final val_acc)."""
    base = with_validation(base)
    configs = {}
    for m, study in _studies(storage, methods, prefix):
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not complete:
            raise ConfigError(f"study: {study.study_name} has no complete trial (all pruned or none run) "
                              f"(got {len(study.trials)} trials)")
        best = max(complete, key=lambda t: (t.value, -t.number))
        configs[m] = method_config(base, m, best.params)
    return configs


def summary(storage: str, methods: Sequence[str], prefix: str = "tune") -> pd.DataFrame:
    """Per method: complete and pruned trials, the best final val_acc and its parameters."""
    table = trials_table(storage, methods, prefix)
    rows = []
    for m in methods:
        own = table[table["algorithm"] == m] if len(table) else table
        complete = own[own["state"] == "complete"] if len(own) else own
        best = complete.loc[complete["value"].idxmax()] if len(complete) else None
        searched = [c for c in SEARCHED if len(own) and c in own and own[c].notna().any()]
        rows.append({"algorithm": m, "complete": len(complete), "pruned": len(own) - len(complete),
                     "best_val_acc": best["value"] if best is not None else math.nan,
                     "best_params": _describe({c: best[c] for c in searched}) if best is not None else ""})
    return pd.DataFrame(rows).set_index("algorithm")


@dataclass(frozen=True)
class FinalComparison:
    """The tuned methods rerun on fresh seeds: ``methods`` (per method: finished / total seeds, the divergence
    rate with its Wilson interval, test accuracy mean ± 95 % half-width over the finished seeds) and
    ``contrasts`` (the declared `final_family`, paired by seed, a diverged seed scored at chance, Holm)."""

    methods: pd.DataFrame
    contrasts: pd.DataFrame


def final_family(methods: Sequence[str]):
    """The tuned comparison's declared contrasts: for each GRAWA, − its twin (its own, else the other GRAWA's:
    with equal weights the two rules coincide), − DP and − LocalSGD; reference LocalSGD (else the first
    method that is not a GRAWA)."""
    from grawa_sim.experiments.protocol import GRAWA, Family

    twins = [m for m in methods if m.endswith("+uniform")]
    contrasts = []
    for grawa in (m for m in methods if m in GRAWA):
        twin = f"{grawa}+uniform" if f"{grawa}+uniform" in methods else (twins[0] if twins else None)
        contrasts += [(grawa, other) for other in (twin, "dp", "localsgd") if other in methods]
    others = [m for m in methods if m not in GRAWA and not m.endswith("+uniform")]
    reference = "localsgd" if "localsgd" in methods else (others[0] if others else methods[0])
    return Family("tuned", reference, tuple(contrasts))


def final_comparison(configs: dict[str, Config], out: str | os.PathLike, seeds: int = 5, jobs: int = 1,
                     log=None) -> FinalComparison:
    """Rerun every method's config with ``seeds`` fresh seeds (seed + 1000, ...; the same seeds for every
    method, so the comparison is paired) on the full training set (``validation`` 0): per method the final
    test accuracy and the failures (`protocol.outcomes`), and the declared `final_family` (`protocol.compare`:
    paired by seed, a diverged seed at chance, Holm). Runs are cached under ``out`` (a sweep of ``jobs``
    processes; a method's seeds train as one stacked ensemble)."""
    from grawa_sim.experiments import protocol
    from grawa_sim.results.sweep import sweep

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise ConfigError(f"final_seeds: must be an integer >= 2 (an interval needs two) (got {seeds!r})")
    runs = [dataclasses.replace(c, validation=0.0, seed=c.seed + FINAL_SEED_OFFSET + k)
            for c in configs.values() for k in range(seeds)]
    histories = sweep(runs, out, progress=False, log=log, jobs=jobs, batch_runs="auto")
    table = protocol.outcomes(histories).rename(columns={"test_acc_mean_finished": "test_acc_mean",
                                                         "test_acc_ci95_finished": "test_acc_ci95"})
    table = table.reindex([m for m in configs if m in table.index])
    contrasts = protocol.compare(histories, final_family(list(configs)))
    return FinalComparison(table, contrasts)


def importances(storage: str, methods: Sequence[str], prefix: str = "tune", seed: int = 0) -> pd.DataFrame:
    """fANOVA importance of every searched parameter per method (rows: algorithm, param, importance; the
    importances of a method sum to 1). A study with fewer than two complete trials is left out."""
    import optuna

    rows = []
    for m, study in _studies(storage, methods, prefix):
        if sum(t.state.name == "COMPLETE" for t in study.trials) < 2:
            continue
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        for param, value in optuna.importance.get_param_importances(study, evaluator=evaluator).items():
            rows.append({"algorithm": m, "param": param, "importance": float(value)})
    return pd.DataFrame(rows, columns=["algorithm", "param", "importance"])


def quick_base() -> Config:
    """The quick mode's setting (seconds): MNIST-1D, an MLP of width 16, M = 4, 32 steps (``algorithm`` is
    replaced by each tuned one; DP's, which takes no tau, keeps any ``steps`` valid)."""
    return Config(algorithm="dp", dataset="mnist1d", model="mlp", width=16, workers=4, batch_size=32, steps=32,
                  eval_every=8, validation=VALIDATION)
