"""Resumable sweeps: one directory per run, finished runs are reused, never repeated.

Interrupt a sweep at any point and start it again: every run that finished is
read back from its directory, the interrupted one starts over, nothing is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from grawa_sim.config import Config, run_identity, to_dict
from grawa_sim.runner import run, validate
from grawa_sim.storage import is_complete, load_history, save_result, write_csv_atomic


def grid(base: Config, **axes: Sequence) -> list[Config]:
    """Every combination of the given field values on top of ``base``: grid(c, algorithm=[...], seed=[0, 1])."""
    names = list(axes)
    return [dataclasses.replace(base, **dict(zip(names, values))) for values in itertools.product(*axes.values())]


def run_key(config: Config) -> str:
    """A readable, stable directory name for a resolved config (where the data lives is not part of it)."""
    digest = hashlib.sha1(json.dumps(run_identity(config), sort_keys=True).encode()).hexdigest()[:10]
    return f"{config.algorithm}-M{config.workers}-s{config.seed}-{digest}"


def sweep(configs: Iterable[Config], out: str | os.PathLike, progress: bool | None = None,
          log=None) -> pd.DataFrame:
    """Run every config not already finished under ``out/runs/``; return all histories, tagged.

    The returned frame stacks each run's history with its config fields as
    extra columns (``algorithm``, ``seed``, ...) and a ``run`` column (the key).
    ``out/results.csv`` holds the final row of every run. Progress lines go to ``log``
    (default: the current sys.stderr). An empty sweep returns an empty frame.
    """
    out = Path(out)
    log = log or sys.stderr
    resolved = [validate(c) for c in configs]  # validate everything before running anything
    if not resolved:
        return pd.DataFrame()
    frames = []
    for i, cfg in enumerate(resolved, 1):
        key = run_key(cfg)
        run_dir = out / "runs" / key
        if is_complete(run_dir, cfg):
            print(f"[{i}/{len(resolved)}] {key}: done before, reused", file=log)
        else:
            print(f"[{i}/{len(resolved)}] {key}: running", file=log)
            save_result(run(cfg, progress=progress), run_dir)
        history = load_history(run_dir)
        for field, value in to_dict(cfg).items():
            history[field] = ",".join(map(str, value)) if isinstance(value, tuple) else value
        history["run"] = key
        frames.append(history)
    histories = pd.concat(frames, ignore_index=True)
    finals = histories.groupby("run", sort=False).tail(1)
    write_csv_atomic(finals, out / "results.csv")
    return histories
