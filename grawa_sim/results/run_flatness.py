"""Flatness of a run: of a config's final tensors, of a `Result`, or of a saved run directory.

The metrics come from the toolkit (`grawa_sim.flatness.measure_tensors`); this module builds the
run's model template and data set for it and reads and writes run directories.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from grawa_sim.engine.problem import model_and_data
from grawa_sim.flatness.measure import Params
from grawa_sim.flatness.measure import measure_tensors as _measure_tensors
from grawa_sim.results.storage import CONFIG, PARAMS, load_config, load_params, write_csv_atomic
from grawa_sim.results.storage import FLATNESS as FLATNESS_CSV


def measure_tensors(config, tensors: dict[str, Params], **kwargs) -> pd.DataFrame:
    """`grawa_sim.flatness.measure_tensors` with ``config``'s model and data (other keywords as there)."""
    model, data = model_and_data(config)
    return _measure_tensors(config, tensors, model, data, **kwargs)


def measure_result(result, **kwargs) -> pd.DataFrame:
    """`measure_tensors` on a `grawa_sim.Result` (the average and center of its workers, and each worker)."""
    tensors = {"workers": result.workers, "buffers": result.buffers, "center": result.center}
    return measure_tensors(result.config, tensors, **kwargs)


def measure_run(run_dir: str | os.PathLike, *, write: bool = True, device=None, **kwargs) -> pd.DataFrame:
    """The flatness table of a saved run directory (``config.json`` + ``params.pt``); writes
    ``run_dir/flatness.csv`` atomically unless ``write=False``. ``device``: where to measure (default:
    the CPU, where the tensors are loaded). Other keyword arguments as `measure_tensors`.
    """
    if not (Path(run_dir) / CONFIG).is_file() or not (Path(run_dir) / PARAMS).is_file():
        raise ValueError(f"run: not a finished run directory with {CONFIG} and {PARAMS} (got '{run_dir}')")
    tensors = load_params(run_dir)
    if device is not None:
        tensors = {k: {n: t.to(device) for n, t in v.items()} for k, v in tensors.items()}
    table = measure_tensors(load_config(run_dir), tensors, **kwargs)
    if write:
        write_csv_atomic(table, Path(run_dir) / FLATNESS_CSV)
    return table


__all__ = ["FLATNESS_CSV", "measure_result", "measure_run", "measure_tensors"]
