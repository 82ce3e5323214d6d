"""Output folders without torch: the write check made before any training, temporary names, permissions, and
the lock files that keep two processes from computing the same run.

Kept free of heavy imports so `python -m grawa_sim ... --out DIR` rejects a folder it cannot write at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import socket
import time
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


# ---------------------------------------------------------------- lock files

LOCK_STALE_UNWRITTEN = 10.0  # seconds after which a lock file nobody finished writing is removed


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot (/proc/<pid>/stat, Linux); None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since the epoch (to 1/100 s; Linux); None where unknown."""
    ticks = process_start(pid)
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK") if ticks is not None else None
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def boot_id() -> str | None:
    """This machine's boot id (Linux): another one means a process recorded before was gone by the reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock file. A lock records the process id, the host, the process's start time and the boot
    id (one JSON line); an old lock file holding only a pid reads as a holder on this host, taken since the
    file was last written (a process with its pid that started later is not its holder)."""

    pid: int
    host: str | None = None  # None: an old lock file (the pid only), taken to be this machine's
    started: int | None = None  # `process_start` of the holder
    boot: str | None = None  # `boot_id` of its machine
    since: float | None = None  # when it took the lock (seconds since the epoch)

    @classmethod
    def me(cls) -> Holder:
        """This process, now."""
        return cls(os.getpid(), socket.gethostname(), process_start(os.getpid()), boot_id(), time.time())

    def on_this_host(self) -> bool:
        return self.host is None or self.host == socket.gethostname()

    def is_me(self) -> bool:
        return self.pid == os.getpid() and self.on_this_host()

    def alive(self) -> bool:
        """False when the holder is certainly gone (its lock is stale): on this host, no process has its pid,
        the machine was booted since, or the pid now belongs to a process that started at another time (a
        reused pid: after a container restart, say; for an old lock file, one that started after the lock
        was written). A holder on another host cannot be checked: alive."""
        if not self.on_this_host():
            return True
        if not pid_alive(self.pid):
            return False
        boot = boot_id()
        if self.boot is not None and boot is not None and boot != self.boot:
            return False
        if self.started is not None:
            started = process_start(self.pid)
            return started is None or started == self.started
        began = process_start_time(self.pid)  # an old lock: a process that began after it was written is not its
        return began is None or self.since is None or began <= self.since + 2.0  # holder (2 s: btime's rounding)

    def describe(self) -> str:
        """'pid N on HOST since YYYY-MM-DD HH:MM:SS'."""
        since = "an unknown time" if self.since is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                          time.localtime(self.since))
        return f"pid {self.pid} on {self.host or socket.gethostname()} since {since}"

    def record(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started, "boot": self.boot,
                           "since": self.since}) + "\n"


def holder(lock: str | os.PathLike) -> Holder | None:
    """The holder recorded in the lock file ``lock`` (either format); None when there is no lock file or it
    cannot be read as one (being written right now, say)."""
    lock = Path(lock)
    try:
        text = lock.read_text().strip()
        mtime = lock.stat().st_mtime
    except OSError:
        return None
    if text.isdigit():  # an old lock file: the pid only
        return Holder(int(text), since=mtime) if int(text) > 0 else None
    try:
        fields = json.loads(text)
        pid = fields["pid"]
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return None
        started = fields.get("started")
        return Holder(pid, fields.get("host"), started if isinstance(started, int) else None,
                      fields.get("boot"), fields.get("since") or mtime)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def claim(lock: str | os.PathLike) -> bool:
    """Take the lock file ``lock`` for this process: True when taken, False while another live process holds it.

    The file is created exclusively and records this process (`Holder`). A lock whose holder is gone is taken
    over: killed, or a pid that now names another process (its start time differs), or a machine rebooted
    since. A holder on another host is taken to be alive. A failed write (disk full, a read-only folder)
    raises the OSError and leaves no lock file behind."""
    lock = Path(lock)
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = holder(lock)
            if found is None:  # being written right now, gone again, or never written by a killed process
                if _age(lock) > LOCK_STALE_UNWRITTEN:
                    lock.unlink(missing_ok=True)
                else:
                    time.sleep(0.01)
                continue
            if not found.is_me() and found.alive():
                return False
            lock.unlink(missing_ok=True)  # a dead holder's lock
            continue
        try:
            data = Holder.me().record().encode()
            try:
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
        except BaseException:
            lock.unlink(missing_ok=True)
            raise
        return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def release(lock: str | os.PathLike) -> None:
    """Remove this process's lock file ``lock`` (nothing if it is not ours)."""
    lock = Path(lock)
    found = holder(lock)
    if found is not None and found.is_me():
        try:
            lock.unlink(missing_ok=True)
        except OSError:
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


