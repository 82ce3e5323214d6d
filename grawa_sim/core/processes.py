"""Worker processes for parallel sweeps, measurements and tuning: spawned, one torch thread each."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

JOB_THREADS_ENV = "GRAWA_JOB_THREADS"  # torch threads per worker process (default 1)


def one_torch_thread() -> None:
    """A worker process's initializer: one torch thread ($GRAWA_JOB_THREADS to change it)."""
    import torch

    torch.set_num_threads(int(os.environ.get(JOB_THREADS_ENV, "1")))


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` spawned processes of one torch thread each (spawned: a script using it needs the
    ``if __name__ == "__main__":`` guard)."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=one_torch_thread)
