"""Writing run results atomically: a run directory is whole or absent, never half-written.

A run is written into a temporary folder beside its directory (``.<name>.<pid>.<token>``) and
then swapped in whole (one atomic exchange where the file system has it), so no file of an
earlier run survives beside the new one and a kill at any moment leaves the old run or the new
one. Temporary folders and files whose process is gone are removed by the next write in that
folder. Files get the usual permissions (0644 under umask 022).

A stored run is reused only when it is whole: config.json equal, history.csv readable and ending
at the configured step, params.pt loadable (`stored_status`).
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from grawa_sim.config import Config, ConfigError, from_dict, run_identity, to_dict
from grawa_sim.core.folders import check_writable, modes, reason, remove_stale_temps, temp_name, write_atomic  # noqa: F401
from grawa_sim.engine.result import Result

HISTORY, CONFIG, WEIGHTS, PARAMS = "history.csv", "config.json", "weights.csv", "params.pt"
FLATNESS = "flatness.csv"  # a run's flatness table (python -m grawa_sim flatness)
DIVERGED = "diverged.json"  # marks a run that stopped at a non-finite loss: {"step", "message"}
RUN_FILES = frozenset({HISTORY, CONFIG, WEIGHTS, PARAMS, FLATNESS, DIVERGED})
FINISHED, DIVERGED_STATUS = "finished", "diverged"


class StorageError(OSError):
    """Results could not be written (disk full, permission); the message names the folder, in one line."""


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def write_error(folder: str | os.PathLike, error: BaseException) -> StorageError:
    """The one-line StorageError of a failed write into ``folder``: ``out: cannot write '<folder>': <why>``."""
    folder = Path(folder)
    free = ""
    try:
        if shutil.disk_usage(folder if folder.exists() else folder.parent).free < 1 << 20:
            free = " (no space left on device)"
    except OSError:
        pass
    why = reason(error) if not free or isinstance(error, OSError) else "no space left on device"
    return StorageError(f"out: cannot write '{folder}': {why}" + ("" if why in free else free))


# ---------------------------------------------------------------- checks before training


def check_run_folder(out: str | os.PathLike, config: Config | None, overwrite: bool = False) -> None:
    """``out`` may take a run of ``config``: absent, empty, or holding only run files of the same config
    (any config with ``overwrite``). A folder with other files is never replaced. Raises ConfigError."""
    path = Path(out)
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"out: exists and is not a directory (got '{out}')")
    others = sorted(p.name for p in path.iterdir() if p.name not in RUN_FILES)
    if others:
        raise ConfigError(f"out: holds files that are not a run's ({', '.join(others[:3])}); writing a run replaces "
                          f"its folder whole, so choose a new or empty folder (got '{out}')")
    if overwrite or config is None or not (path / CONFIG).exists():
        return
    try:
        same = run_identity(load_config(path)) == run_identity(config)
    except (ValueError, TypeError, OSError):
        same = False
    if not same:
        raise ConfigError(f"out: holds a run of another configuration; pass --overwrite (overwrite=True) to "
                          f"replace it (got '{out}')")


# ---------------------------------------------------------------- writing


def _write_run(out: str | os.PathLike, config: Config, files: dict[str, Callable[[Path], None]],
               overwrite: bool) -> Path:
    """Write ``files`` (name -> writer(path)) and config.json into a fresh folder, then swap it in whole."""
    out = Path(out)
    check_run_folder(out, config, overwrite)
    file_mode, folder_mode = modes()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out.parent, out.name)
        tmp = out.parent / temp_name(out.name)
        tmp.mkdir()
    except OSError as e:
        raise write_error(out, e) from None
    try:
        for name, write in files.items():
            write(tmp / name)
        (tmp / CONFIG).write_text(json.dumps(to_dict(config), indent=2) + "\n")
        for entry in tmp.iterdir():
            entry.chmod(file_mode)
        tmp.chmod(folder_mode)
        try:
            os.rename(tmp, out)  # out absent (or an empty folder)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            if not _exchange(tmp, out):  # no atomic exchange here: move the old run aside first
                aside = out.parent / temp_name(out.name)
                os.replace(out, aside)
                os.replace(tmp, out)
                tmp = aside
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the earlier run
    return out


def _csv(table: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: table.to_csv(path, index=False)


def save_result(result: Result, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write history.csv, weights.csv, params.pt (flatness.csv) and config.json as the folder ``out``.

    params.pt holds the final tensors: {"workers", "buffers", "evaluated", "center"}, each the run's own (a run
    of a batch stores copies of its rows, not the ensemble's tensors they are views of).
    The folder is replaced whole (nothing of an earlier run stays); one holding a run of another
    configuration is refused unless ``overwrite``, one holding other files always. Write errors
    raise StorageError (an OSError) naming the folder and leave ``out`` as it was.
    """
    tensors = _own({part: getattr(result, part) for part in ("workers", "buffers", "evaluated", "center")})
    files = {HISTORY: _csv(result.history), WEIGHTS: _csv(result.weights),
             PARAMS: lambda path: torch.save(tensors, path)}
    if result.flatness is not None:
        files[FLATNESS] = _csv(result.flatness)
    return _write_run(out, result.config, files, overwrite)


def _own(tensors: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors alone: a contiguous copy of each one that is a view into a larger storage (a batched run's
    rows of the ensemble's R·M workers), since torch.save writes a view's whole storage. Views of the same
    elements share one copy, as the tensors of a run alone share theirs (EASGD's evaluated model is its center)."""
    copies: dict[tuple, torch.Tensor] = {}

    def own(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach()
        storage = tensor.untyped_storage()
        if (tensor.is_contiguous() and tensor.storage_offset() == 0
                and storage.nbytes() == tensor.numel() * tensor.element_size()):
            return tensor
        key = (tensor.device, storage.data_ptr(), tensor.storage_offset(), tensor.shape, tensor.stride(), tensor.dtype)
        if key not in copies:
            copies[key] = tensor.clone(memory_format=torch.contiguous_format)
        return copies[key].view(tensor.shape)  # a tensor of its own over the shared copy, as a run alone has

    return {part: {name: own(t) for name, t in named.items()} for part, named in tensors.items()}


def save_diverged(config: Config, history: pd.DataFrame, step: float, message: str, out: str | os.PathLike,
                  overwrite: bool = False) -> Path:
    """Record a diverged run as the folder ``out``: its history up to the divergence, diverged.json, config.json."""
    record = json.dumps({"status": DIVERGED_STATUS, "step": step, "message": message}, indent=2) + "\n"
    if history is None or not len(history.columns):
        history = pd.DataFrame(columns=["step"])
    files = {HISTORY: _csv(history), DIVERGED: lambda path: path.write_text(record)}
    return _write_run(out, config, files, overwrite)


def cached_csv(path: str | os.PathLike | None, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """``compute()``, written atomically to ``path`` and read back from there on the next call (so an
    interrupted study resumes and repeats no finished piece); ``path=None`` computes without a cache."""
    if path is not None and Path(path).is_file():
        return pd.read_csv(path)
    frame = compute()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(frame, path)
    return frame


def write_csv_atomic(table: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write ``table`` to ``path`` atomically (`folders.write_atomic`; 0644 under umask 022)."""
    try:
        return write_atomic(path, lambda tmp: table.to_csv(tmp, index=index))
    except OSError as e:
        raise write_error(Path(path).parent, e) from None


# ---------------------------------------------------------------- reading


def load_config(run_dir: str | os.PathLike) -> Config:
    return from_dict(json.loads((Path(run_dir) / CONFIG).read_text()))


def load_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / HISTORY)


def load_weights(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A finished run's weights.csv (round, worker, layer, weight; no rows for algorithms without weights)."""
    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise StorageError(f"{path}: no weights.csv (is this a finished run folder?)")
    return pd.read_csv(path, dtype={"layer": str})


def load_params(run_dir: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The final tensors of a saved run: {"workers", "buffers", "evaluated", "center"} -> name -> tensor.

    An unreadable file raises ConfigError in one line (``run: cannot read ...``).
    """
    path = Path(run_dir) / PARAMS
    try:
        params = torch.load(path, weights_only=True, map_location="cpu")  # also a run made on a GPU
    except FileNotFoundError:
        raise ConfigError(f"run: no {PARAMS} in the run directory (got '{run_dir}')") from None
    except Exception as e:  # torch's own message advises weights_only=False: never pass that on
        raise ConfigError(f"run: cannot read {path}: not a complete {PARAMS} written by grawa-sim "
                          f"({type(e).__name__}) (got '{run_dir}')") from None
    if not isinstance(params, dict) or not {"workers", "buffers", "evaluated", "center"} <= set(params):
        raise ConfigError(f"run: cannot read {path}: not the tensors of a grawa-sim run (got '{run_dir}')")
    return params


def load_status(run_dir: str | os.PathLike) -> dict:
    """{"status": "finished"} or diverged.json's {"status": "diverged", "step", "message"}."""
    path = Path(run_dir) / DIVERGED
    return json.loads(path.read_text()) if path.exists() else {"status": FINISHED}


def _history_is_whole(path: Path, config: Config, finished: bool) -> bool:
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):  # cut inside a row
        return False
    history = pd.read_csv(io.BytesIO(raw))
    if "step" not in history.columns:
        return False
    if not finished:  # the rows before the divergence: readable, whole rows (possibly none)
        return True
    if history.empty or not {"sim_time", "wall_time", "train_loss", "test_loss"} <= set(history.columns):
        return False
    last = history.iloc[-1]
    if not all(math.isfinite(float(last[c])) for c in ("step", "sim_time", "wall_time")):
        return False
    if not (math.isfinite(float(last["train_loss"])) and math.isfinite(float(last["test_loss"]))):
        return False
    return bool(last["step"] >= config.steps
                or (config.time_budget is not None and last["sim_time"] >= config.time_budget)
                or (config.wall_budget is not None and last["wall_time"] >= config.wall_budget))


def stored_status(run_dir: str | os.PathLike, config: Config) -> str | None:
    """"finished" or "diverged" when ``run_dir`` holds a whole run of exactly ``config`` (resolved, wherever its
    data lived), else None: config.json equal, history.csv readable and ending where the run ends (a finished
    run: at ``steps`` or its budget), params.pt loadable and weights.csv present for a finished run."""
    path = Path(run_dir)
    try:
        if not (path / CONFIG).is_file() or not (path / HISTORY).is_file():
            return None
        if run_identity(load_config(path)) != run_identity(config):
            return None
        status = load_status(path)["status"]
        if status == FINISHED:
            if not (path / WEIGHTS).is_file():
                return None
            params = torch.load(path / PARAMS, weights_only=True, mmap=True, map_location="cpu")
            if not isinstance(params, dict) or not {"workers", "buffers", "evaluated", "center"} <= set(params):
                return None
        elif status != DIVERGED_STATUS:
            return None
        return status if _history_is_whole(path / HISTORY, config, status == FINISHED) else None
    except Exception:  # unreadable in any way: not whole, computed again
        return None


def is_complete(run_dir: str | os.PathLike, config: Config) -> bool:
    """True when ``run_dir`` holds a whole, finished run of exactly ``config`` (see `stored_status`)."""
    return stored_status(run_dir, config) == FINISHED
