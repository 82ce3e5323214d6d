"""MNIST-1D generated once and kept on disk: ``arrays(train_size)`` -> (x, y, x_test, y_test).

Generating the published set (``mnist1d.data.make_dataset(get_dataset_args())``: 4000 train / 1000
test samples) takes seconds in every process; the arrays are cached in ``$GRAWA_CACHE`` (default
``$XDG_CACHE_HOME/grawa-sim``, else ``~/.cache/grawa-sim``) as ``.npz`` files named by the
generator's arguments and the mnist1d version, written atomically (a temporary file renamed into
place). A file that cannot be read, or holds arrays of another shape, is regenerated with one
warning line.

A training set larger than the published 4000 samples appends samples from the same generator
with seed 43 (``num_samples`` = the extra count rounded up to whole classes, all of them training
samples, standardised on their own as make_dataset does); a smaller one takes the first
``train_size`` published training samples. The 1000 test samples are the published ones either way.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from grawa_sim.config import MAX_TRAIN_SIZE as MAX_TRAIN
from grawa_sim.core.cache import CACHE_ENV, cache_dir
from grawa_sim.core.errors import ConfigError
from grawa_sim.core.folders import write_atomic

PUBLISHED_TRAIN = 4000  # train samples of the published split (5000 samples, train_split 0.8)
EXTRA_SEED = 43  # generator seed of the training samples beyond the published 4000
CLASSES = 10


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:
        return "unknown"


def _generate(num_samples: int, seed: int, train_split: float) -> dict:
    """make_dataset with the published arguments but ``num_samples``, ``seed`` and ``train_split``."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, train_split
    state = np.random.get_state()  # mnist1d reseeds numpy's global RNG; keep the caller's
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}


def _cached(name: str, spec: dict, make) -> dict:
    """The arrays of ``spec`` from the cache, else ``make()`` written there atomically."""
    key = hashlib.sha1(json.dumps({**spec, "mnist1d": _version()}, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}.npz"
    if path.exists():
        try:
            with open(path, "rb") as handle, np.load(handle) as f:
                arrays = {k: f[k] for k in f.files}
            if set(arrays) == {"x", "y", "x_test", "y_test"} and len(arrays["x"]) == len(arrays["y"]) == spec["train"]:
                return arrays
            raise ValueError("unexpected arrays")
        except Exception as e:  # noqa: BLE001 - any unreadable file is regenerated
            warnings.warn(f"{path}: unreadable cached MNIST-1D ({type(e).__name__}); generating it again",
                          stacklevel=3)
    arrays = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: _save_npz(tmp, arrays))
    except OSError as e:  # a read-only or full cache folder: the data is still served, just not kept
        warnings.warn(f"{path.parent}: cannot cache MNIST-1D ({e.strerror or e}); set ${CACHE_ENV} to a writable "
                      f"folder", stacklevel=3)
    return arrays


def _save_npz(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a temporary name
        np.savez(f, **arrays)


def published() -> dict:
    """The published MNIST-1D split (4000 / 1000), cached."""
    return _cached("mnist1d", {"num_samples": 5000, "seed": 42, "train_split": 0.8, "train": PUBLISHED_TRAIN},
                   lambda: _generate(5000, 42, 0.8))


def extra(count: int) -> dict:
    """``count`` (rounded up to whole classes) training samples beyond the published ones, cached."""
    num = -(-count // CLASSES) * CLASSES
    return _cached("mnist1d-extra", {"num_samples": num, "seed": EXTRA_SEED, "train_split": 1.0, "train": num},
                   lambda: _generate(num, EXTRA_SEED, 1.0))


def arrays(train_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, x_test, y_test) with ``train_size`` training samples (None: the published 4000)."""
    base = published()
    n = PUBLISHED_TRAIN if train_size is None else train_size
    if not 1 <= n <= MAX_TRAIN:
        raise ConfigError(f"train_size: MNIST-1D serves 1 to {MAX_TRAIN} training samples (got {n})")
    x, y = base["x"], base["y"]
    if n <= PUBLISHED_TRAIN:
        x, y = x[:n], y[:n]
    else:
        more = extra(n - PUBLISHED_TRAIN)
        x = np.concatenate([x, more["x"][: n - PUBLISHED_TRAIN]])
        y = np.concatenate([y, more["y"][: n - PUBLISHED_TRAIN]])
    return x, y, base["x_test"], base["y_test"]
