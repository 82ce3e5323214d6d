"""A run alone against the same run next to a second one (``bench --contention``).

Each run is a fresh process (``python -m grawa_sim run``-like: `grawa_sim.run` of one config, its import
and data included) with ``threads`` torch threads (None: torch's default, the machine's cores; "passive":
the default count with ``OMP_WAIT_POLICY=PASSIVE``, so that idle OpenMP threads sleep instead of
spinning while they wait for work). Alone:
one process at a time; paired: two identical processes started together, each timed from its own start.
The slowdown is paired wall over alone wall; a run gets its fair share of a machine it shares with one
other job when the slowdown is at most 2. Alone and paired alternate repeat by repeat (medians).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

CHILD = ("import time, torch; t = time.perf_counter(); from grawa_sim import Config, run; "
         "run(Config(algorithm='localsgd', workers={workers}, tau=32, model={model!r}, steps={steps}, "
         "eval_every=100), progress=False); print(time.perf_counter() - t, torch.get_num_threads())")


PASSIVE = "passive"


def _start(model: str, workers: int, steps: int, threads: int | str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    if isinstance(threads, int):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    elif threads == PASSIVE:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif threads is not None:
        raise ValueError(f"threads: a count, None (torch's default) or {PASSIVE!r} (got {threads!r})")
    code = CHILD.format(workers=workers, model=model, steps=steps)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def _wall(processes: list[subprocess.Popen]) -> list[tuple[float, int]]:
    """(seconds, torch threads) each process printed once it ended."""
    results = []
    for p in processes:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"contention: a run exited with status {p.returncode}")
        seconds, threads = out.split()[-2:]
        results.append((float(seconds), int(threads)))
    return results


def contention(model: str = "mlp", workers: int = 16, steps: int = 2000,
               threads: tuple[int | str | None, ...] = (None, PASSIVE, 1), repeats: int = 3, out=None) -> list[dict]:
    """Wall seconds of a run alone and beside a twin, per thread setting (a count, None for torch's default,
    or "passive" for the default with OMP_WAIT_POLICY=PASSIVE); one JSON line each."""
    out = out or sys.stdout
    rows = []
    for n in threads:
        alone, paired, used = [], [], 0
        for _ in range(repeats):
            (seconds, used), = _wall([_start(model, workers, steps, n)])
            alone.append(seconds)
            paired += [s for s, _ in _wall([_start(model, workers, steps, n) for _ in range(2)])]
        load = os.getloadavg()[0]
        row = {"model": model, "workers": workers, "steps": steps, "threads": used,
               "threads_set": "default" if n is None else (f"default, {n}" if n == PASSIVE else n),
               "cpus": os.cpu_count(),
               "alone_s": round(statistics.median(alone), 4), "paired_s": round(statistics.median(paired), 4),
               "slowdown": round(statistics.median(paired) / statistics.median(alone), 2),
               "load_1min_at_end": round(load, 2)}
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows
