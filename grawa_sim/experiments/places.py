"""Where the studies read and write: the project root, figures/, results/ and the quick modes' scratch folder.

Light on purpose (no torch, no scipy): the command line checks its output folders with these before
anything heavy is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

QUICK_ENV = "GRAWA_QUICK"
FIGURES_ENV = "GRAWA_FIGURES"
RESULTS_ENV = "GRAWA_RESULTS"
SCRATCH_ENV = "GRAWA_SCRATCH"  # quick modes and the tests write here instead of figures/ and results/


def quick_mode() -> bool:
    """True when GRAWA_QUICK is set to a non-empty value other than 0 (tests, CI)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding grawa-sim's pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.exists() and 'name = "grawa-sim"' in pyproject.read_text():
            return folder
    return here


def scratch_dir() -> Path:
    """Where quick modes write: $GRAWA_SCRATCH, else <project root>/results/quick (ignored by git)."""
    return Path(os.environ.get(SCRATCH_ENV) or project_root() / "results" / "quick")


def figures_dir(quick: bool | None = None) -> Path:
    """Where figures go: $GRAWA_FIGURES, else <project root>/figures; quick runs (``quick``, default
    `quick_mode()`) never touch the committed figures: <scratch>/figures."""
    quick = quick_mode() if quick is None else quick
    default = scratch_dir() / "figures" if quick else project_root() / "figures"
    path = Path(os.environ.get(FIGURES_ENV) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(quick: bool | None = None) -> Path:
    """Where sweeps of the notebooks cache their runs: $GRAWA_RESULTS, else <project root>/results
    (<scratch>/results for quick runs)."""
    quick = quick_mode() if quick is None else quick
    return Path(os.environ.get(RESULTS_ENV) or (scratch_dir() / "results" if quick else project_root() / "results"))
