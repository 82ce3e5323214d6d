"""Fit the clock's α-β all-reduce model to gloo timings on this machine: ``bench --calibrate``.

The simulated clock charges a ring all-reduce of n bytes among M workers

    t(M, n) = 2 (M - 1) α + 2 (M - 1) / M · n β          (grawa_sim/engine/clock.py)

This module times ``torch.distributed.all_reduce`` with gloo for M processes on this machine
(torchrun, one thread each) and message sizes over three decades, takes the median of repeated
calls per (M, n), and fits α and β to all of them at once by least squares (no intercept: the model
has none), reporting the fit's R² and its median relative error. With more processes than cores the
processes share the CPU, so the fitted α holds their scheduling too: it is what a run on this machine
would pay, not the latency of a network.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

FLOAT_BYTES = 4
PROCESSES = (2, 4, 8)
SIZES = (1_000, 10_000, 100_000, 1_000_000)  # float32 values per message: 4 kB to 4 MB


def ring_terms(processes: int, nbytes: float) -> tuple[float, float]:
    """The coefficients of α and β in the ring all-reduce time of ``nbytes`` among ``processes``."""
    m = processes
    return 2.0 * (m - 1), 2.0 * (m - 1) / m * nbytes


def fit_alpha_beta(rows: Sequence[dict]) -> dict:
    """α (s), β (s/byte), the bandwidth 1/β (bytes/s), R² and the median |relative error| of the fit
    t = 2 (M-1) α + 2 (M-1)/M n β to rows {processes, bytes, seconds} (least squares, α, β >= 0 not forced)."""
    if len(rows) < 2:
        raise ValueError(f"rows: the fit needs at least two timings (got {len(rows)})")
    design = np.array([ring_terms(r["processes"], r["bytes"]) for r in rows])
    t = np.array([r["seconds"] for r in rows], dtype=float)
    (alpha, beta), *_ = np.linalg.lstsq(design, t, rcond=None)
    predicted = design @ np.array([alpha, beta])
    total = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float(((t - predicted) ** 2).sum()) / total if total > 0 else float("nan")
    return {"alpha_s": float(alpha), "beta_s_per_byte": float(beta),
            "bandwidth_bytes_per_s": float(1.0 / beta) if beta > 0 else float("inf"), "r2": r2,
            "median_relative_error": float(np.median(np.abs(predicted - t) / t))}


def _rank_main(out_file: str, sizes: Sequence[int], repeats: int) -> None:
    """Under torchrun: the median seconds of one all_reduce of each size (rank 0 writes JSON lines)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rows = []
    for size in sizes:
        x = torch.ones(size, dtype=torch.float32)
        for _ in range(3):
            dist.all_reduce(x)
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - t0)
        slowest = torch.tensor([statistics.median(times)], dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # the collective ends when its last rank does
        rows.append({"processes": dist.get_world_size(), "values": size, "bytes": size * FLOAT_BYTES,
                     "seconds": float(slowest)})
    if dist.get_rank() == 0:
        with open(out_file, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    dist.barrier()
    dist.destroy_process_group()


def time_all_reduce(processes: int, sizes: Sequence[int] = SIZES, repeats: int = 20) -> list[dict]:
    """Median all_reduce seconds per message size among ``processes`` gloo processes started by torchrun."""
    from grawa_sim.core.ports import torchrun_command

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "timings.jsonl")
        command = torchrun_command(processes, ["-m", "grawa_sim.bench.calibrate", out, str(repeats),
                                               *map(str, sizes)])
        subprocess.run(command, check=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       stdout=subprocess.DEVNULL)
        with open(out) as f:
            return [json.loads(line) for line in f]


def calibrate(processes: Sequence[int] = PROCESSES, sizes: Sequence[int] = SIZES, repeats: int = 20,
              out=None) -> dict:
    """Time every (M, n), fit α and β, print one JSON line per timing and the fit; returns the fit with its rows."""
    out = out or sys.stdout
    rows = []
    for m in processes:
        for row in time_all_reduce(m, sizes, repeats):
            rows.append(row)
            print(json.dumps(row), file=out, flush=True)
    fit = fit_alpha_beta(rows)
    for row in rows:
        a, b = ring_terms(row["processes"], row["bytes"])
        row["fitted_seconds"] = a * fit["alpha_s"] + b * fit["beta_s_per_byte"]
    print(json.dumps({"fit": fit, "cores": os.cpu_count(), "processes": list(processes),
                      "values": list(sizes)}), file=out, flush=True)
    return {**fit, "rows": rows}


if __name__ == "__main__":
    _rank_main(sys.argv[1], [int(v) for v in sys.argv[3:]], int(sys.argv[2]))
