"""Resumable sweeps: one directory per run, finished runs are reused, never repeated.

Interrupt a sweep at any point and start it again: every run that finished (or diverged) and is
whole on disk is read back from its directory, the interrupted one starts over, nothing is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
import types
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config, ConfigWarning, run_identity, to_dict, unused_rules
from grawa_sim.runner import run, validate
from grawa_sim.storage import (
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
    digest = hashlib.sha1(json.dumps(run_identity(config), sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.algorithm}-M{config.workers}-s{config.seed}-{digest}"


def sweep(configs: Iterable[Config], out: str | os.PathLike, progress: bool | None = None,
          log=None) -> pd.DataFrame:
    """Run every config not already stored whole under ``out/runs/``; return all histories, tagged.

    The returned frame stacks each run's history with its config fields as extra columns
    (``algorithm``, ``seed``, ...), a ``run`` column (the key) and a ``status`` column: ``finished``, or
    ``diverged`` for a run stopped at a non-finite loss (recorded and not retried; its last row is the
    step it diverged at, with NaN metrics). ``out/results.csv`` holds the final row of every run.
    Progress lines go to ``log`` (default: the current sys.stderr). An empty sweep returns an empty frame.
    """
    out = Path(out)
    log = log or sys.stderr
    resolved = [validate(c) for c in configs]  # validate everything before running anything
    if not resolved:
        return pd.DataFrame()
    check_writable(out)
    for name in ("results.csv", "summary.csv", "probe"):  # what killed writes left behind
        remove_stale_temps(out, name)
    remove_stale_temps(out / "runs")
    frames = []
    for i, cfg in enumerate(resolved, 1):
        key = run_key(cfg)
        run_dir = out / "runs" / key
        status = stored_status(run_dir, cfg)
        if status is not None:
            said = "done before" if status == FINISHED else f"diverged before (step {load_status(run_dir)['step']})"
            print(f"[{i}/{len(resolved)}] {key}: {said}, reused", file=log)
        else:
            print(f"[{i}/{len(resolved)}] {key}: running", file=log)
            try:
                save_result(run(cfg, progress=progress), run_dir, overwrite=True)
                status = FINISHED
            except DivergenceError as e:
                print(f"[{i}/{len(resolved)}] {key}: {e}", file=log)
                save_diverged(cfg, e.history, e.step, str(e), run_dir, overwrite=True)
                status = DIVERGED_STATUS
        frames.append(_tagged(run_dir, cfg, key, status))
    histories = pd.concat(frames, ignore_index=True)
    finals = histories.groupby("run", sort=False).tail(1)
    write_csv_atomic(finals, out / "results.csv")
    return histories


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
