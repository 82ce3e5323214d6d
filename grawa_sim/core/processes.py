"""Worker processes for parallel sweeps, measurements and tuning: spawned, one torch thread each, and bound
to the process that started them: they end when it ends, even when it is killed (SIGKILL).

On Linux each worker asks the kernel for a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so it
is killed the moment its parent dies, in the middle of a task too; elsewhere a watchdog thread checks the
parent every second. Every worker also checks, when it starts and before each task, that its parent is still
the process that started it (the parent may die before the signal is set up), and exits at once if not.
With the workers gone, multiprocessing's resource tracker (which they keep open) exits as well.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

JOB_THREADS_ENV = "GRAWA_JOB_THREADS"  # torch threads per worker process (default 1)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_EVERY = 1.0  # seconds between two checks of the parent where there is no parent-death signal


def one_torch_thread() -> None:
    """One torch thread in this process ($GRAWA_JOB_THREADS to change it)."""
    import torch

    torch.set_num_threads(int(os.environ.get(JOB_THREADS_ENV, "1")))


def parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def exit_if_orphaned(parent: int) -> None:
    """End this process at once (exit status 1, no clean-up) when ``parent`` is no longer its parent."""
    if os.getppid() != parent:
        os._exit(1)


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCH_EVERY)
        exit_if_orphaned(parent)


def bound_worker(parent: int) -> None:
    """A pool worker's initializer: die with ``parent`` (see the module docstring); one torch thread."""
    if not parent_death_signal():
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="grawa-parent-watch").start()
    exit_if_orphaned(parent)  # the parent died before the signal was set up
    one_torch_thread()


def _guarded(parent: int, fn: Callable, /, *args, **kwargs):
    exit_if_orphaned(parent)  # between tasks: never start one for a parent that is gone
    return fn(*args, **kwargs)


class BoundPool(ProcessPoolExecutor):
    """A spawned process pool whose workers end with the process that made it (`bound_worker`). Leaving its
    ``with`` block on an exception cancels the tasks not yet started instead of running them all first."""

    def __init__(self, jobs: int):
        self._parent = os.getpid()
        super().__init__(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=bound_worker,
                         initargs=(self._parent,))

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        return super().submit(_guarded, self._parent, fn, *args, **kwargs)

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` spawned processes of one torch thread each, which end when this process ends, however it ends
    (spawned: a script using it needs the ``if __name__ == "__main__":`` guard). Linux ties the parent-death
    signal to the thread that started a worker, which is the thread that submits: submit from the thread
    that waits for the results (as sweep, tune and the flatness study do)."""
    return BoundPool(jobs)
