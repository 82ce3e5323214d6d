"""The small summary CSVs a study writes beside its figure: the data of the report's tables.

A study (a notebook, `reproduce`, `anchor`) computes its tables as data frames; `save_tables` writes
each one as ``<figures>/<study>_<name>.csv`` (numbers to 6 significant digits, the index as columns)
in the same run that draws the figure. ``python -m grawa_sim report`` renders docs/results.md's
tables from these files, so every number in the report comes from a committed file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from grawa_sim.results.storage import write_csv_atomic

_NAME = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")


def table_path(figures: str | os.PathLike, study: str, name: str) -> Path:
    """``<figures>/<study>_<name>.csv``; ``study`` and ``name`` are lower-case words joined by '_'."""
    for field, value in (("study", study), ("name", name)):
        if not _NAME.match(value):
            raise ValueError(f"{field}: lower-case letters, digits and '_' only (got {value!r})")
    return Path(figures) / f"{study}_{name}.csv"


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its (named) index levels as columns and flat column names."""
    out = frame.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = ["_".join(str(p) for p in col if str(p)) for col in out.columns]
    named = [n for n in out.index.names if n is not None]
    if named:
        out = out.reset_index(level=named)
    return out.reset_index(drop=True)


def save_tables(figures: str | os.PathLike, study: str, **tables: pd.DataFrame) -> list[Path]:
    """Write every ``name=frame`` as ``<figures>/<study>_<name>.csv`` (atomically); return the paths."""
    paths = []
    for name, frame in tables.items():
        path = table_path(figures, study, name)
        paths.append(write_csv_atomic(_rounded(tidy(frame)), path))
    return paths


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats to 6 significant digits, so that the committed files stay small and stable."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: float(f"{v:.6g}") if pd.notna(v) else v)
    return out
