"""Writing run results atomically: a run directory is complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from grawa_sim.config import Config, ConfigError, from_dict, run_identity, to_dict
from grawa_sim.flatness.measure import FLATNESS_CSV
from grawa_sim.runner import Result

HISTORY, CONFIG, WEIGHTS, PARAMS = "history.csv", "config.json", "weights.csv", "params.pt"
FLATNESS = FLATNESS_CSV


def save_result(result: Result, out: str | os.PathLike) -> Path:
    """Write history.csv, weights.csv, params.pt (flatness.csv) and config.json into ``out`` (replacing those).

    params.pt holds the final tensors: {"workers", "buffers", "evaluated", "center"}.

    The files are first written to a temporary directory beside ``out`` and
    then moved in; config.json is moved last, so its presence marks a complete run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: exists and is not a directory (got '{out}')")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result.history.to_csv(tmp / HISTORY, index=False)
        result.weights.to_csv(tmp / WEIGHTS, index=False)
        torch.save({"workers": result.workers, "buffers": result.buffers,
                    "evaluated": result.evaluated, "center": result.center}, tmp / PARAMS)
        names = [HISTORY, WEIGHTS, PARAMS]
        if result.flatness is not None:
            result.flatness.to_csv(tmp / FLATNESS, index=False)
            names.append(FLATNESS)
        (tmp / CONFIG).write_text(json.dumps(to_dict(result.config), indent=2) + "\n")
        out.mkdir(exist_ok=True)
        (out / CONFIG).unlink(missing_ok=True)
        for name in (*names, CONFIG):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_csv_atomic(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            table.to_csv(fh, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_config(run_dir: str | os.PathLike) -> Config:
    return from_dict(json.loads((Path(run_dir) / CONFIG).read_text()))


def load_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / HISTORY)


def load_params(run_dir: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The final tensors of a saved run: {"workers", "buffers", "evaluated", "center"} -> name -> tensor."""
    return torch.load(Path(run_dir) / PARAMS, weights_only=True, map_location="cpu")  # also a run made on a GPU


def is_complete(run_dir: str | os.PathLike, config: Config) -> bool:
    """True when ``run_dir`` holds a finished run of exactly ``config`` (resolved), wherever its data lived."""
    path = Path(run_dir)
    if not (path / CONFIG).exists() or not (path / HISTORY).exists():
        return False
    try:
        return run_identity(load_config(path)) == run_identity(config)
    except (ValueError, TypeError, json.JSONDecodeError):
        return False
