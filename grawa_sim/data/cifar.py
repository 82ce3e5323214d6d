"""CIFAR-10 / CIFAR-100 in the standard "python version" folder layout.

Layout (as distributed by the authors at ``URLS``): ``<root>/cifar-10-batches-py/`` holds ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``; ``<root>/cifar-100-python/`` holds ``train``, ``test`` and
``meta``. Each file is a pickled dict with bytes keys: ``b"data"`` is a uint8 array ``[n, 3072]`` whose rows are one
32x32 image in channel-major order (1024 red, 1024 green, 1024 blue values, each row-major), and the labels are a
list of ints under ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100). ``read_raw`` returns uint8
``[N, 3, 32, 32]`` images and int64 labels; ``normalise`` maps them to ``(x / 255 - MEAN) / STD`` per channel.

Nothing is downloaded unless asked: the data is read from ``data_dir()`` (argument, else ``$GRAWA_DATA``, else
``./data``); ``download`` (or ``load(..., download_missing=True)``) fetches and checks the official tarball.
The pickles are read with an unpickler that only admits numpy arrays, so a tampered file cannot run code.
``write_folder`` and ``synthetic`` write the same format, for tests and for offline stand-in data.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import torch

from grawa_sim.core.errors import ConfigError

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CLASSES = {"cifar10": 10, "cifar100": 100}
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}  # per channel, pixels in [0,1]
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
MD5 = {"cifar10": "c58f30108f718f92721af3b95e74349a", "cifar100": "eb9058c3a382ffc7106e4002c42a8d85"}
TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
LABEL_KEYS = {"cifar10": b"labels", "cifar100": b"fine_labels"}
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_NUMPY_GLOBALS = {"_reconstruct", "_frombuffer", "ndarray", "dtype", "scalar"}


class DataNotFoundError(ConfigError):
    """The data folder or one of its files is missing; the message says where it should be and how to get it."""


def _one_line(message: str) -> str:
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _check_name(name: str) -> None:
    if name not in FOLDERS:
        raise ConfigError(f"dataset: must be one of {', '.join(FOLDERS)} (got {name!r})")


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit``, else ``$GRAWA_DATA``, else ``data`` (relative to the working directory)."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit)
    return Path(os.environ.get("GRAWA_DATA") or "data")


class _Unpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch needs: numpy arrays/dtypes (and ``_codecs.encode`` of protocol-2 bytes)."""

    def find_class(self, module: str, name: str) -> type:
        if (module == "_codecs" and name == "encode") or (module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _unpickle(path: Path) -> object:
    with open(path, "rb") as f:
        try:
            return _Unpickler(f, encoding="bytes").load()
        except OSError:
            raise
        except Exception as e:  # garbage can fail in many ways; all mean "not a CIFAR file"
            raise _not_a_batch(path, f"cannot unpickle: {e}") from None


def _not_a_batch(path: Path, why: str) -> ConfigError:
    return ConfigError(_one_line(f"data_dir: {path} is not a CIFAR batch ({why}) (got {str(path.parent.parent)!r})"))


def _bytes_keys(d: object) -> dict:
    return {k.encode() if isinstance(k, str) else k: v for k, v in d.items()} if isinstance(d, dict) else {}


def _num_batches(folder: Path) -> int:
    """5, unless ``batches.meta`` records another count (``write_folder(..., batches=k)`` does)."""
    meta = folder / "batches.meta"
    n = _bytes_keys(_unpickle(meta)).get(b"num_batches", 5) if meta.is_file() else 5
    if not isinstance(n, int) or not 1 <= n <= 1000:
        raise _not_a_batch(meta, f"num_batches is {n!r}")
    return n


def _required(name: str, folder: Path) -> tuple[list[Path], list[Path]]:
    if name == "cifar10":
        return [folder / f"data_batch_{k}" for k in range(1, _num_batches(folder) + 1)], [folder / "test_batch"]
    return [folder / "train"], [folder / "test"]


def _not_found(name: str, root: str | os.PathLike, folder: Path, why: str) -> DataNotFoundError:
    hint = f"; data_dir is the folder that contains {FOLDERS[name]}" if Path(root).name == FOLDERS[name] else ""
    return DataNotFoundError(_one_line(
        f"data_dir: {TITLES[name]} not found at {folder} ({why}); download and extract {URLS[name]} "
        f"into {folder.parent}, or pass --download{hint} (got {str(root)!r})"))


def _batch(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _bytes_keys(_unpickle(path))
    bad = functools.partial(_not_a_batch, path)
    if b"data" not in d or LABEL_KEYS[name] not in d:
        raise bad(f"needs keys b'data' and {LABEL_KEYS[name]!r}, has {list(d)[:8]!r}")
    try:
        x, y = np.asarray(d[b"data"]), np.asarray(d[LABEL_KEYS[name]])
    except (ValueError, TypeError) as e:
        raise bad(str(e)) from None
    if x.ndim != 2 or x.shape[1] != 3072:
        raise bad(f"data has shape {x.shape}, expected (n, 3072)")
    if x.dtype != np.uint8 and not (x.dtype.kind in "iu" and (x.size == 0 or (x.min() >= 0 and x.max() <= 255))):
        raise bad(f"data has dtype {x.dtype}, expected uint8")
    if y.shape != (x.shape[0],) or (y.size and y.dtype.kind not in "iu"):
        raise bad(f"{y.shape} labels of dtype {y.dtype} for {x.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() >= CLASSES[name]):
        raise bad(f"labels in [{y.min()}, {y.max()}], expected [0, {CLASSES[name] - 1}]")
    return x.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), y.astype(np.int64)


@functools.lru_cache(maxsize=2)  # a full CIFAR set is ~180 MB
def _read_cached(name: str, folder: str, stamps: tuple) -> tuple[np.ndarray, ...]:
    train_files, test_files = _required(name, Path(folder))
    out = []
    for files in (train_files, test_files):
        parts = [_batch(f, name) for f in files]
        out += [np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])]
    for a in out:
        a.flags.writeable = False  # shared by every caller through the cache
    return tuple(out)


def _locate(name: str, root: str | os.PathLike) -> tuple[str, tuple]:
    """The folder of ``name`` under ``root`` and its files' (mtime, size) stamps: the key of both caches."""
    _check_name(name)
    folder = Path(root).expanduser().resolve() / FOLDERS[name]
    if not folder.is_dir():
        raise _not_found(name, root, folder, "no such folder")
    files = [f for group in _required(name, folder) for f in group]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise _not_found(name, root, folder, "missing " + ", ".join(missing))
    return str(folder), tuple((s.st_mtime_ns, s.st_size) for s in (f.stat() for f in files))


def read_raw(name: str, root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from ``root/FOLDERS[name]``: read-only uint8 [N,3,32,32], int64 [N].

    Cached by folder and file mtimes/sizes, so repeated loads are free and a rewritten folder is re-read.
    """
    return _read_cached(name, *_locate(name, root))


@functools.lru_cache(maxsize=2)  # a normalised CIFAR set is ~740 MB in float32
def _tensors_cached(name: str, folder: str, stamps: tuple) -> tuple[torch.Tensor, ...]:
    x, y, xt, yt = _read_cached(name, folder, stamps)
    return normalise(x, name), torch.tensor(y), normalise(xt, name), torch.tensor(yt)


def tensors(name: str, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)`` as normalised float32 images and int64 labels.

    Cached like ``read_raw`` and shared by every caller: treat them as read-only.
    """
    return _tensors_cached(name, *_locate(name, data_dir(root)))


def normalise(x: np.ndarray | torch.Tensor, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images ``[..., 3, H, W]`` -> ``(x / 255 - MEAN[name]) / STD[name]`` per channel, as ``dtype``."""
    _check_name(name)
    t = x if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))
    if t.ndim < 3 or t.shape[-3] != 3:
        raise ConfigError(f"x: expected images [..., 3, H, W] (got shape {tuple(t.shape)})")
    mean = torch.tensor(MEAN[name], dtype=dtype).view(3, 1, 1)
    std = torch.tensor(STD[name], dtype=dtype).view(3, 1, 1)
    return t.to(dtype).div_(255).sub_(mean).div_(std)  # in place on the one converted copy


def _install(src: Path, target: Path) -> None:
    """Move the finished folder ``src`` to ``target``, replacing an existing one only once ``src`` is complete."""
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}") if target.exists() else None
    if old is not None:
        os.replace(target, old)
    try:
        os.replace(src, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _images(x: np.ndarray, y: np.ndarray, name: str, what: str) -> tuple[np.ndarray, list[int]]:
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.shape[1:] not in ((3, 32, 32), (3072,)):
        raise ConfigError(f"{what}: expected uint8 [N, 3, 32, 32] (got {x.dtype} {x.shape})")
    if y.shape != (len(x),) or (y.size and (y.min() < 0 or y.max() >= CLASSES[name])):
        raise ConfigError(f"{what}: expected {len(x)} labels in [0, {CLASSES[name]}) (got shape {y.shape})")
    return np.ascontiguousarray(x.reshape(len(x), 3072)), [int(v) for v in y]


def write_folder(root: str | os.PathLike, name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, batches: int = 5) -> Path:
    """Write ``root/FOLDERS[name]`` in the standard pickle format (atomically: temp folder, then rename)."""
    _check_name(name)
    if name == "cifar10" and batches < 1:
        raise ConfigError(f"batches: must be at least 1 (got {batches!r})")
    (xtr, ytr), (xte, yte) = _images(x_train, y_train, name, "x_train"), _images(x_test, y_test, name, "x_test")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDERS[name]}.tmp-", dir=root))
    try:
        def dump(file: str, x: np.ndarray, labels: list[int], batch_label: str, start: int = 0) -> None:
            d = {b"batch_label": batch_label.encode(), LABEL_KEYS[name]: labels, b"data": x,
                 b"filenames": [f"image_{start + i:05d}.png".encode() for i in range(len(x))]}
            if name == "cifar100":  # placeholder grouping: the real fine->coarse map is not reproduced
                d[b"coarse_labels"] = [v // 5 for v in labels]
            with open(tmp / file, "wb") as f:
                pickle.dump(d, f, protocol=2)

        if name == "cifar10":
            bounds = np.linspace(0, len(xtr), batches + 1).astype(int)
            for k in range(batches):
                lo, hi = bounds[k], bounds[k + 1]
                dump(f"data_batch_{k + 1}", xtr[lo:hi], ytr[lo:hi], f"training batch {k + 1} of {batches}", lo)
            dump("test_batch", xte, yte, "testing batch 1 of 1")
            meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": int(bounds[1]),
                    b"num_vis": 3072, b"num_batches": batches}
            meta_file = "batches.meta"
        else:
            dump("train", xtr, ytr, "training batch 1 of 1")
            dump("test", xte, yte, "testing batch 1 of 1")
            meta = {b"fine_label_names": [f"class_{k:03d}".encode() for k in range(100)],
                    b"coarse_label_names": [f"superclass_{k:02d}".encode() for k in range(20)]}
            meta_file = "meta"
        with open(tmp / meta_file, "wb") as f:
            pickle.dump(meta, f, protocol=2)
        os.chmod(tmp, 0o755)
        _install(tmp, root / FOLDERS[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left if something failed
    return root / FOLDERS[name]


def synthetic(root: str | os.PathLike, name: str = "cifar10", train: int = 500, test: int = 100, seed: int = 0) -> Path:
    """A learnable stand-in written with ``write_folder``: per-class low-frequency colour pattern + pixel noise."""
    _check_name(name)
    rng = np.random.default_rng(seed)
    classes = CLASSES[name]
    patterns = np.kron(rng.normal(0.0, 45.0, (classes, 3, 4, 4)), np.ones((8, 8))) + 128.0

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % classes).astype(np.int64)
        x = patterns[y] + rng.normal(0.0, 40.0, (n, 3, 32, 32))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    (xtr, ytr), (xte, yte) = draw(train), draw(test)
    return write_folder(root, name, xtr, ytr, xte, yte)


def _safe_members(tar: tarfile.TarFile, archive: str) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        if os.path.isabs(m.name) or m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts \
                or not (m.isfile() or m.isdir()):
            raise ConfigError(_one_line(f"data_dir: unsafe member {m.name!r} in archive (got {archive!r})"))
    return members


def download(name: str, root: str | os.PathLike, url: str | None = None, md5: str | None = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` (default ``URLS[name]``), check its MD5 (``md5=""`` skips), unpack ``FOLDERS[name]`` into root.

    Everything goes through a temporary folder inside ``root`` that is removed on success and on failure.
    """
    _check_name(name)
    root = Path(root)
    target = root / FOLDERS[name]
    if target.is_dir():
        try:
            read_raw(name, root)
            return target
        except ConfigError:
            pass  # broken or incomplete: replace it
    url = url or URLS[name]
    md5 = MD5[name] if md5 is None else md5
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDERS[name]}.download-", dir=root))
    try:
        archive, digest, done = tmp / "archive.tar.gz", hashlib.md5(), 0
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    print(f"\rdownloading {url}: {done / 2**20:.1f}/{total / 2**20:.1f} MiB", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)
        if md5 and digest.hexdigest() != md5:
            raise ConfigError(f"data_dir: MD5 of {url} is {digest.hexdigest()}, expected {md5} (got {str(root)!r})")
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, url)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp / "x", members=members, **kwargs)
        train_files, test_files = _required(name, tmp / "x" / FOLDERS[name])
        missing = [f.name for f in train_files + test_files if not f.is_file()]
        if missing:
            raise ConfigError(f"data_dir: archive {url} lacks {FOLDERS[name]}/{', '.join(missing)} (got {str(root)!r})")
        _install(tmp / "x" / FOLDERS[name], target)
    except (OSError, tarfile.TarError) as e:
        raise ConfigError(_one_line(f"data_dir: download of {url} failed: {e} (got {str(root)!r})")) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load(name: str, root: str | os.PathLike | None = None,
         download_missing: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``read_raw`` from ``data_dir(root)``, downloading first when the data is missing and ``download_missing``."""
    root = data_dir(root)
    if download_missing:
        try:
            return read_raw(name, root)
        except DataNotFoundError:
            download(name, root)
    return read_raw(name, root)
