"""The per-user cache folder of generated data and measured constants: ``$GRAWA_CACHE``, else
``$XDG_CACHE_HOME/grawa-sim``, else ``~/.cache/grawa-sim``. Every file is written atomically
(`folders.write_atomic`); an unwritable folder only costs the time of computing again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from grawa_sim.core.folders import write_atomic

CACHE_ENV = "GRAWA_CACHE"


def cache_dir() -> Path:
    """Where generated data sets are kept: $GRAWA_CACHE, else $XDG_CACHE_HOME/grawa-sim, else ~/.cache/grawa-sim."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grawa-sim"


def memo_number(name: str, key: str, compute: Callable[[], int]) -> int:
    """An integer kept in ``<cache>/<name>.json`` under ``key``: read when there, else computed and added."""
    path = cache_dir() / f"{name}.json"
    try:
        table = json.loads(path.read_text())
        if isinstance(table.get(key), int):
            return table[key]
    except (OSError, ValueError, AttributeError):
        table = {}
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps({**table, key: value}, sort_keys=True)))
    except OSError:
        pass  # an unwritable cache only means computing it again next time
    return value
