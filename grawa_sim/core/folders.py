"""Output folders without torch: the write check made before any training, temporary names, permissions.

Kept free of heavy imports so `python -m grawa_sim ... --out DIR` rejects a folder it cannot write at once.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

from grawa_sim.core.errors import ConfigError


def temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    """A process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temporary entries a killed write left in ``folder``: ``.<name>.<pid>.<token>`` whose process is
    gone, and the ``.<name>.<token>`` of earlier versions; ``name=None`` takes every name. Returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(r"\.(.+)\.(\w+)", entry.name)
        if not match:
            continue
        stem, token = match.groups()
        pid = re.fullmatch(r"(.+)\.(\d+)", stem)
        if pid:  # .<name>.<pid>.<token>
            stem = pid.group(1)
            if pid_alive(int(pid.group(2))):
                continue
        if name is not None and stem != name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def modes() -> tuple[int, int]:
    """(file mode, folder mode) under the current umask: 0644 / 0755 for umask 022."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask


def write_atomic(path: str | os.PathLike, write) -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then ``os.replace`` it onto ``path``: a reader
    sees the old file or the whole new one, never a half-written one (the file gets the umask's mode).
    A temporary left by a killed write is removed first; one of a failed write is removed on the way out."""
    path = Path(path)
    remove_stale_temps(path.parent, path.name)
    tmp = path.parent / temp_name(path.name)
    try:
        write(tmp)
        tmp.chmod(modes()[0])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def claim(lock: str | os.PathLike) -> bool:
    """Take the lock file ``lock`` for this process (created exclusively, holding the pid): True when taken.
    False while another live process holds it; a lock whose process is gone (killed) is taken over."""
    lock = Path(lock)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0  # being written right now, or gone again: look once more
            if holder and holder != os.getpid() and pid_alive(holder):
                return False
            if holder or _age(lock) > 10:
                lock.unlink(missing_ok=True)  # a dead holder's lock (or one killed before it wrote its pid)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        return True


def _age(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def release(lock: str | os.PathLike) -> None:
    """Remove this process's lock file ``lock`` (nothing if it is not ours)."""
    lock = Path(lock)
    try:
        if int(lock.read_text().strip() or "0") == os.getpid():
            lock.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass


def reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_writable(out: str | os.PathLike) -> None:
    """``out`` is a folder this process can write, or can be created as one: no file at it or above it.

    Creates the missing folders, writes and removes a small probe file, and removes the folders it
    created, so a rejected or failed run leaves nothing. Raises ConfigError in one line.
    """
    path = Path(out)
    for folder in (path, *path.absolute().parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"out: {folder} exists and is not a directory (got '{out}')")
            break
    created: list[Path] = []
    try:
        for folder in reversed((path.absolute(), *path.absolute().parents)):
            if not folder.exists():
                try:
                    folder.mkdir()
                    created.append(folder)
                except FileExistsError:  # another process made it in between: fine if it is a folder
                    if not folder.is_dir():
                        raise
        probe = path / temp_name("probe")
        try:
            with open(probe, "wb") as fh:
                fh.write(b"grawa-sim write probe\n")
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as e:
        raise ConfigError(f"out: cannot write there: {reason(e)} (got '{out}')") from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass


