"""Resumable sweeps: one directory per run, finished runs are reused, never repeated.

Interrupt a sweep at any point and start it again: every run that finished (or diverged) and is
whole on disk is read back from its directory, the interrupted one starts over, nothing is lost.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import time
import types
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config, ConfigError, ConfigWarning, digest, run_identity, to_dict, unused_rules
from grawa_sim.core.folders import claim, holder, release
from grawa_sim.core.processes import process_pool
from grawa_sim.engine.problem import validate
from grawa_sim.engine.run_many import batch_key, run_many
from grawa_sim.engine.runner import run
from grawa_sim.results.storage import (
    DIVERGED_STATUS,
    FINISHED,
    check_writable,
    load_history,
    load_status,
    remove_stale_temps,
    save_diverged,
    save_result,
    stored_status,
    write_csv_atomic,
    write_error,
)


def grid(base: Config, **axes: Sequence) -> list[Config]:
    """Every combination of the given field values on top of ``base``: grid(c, algorithm=[...], seed=[0, 1]).

    A field that some combinations do not use (``tau`` for DP, ``alpha`` for IID shards, ...) is left
    unset in those, with one ConfigWarning naming it; combinations that then coincide appear once.
    """
    names = list(axes)
    configs, dropped = [], {}
    for values in itertools.product(*axes.values()):
        fields = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(Config)}, **dict(zip(names, values))}
        view = types.SimpleNamespace(**fields)
        for field, unused, why in unused_rules():
            if fields[field] is not None and unused(view):
                fields[field] = Config.__dataclass_fields__[field].default
                dropped.setdefault(field, [why, 0])[1] += 1
        configs.append(Config(**fields))
    for field, (why, count) in dropped.items():
        warnings.warn(f"{field}: {why}; left unset in {count} combination(s) of the grid", ConfigWarning,
                      stacklevel=2)
    return list(dict.fromkeys(configs)) if dropped else configs


def run_key(config: Config) -> str:
    """A readable, stable directory name for a resolved config (where the data lives is not part of it)."""
    return f"{config.algorithm}-M{config.workers}-s{config.seed}-{digest(run_identity(config))}"


def sweep(configs: Iterable[Config], out: str | os.PathLike, progress: bool | None = None,
          log=None, jobs: int = 1, batch_runs: int | str = 1) -> pd.DataFrame:
    """Run every config not already stored whole under ``out/runs/``; return all histories, tagged.

    The returned frame stacks each run's history with its config fields as extra columns
    (``algorithm``, ``seed``, ...), a ``run`` column (the key) and a ``status`` column: ``finished``, or
    ``diverged`` for a run stopped at a non-finite loss (recorded and not retried; its last row is the
    step it diverged at, with NaN metrics). ``out/results.csv`` holds the final row of every run.
    Progress lines go to ``log`` (default: the current sys.stderr). An empty sweep returns an empty frame.

    ``jobs``: processes computing runs at once (one torch thread each; they end with this process, even when
    it is killed). A run is computed under a lock (``out/locks/<key>``, recording the pid, host and process
    start time), so two jobs, or two sweeps on one folder, never compute the same run: the second waits for
    the first (one line ``waiting for <key> held by pid N on <host> since <time>``, repeated every
    WAIT_REPORT_EVERY seconds) and reuses its result; a lock whose process is gone (killed, or its pid now
    another process's) is taken over. A lock that cannot be written is one StorageError line. The processes
    are spawned, so a script calling this with ``jobs > 1`` needs the ``if __name__ == "__main__":`` guard.

    ``batch_runs``: up to this many compatible runs (`grawa_sim.engine.run_many.batch_key`: the same
    setting apart from seed, lr, momentum, weight decay and prox) train together as one stacked
    ensemble; ``"auto"``: as many as keep the ensemble within `AUTO_BATCH_WORKERS` workers; 1 (the
    default): one run at a time. A batch whose run diverges is computed again run by run, so each
    run's own outcome is stored. In float64 a batched run equals the run alone to 1e-10; in float32
    the larger kernels may round differently (the folder's run is whichever was computed first).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1 (got {jobs!r})")
    if batch_runs != "auto" and (not isinstance(batch_runs, int) or isinstance(batch_runs, bool) or batch_runs < 1):
        raise ConfigError(f"batch_runs: must be 'auto' or an integer >= 1 (got {batch_runs!r})")
    out = Path(out)
    log = log or sys.stderr
    resolved = [validate(c) for c in configs]  # validate everything before running anything
    if not resolved:
        return pd.DataFrame()
    check_writable(out)
    for name in ("results.csv", "summary.csv", "probe"):  # what killed writes left behind
        remove_stale_temps(out, name)
    remove_stale_temps(out / "runs")
    statuses: dict[str, str] = {}
    pending, queued = [], set()
    for i, cfg in enumerate(resolved, 1):
        key = run_key(cfg)
        run_dir = out / "runs" / key
        status = stored_status(run_dir, cfg)
        if status is not None:
            said = "done before" if status == FINISHED else f"diverged before (step {load_status(run_dir)['step']})"
            print(f"[{i}/{len(resolved)}] {key}: {said}, reused", file=log)
            statuses[key] = status
        elif key not in queued:
            pending.append((i, cfg))
            queued.add(key)

    def done(i: int, cfg: Config, status: str, message: str | None) -> None:
        statuses[run_key(cfg)] = status
        if message:
            print(f"[{i}/{len(resolved)}] {run_key(cfg)}: {message}", file=log)

    units = batches(pending, batch_runs)
    if jobs > 1 and len(units) > 1:
        from concurrent.futures import as_completed

        with process_pool(min(jobs, len(units))) as pool:
            futures = {pool.submit(compute_runs, [cfg for _, cfg in unit], str(out), False): unit for unit in units}
            for i, cfg in pending:
                print(f"[{i}/{len(resolved)}] {run_key(cfg)}: queued", file=log)
            for future in as_completed(futures):
                for (i, cfg), (status, message) in zip(futures[future], future.result()):
                    done(i, cfg, status, message or "finished")
    else:
        for unit in units:
            together = f" (one ensemble of {len(unit)} runs)" if len(unit) > 1 else ""
            for i, cfg in unit:
                print(f"[{i}/{len(resolved)}] {run_key(cfg)}: running{together}", file=log)
            for (i, cfg), outcome in zip(unit, compute_runs([cfg for _, cfg in unit], out, progress, log)):
                done(i, cfg, *outcome)
    frames = [_tagged(out / "runs" / run_key(cfg), cfg, run_key(cfg), statuses[run_key(cfg)]) for cfg in resolved]
    histories = pd.concat(frames, ignore_index=True)
    finals = histories.groupby("run", sort=False).tail(1)
    write_csv_atomic(finals, out / "results.csv")
    return histories


AUTO_BATCH_WORKERS = 128  # batch_runs="auto": runs per ensemble while R * M stays within this


def batches(pending: list[tuple[int, Config]], batch_runs: int | str) -> list[list[tuple[int, Config]]]:
    """The pending runs cut into units computed together: compatible runs (equal `batch_key`) in
    groups of at most ``batch_runs`` (``"auto"``: R * M <= AUTO_BATCH_WORKERS), in first-seen order."""
    if batch_runs == 1:
        return [[item] for item in pending]
    groups: dict[object, list[tuple[int, Config]]] = {}
    for n, (i, cfg) in enumerate(pending):
        key = batch_key(cfg)
        groups.setdefault(("alone", n) if key is None else key, []).append((i, cfg))
    units = []
    for group in groups.values():
        size = max(1, AUTO_BATCH_WORKERS // group[0][1].workers) if batch_runs == "auto" else batch_runs
        units += [group[k:k + size] for k in range(0, len(group), size)]
    return sorted(units, key=lambda unit: unit[0][0])


WAIT_REPORT_EVERY = 600.0  # seconds between two "waiting for <run> held by ..." lines


def _claim(lock: Path) -> bool:
    """`claim`, with a failed write (disk full, a folder remounted read-only) as one StorageError line."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return claim(lock)
    except OSError as e:
        raise write_error(lock.parent, e) from None


def compute_runs(cfgs: list[Config], out: str | os.PathLike, progress: bool | None = None, log=None
                 ) -> list[tuple[str, str | None]]:
    """Compute and store runs together (`run_many`) under their locks; one run, runs held by another
    process, or a batch that diverged: run by run (`compute_run`). Returns each run's (status, line)."""
    if len(cfgs) == 1:
        return [compute_run(cfgs[0], out, progress, log)]
    runs = [Path(out) / "runs" / run_key(cfg) for cfg in cfgs]
    locks = [Path(out) / "locks" / run_key(cfg) for cfg in cfgs]
    outcomes: list[tuple[str, str | None] | None] = [None] * len(cfgs)
    held = []
    try:
        for lock in locks:
            if not _claim(lock):
                break
            held.append(lock)
        if len(held) == len(cfgs):
            statuses = [stored_status(run_dir, cfg) for run_dir, cfg in zip(runs, cfgs)]
            outcomes = [None if status is None else (status, None) for status in statuses]
            todo = [k for k, status in enumerate(statuses) if status is None]
            try:
                results = run_many([cfgs[k] for k in todo], progress=progress) if todo else []
            except DivergenceError:
                results = []  # run by run below, so that each run's own outcome is stored
            for k, result in zip(todo, results):
                save_result(result, runs[k], overwrite=True)
                outcomes[k] = (FINISHED, None)
    finally:
        for lock in held:
            release(lock)
    return [outcome or compute_run(cfg, out, progress, log) for outcome, cfg in zip(outcomes, cfgs)]


def compute_run(cfg: Config, out: str | os.PathLike, progress: bool | None = None, log=None
                ) -> tuple[str, str | None]:
    """Compute one run of a sweep under its lock and store it; returns (status, a line to report or None).
    If another live process holds the lock, wait for it, saying so on ``log`` (default sys.stderr) at once and
    every WAIT_REPORT_EVERY seconds, and reuse what it stored (or compute it if it stored nothing, e.g. when
    it was killed). A lock whose holder is gone (killed, a reused pid, a reboot) is taken over."""
    key = run_key(cfg)
    run_dir, lock = Path(out) / "runs" / key, Path(out) / "locks" / key
    waited, told = False, -math.inf
    while not _claim(lock):
        waited = True
        found = holder(lock)
        if found is not None and time.monotonic() - told >= WAIT_REPORT_EVERY:
            elsewhere = "" if found.on_this_host() else f" (another machine: remove {lock} if that process is gone)"
            print(f"waiting for {key} held by {found.describe()}{elsewhere}", file=log or sys.stderr, flush=True)
            told = time.monotonic()
        time.sleep(0.5)
    try:
        status = stored_status(run_dir, cfg)
        if status is not None:
            return status, "computed by another process, reused" if waited else None
        try:
            save_result(run(cfg, progress=progress), run_dir, overwrite=True)
            return FINISHED, None
        except DivergenceError as e:
            save_diverged(cfg, e.history, e.step, str(e), run_dir, overwrite=True)
            return DIVERGED_STATUS, str(e)
    finally:
        release(lock)


def _tagged(run_dir: Path, cfg: Config, key: str, status: str) -> pd.DataFrame:
    """A stored run's history with its config fields, run key and status; a diverged run ends with a row
    at the step it diverged at (NaN metrics)."""
    history = load_history(run_dir)
    if status == DIVERGED_STATUS:
        stop = pd.DataFrame([{"step": load_status(run_dir)["step"]}], columns=history.columns)
        history = pd.concat([history.astype({"step": float}), stop], ignore_index=True) if len(history) else stop
    for field, value in to_dict(cfg).items():
        history[field] = ",".join(map(str, value)) if isinstance(value, tuple) else value
    history["run"] = key
    history["status"] = status
    return history
