"""The per-user cache folder of generated data and measured constants: ``$GRAWA_CACHE``, else
``$XDG_CACHE_HOME/grawa-sim``, else ``~/.cache/grawa-sim``. Every file is written atomically (a
temporary file renamed into place); an unwritable folder only costs the time of computing again."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "GRAWA_CACHE"


def cache_dir() -> Path:
    """Where generated data sets are kept: $GRAWA_CACHE, else $XDG_CACHE_HOME/grawa-sim, else ~/.cache/grawa-sim."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "grawa-sim"


def write_atomic(path: Path, write: Callable) -> None:
    """``write(binary file)`` into a temporary file beside ``path``, then renamed to it (OSError propagates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        write_atomic(path, lambda f: f.write(json.dumps({**table, key: value}, sort_keys=True).encode()))
    except OSError:
        pass  # an unwritable cache only means computing it again next time
    return value
