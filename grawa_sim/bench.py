"""Benchmarks: throughput ratios measured side by side in one process.

The machine is noisy, so every comparison interleaves its contenders
(A, B, A, B, ...) over several repeats and reports medians and their ratio.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from grawa_sim import models
from grawa_sim.config import Config, resolve
from grawa_sim.data import BatchSampler, iid_shards, load
from grawa_sim.runner import build_engine


def _stepper(cfg: Config) -> Callable[[int], None]:
    """A closure doing n training steps (sampling, local step, rounds) of an engine built from cfg."""
    cfg = resolve(cfg)
    data = load(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, data.features, data.outputs)
    engine = build_engine(cfg, model, data)
    sampler = BatchSampler(iid_shards(len(data.y_train), cfg.workers, torch.Generator().manual_seed(0)),
                           len(data.y_train), cfg.batch_size, cfg.seed)
    count = [0]

    def steps(n: int) -> None:
        for _ in range(n):
            idx = sampler.next_batch()
            engine.local_step(data.x_train[idx], data.y_train[idx])
            count[0] += 1
            if count[0] % cfg.tau == 0:
                engine.communicate(None)

    return steps


def side_by_side(contenders: dict[str, Callable[[int], None]], steps: int, repeats: int) -> dict[str, float]:
    """Median steps/s of each contender, interleaved repeat by repeat after one warm-up."""
    for fn in contenders.values():
        fn(max(2, steps // 5))
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn(steps)
            times[name].append(steps / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def backends(models_: tuple[str, ...] = ("mlp", "cnn"), workers: tuple[int, ...] = (4, 16, 64),
             budget: float = 0.5, repeats: int = 3, out=sys.stdout) -> list[dict]:
    """steps/s of the stacked engine (vmap and unrolled execution) against the loop backend.

    LocalSGD with tau = 32, batch 32, MNIST-1D. ``budget`` is roughly the seconds
    of one loop-backend repeat; the step count is derived from a quick probe.
    """
    rows = []
    for model in models_:
        for m in workers:
            base = Config(algorithm="localsgd", workers=m, tau=32, model=model, dataset="mnist1d", batch_size=32)
            contenders = {
                "vmap": _stepper(Config(**{**base.__dict__, "execution": "vmap"})),
                "unrolled": _stepper(Config(**{**base.__dict__, "execution": "unrolled"})),
                "loop": _stepper(Config(**{**base.__dict__, "backend": "loop"})),
            }
            t0 = time.perf_counter()
            contenders["loop"](3)
            steps = max(3, int(budget / ((time.perf_counter() - t0) / 3)))
            rate = side_by_side(contenders, steps, repeats)
            row = {"model": model, "workers": m, "steps": steps,
                   **{f"{k}_steps_per_s": round(v, 1) for k, v in rate.items()},
                   "vmap_over_loop": round(rate["vmap"] / rate["loop"], 2),
                   "unrolled_over_loop": round(rate["unrolled"] / rate["loop"], 2),
                   "auto": resolve_execution(model)}
            print(json.dumps(row), file=out, flush=True)
            rows.append(row)
    return rows


def float32_gap(steps: int = 100, out=sys.stdout) -> list[dict]:
    """Max |vmap - loop| over final worker parameters and history, float32 vs float64, every algorithm.

    Same settings as the parity tests (M = 3, tau = 8, momentum 0.9, weight decay 1e-3).
    """
    from grawa_sim.config import ALGORITHMS
    from grawa_sim.runner import run

    rows = []
    cases = [(m, a, a == "dp" and sam) for m in ("mlp", "cnn_bn") for a in ALGORITHMS for sam in (False, True)
             if a == "dp" or not sam]
    for model, algorithm, sam in cases:
        row = {"model": model, "algorithm": algorithm + ("+sam" if sam else "")}
        for dtype in ("float32", "float64"):
            cfg = Config(algorithm=algorithm, sam=sam, model=model, dtype=dtype, workers=3, steps=steps, tau=8,
                         lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=16, eval_every=steps)
            fast = run(cfg, progress=False)
            ref = run(Config(**{**cfg.__dict__, "backend": "loop"}), progress=False)
            gap = max(float((fast.workers[n] - ref.workers[n]).abs().max()) for n in fast.workers)
            row[f"{dtype}_param_gap"] = float(f"{gap:.2e}")
            cols = ["train_loss", "test_loss"]
            row[f"{dtype}_loss_gap"] = float(f"{(fast.history[cols] - ref.history[cols]).abs().max().max():.2e}")
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows


def resolve_execution(model: str) -> str:
    from grawa_sim.ensemble import choose_execution

    data = load("mnist1d")
    return choose_execution(models.build(model, data.features, data.outputs), "auto", torch.device("cpu"))
