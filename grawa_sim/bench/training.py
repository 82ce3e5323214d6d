"""Benchmarks: throughput ratios measured side by side in one process.

The machine is noisy, so every comparison interleaves its contenders
(A, B, A, B, ...) over several repeats and reports medians and their ratio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from grawa_sim import algorithms
from grawa_sim.bench.plain import PlainTrainer
from grawa_sim.config import IMAGE_MODELS, Config
from grawa_sim.core.collectives import StackedAxis
from grawa_sim.data import cifar
from grawa_sim.engine.problem import build_problem, model_and_data


def _stepper(cfg: Config, axis: StackedAxis | None = None, device: torch.device | str = "cpu") -> Callable[[int], None]:
    """n training steps of cfg on the same model, shards and batch stream as run(cfg) (`_train`)."""
    return _train(build_problem(cfg, device, axis))


def _train(problem, rounds: bool = True) -> Callable[[int], None]:
    """A closure doing n training steps of ``problem``: run()'s own step (`Problem.step`) and, with
    ``rounds``, its round (`Problem.round`) every tau steps; no evaluation and no simulated clock, so
    the benchmark measures the engine."""
    count = [0]
    periodic = rounds and not problem.communicates_every_step

    def steps(n: int) -> None:
        for _ in range(n):
            problem.step()
            count[0] += 1
            if periodic and count[0] % problem.config.tau == 0:
                problem.round()

    return steps


def _sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def side_by_side(contenders: dict[str, Callable[[int], None]], steps: int, repeats: int,
                 device: torch.device | str = "cpu", warmup: int | None = None) -> dict[str, float]:
    """Median steps/s of each contender, interleaved repeat by repeat after a warm-up of ``warmup``
    steps (default max(2, steps // 5)).

    On a CUDA ``device`` the device is synchronised before and after every timed block.
    """
    for fn in contenders.values():
        if warmup is None or warmup > 0:
            fn(max(2, steps // 5) if warmup is None else warmup)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            _sync(device)
            t0 = time.perf_counter()
            fn(steps)
            _sync(device)
            times[name].append(steps / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def backends(models_: tuple[str, ...] = ("mlp", "cnn"), workers: tuple[int, ...] = (4, 16, 64),
             budget: float = 0.5, repeats: int = 3, out=None, device: torch.device | str = "cpu") -> list[dict]:
    """steps/s of the stacked engine (vmap and unrolled execution) against the loop backend.

    LocalSGD with tau = 32, batch 32, MNIST-1D; image models (resnet20, vgg*) train on synthetic
    CIFAR-10-format data with augmentation, written to a temporary folder. ``budget`` is roughly
    the seconds of one loop-backend repeat; the step count is derived from a quick probe.
    On a CUDA ``device`` every timed block is synchronised (see `side_by_side`).
    """
    out = out or sys.stdout  # the current one (not the one at import)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models_:
            for m in workers:
                rows.append(_backend_row(model, m, budget, repeats, tmp, torch.device(device)))
                print(json.dumps(rows[-1]), file=out, flush=True)
    return rows


def _backend_row(model: str, m: int, budget: float, repeats: int, tmp: str,
                 device: torch.device | str = "cpu") -> dict:
    images = model in IMAGE_MODELS
    if images and not (Path(tmp) / cifar.FOLDERS["cifar10"]).exists():
        cifar.synthetic(tmp, "cifar10", train=2048, test=256)
    base = Config(algorithm="localsgd", workers=m, tau=32, model=model, batch_size=32,
                  dataset="cifar10" if images else "mnist1d", data_dir=tmp if images else None)
    contenders = {
        "vmap": _stepper(dataclasses.replace(base, execution="vmap"), device=device),
        "unrolled": _stepper(dataclasses.replace(base, execution="unrolled"), device=device),
        "loop": _stepper(dataclasses.replace(base, backend="loop"), device=device),
    }
    if not images and torch.device(device).type == "cpu":  # plain PyTorch: one model on the FLOP-equal batch M*B
        contenders["plain_MB"] = PlainTrainer(model, 32 * m).steps
    t0 = time.perf_counter()
    contenders["loop"](3)
    _sync(device)
    steps = max(3, int(budget / ((time.perf_counter() - t0) / 3)))
    rate = side_by_side(contenders, steps, repeats, device)
    return {"model": model, "workers": m, "steps": steps, "device": str(device),
            **{f"{k}_steps_per_s": round(v, 2) for k, v in rate.items()},
            "vmap_over_loop": round(rate["vmap"] / rate["loop"], 2),
            "unrolled_over_loop": round(rate["unrolled"] / rate["loop"], 2),
            **({"vmap_over_plain_MB": round(rate["vmap"] / rate["plain_MB"], 2)} if "plain_MB" in rate else {}),
            "auto": resolve_execution(base, device)}


def batched_runs(models_: tuple[str, ...] = ("mlp", "cnn"), seeds: int = 8, steps: int = 200, repeats: int = 3,
                 algorithm: str = "mgrawa", out=None, device: torch.device | str = "cpu") -> list[dict]:
    """Wall time of ``seeds`` whole runs (training and evaluation) one by one against one ensemble
    (`run_many`), interleaved repeat by repeat: the comparison's setting (MNIST-1D, M = 8, tau = 4)."""
    from grawa_sim.engine.run_many import run_many
    from grawa_sim.engine.runner import run

    out = out or sys.stdout
    rows = []
    for model in models_:
        base = Config(algorithm=algorithm, workers=8, tau=4, model=model, lr=0.05, momentum=0.9, weight_decay=1e-4,
                      batch_size=32, steps=steps, eval_every=steps)
        configs = [dataclasses.replace(base, seed=s) for s in range(seeds)]
        contenders = {"one_by_one": lambda n, cs=configs: [run(c, progress=False, device=device)
                                                           for _ in range(n) for c in cs],
                      "batched": lambda n, cs=configs: [run_many(cs, progress=False, device=device) for _ in range(n)]}
        rate = side_by_side(contenders, 1, repeats, device, warmup=0)  # all the seeds, once per repeat
        wall = {k: 1 / v for k, v in rate.items()}
        rows.append({"model": model, "runs": seeds, "workers": 8, "steps": steps, "device": str(device),
                     **{f"{k}_s": float(f"{v:.4g}") for k, v in wall.items()},
                     "batched_speedup": round(wall["one_by_one"] / wall["batched"], 2)})
        print(json.dumps(rows[-1]), file=out, flush=True)
    return rows


def parallel_sweeps(seeds: int = 3, steps: int = 100, repeats: int = 2, algorithms_: tuple[str, ...] | None = None,
                    workers: int = 8, out=None) -> dict:
    """Wall seconds of the comparison sweep (every compared algorithm x ``seeds`` seeds: 18 runs of the 1-D CNN,
    M = 8, ``steps`` local steps, one evaluation) computed four ways, interleaved repeat by repeat, each into a
    fresh folder: ``--jobs 1`` (one process, torch's own threads), ``--jobs 2`` (two processes, one thread
    each), and both with ``--batch-runs auto`` (each algorithm's seeds as one ensemble). Medians, and each
    way's speed-up over ``--jobs 1``."""
    import io

    from grawa_sim.experiments.presets import comparison_configs
    from grawa_sim.results.sweep import sweep

    out = out or sys.stdout
    configs = [dataclasses.replace(c, steps=steps, eval_every=steps, workers=workers)
               for c in comparison_configs(False, seeds=seeds, algorithms=algorithms_ or algorithms.COMPARED,
                                    twins=False)]
    ways = {"jobs1": (1, 1), "jobs2": (2, 1), "jobs1_batched": (1, "auto"), "jobs2_batched": (2, "auto")}
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for name, (jobs, batch_runs) in ways.items():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                sweep(configs, tmp, progress=False, log=io.StringIO(), jobs=jobs, batch_runs=batch_runs)
                times[name].append(time.perf_counter() - t0)
    wall = {k: statistics.median(v) for k, v in times.items()}
    row = {"runs": len(configs), "workers": workers, "steps": steps, "cpus": os.cpu_count(),
           **{f"{k}_s": float(f"{v:.4g}") for k, v in wall.items()},  # 4 digits: a speedup from them agrees
           **{f"{k}_speedup": round(wall["jobs1"] / v, 2) for k, v in wall.items() if k != "jobs1"}}
    print(json.dumps(row), file=out, flush=True)
    return row


def step_costs(workers: tuple[int, ...] = (16, 64), repeats: int = 5, out=None,
               device: torch.device | str = "cpu") -> list[dict]:
    """Two overheads of the stacked engine, measured side by side (MLP, MNIST-1D, B = 32):

    - ``stacked_over_plain``: seconds of one stacked SGD step of M workers over one step of plain PyTorch
      (`grawa_sim.bench.plain`: an nn.Module and torch.optim.SGD) on the FLOP-equal batch M*B;
    - ``stacked_over_single``: the same against the engine's own single model (M = 1) on the batch M*B;
    - ``round_over_steps``: seconds of one MGRAWA / LGRAWA round (probe gradients, scores, weights,
      the pull) over tau = 32 local steps of the same M workers.
    """
    out = out or sys.stdout
    rows = []
    for m in workers:
        stacked = build_problem(Config(algorithm="localsgd", workers=m, tau=32, batch_size=32), device)
        single = build_problem(Config(algorithm="localsgd", workers=1, tau=32, batch_size=32 * m), device)
        contenders = {"stacked": _train(stacked, rounds=False), "single": _train(single, rounds=False)}
        if torch.device(device).type == "cpu":
            contenders["plain"] = PlainTrainer("mlp", 32 * m).steps
        rate = side_by_side(contenders, 20, repeats, device)
        rows.append({"what": "step", "model": "mlp", "workers": m, "device": str(device),
                     "stacked_steps_per_s": round(rate["stacked"], 1),
                     "single_MB_steps_per_s": round(rate["single"], 1),
                     "stacked_over_single": round(rate["single"] / rate["stacked"], 2),
                     **({"plain_MB_steps_per_s": round(rate["plain"], 1),
                         "stacked_over_plain": round(rate["plain"] / rate["stacked"], 2)} if "plain" in rate else {})})
        print(json.dumps(rows[-1]), file=out, flush=True)
        for algorithm in ("mgrawa", "lgrawa"):
            problem = build_problem(Config(algorithm=algorithm, workers=m, tau=32, batch_size=32), device)
            rate = side_by_side({"round": lambda n, p=problem: [p.round() for _ in range(n)],
                                 "step": _train(problem, rounds=False)}, 32, repeats, device)
            rows.append({"what": "round", "algorithm": algorithm, "model": "mlp", "workers": m, "device": str(device),
                         "round_over_steps": round(rate["step"] / rate["round"] / 32, 3)})
            print(json.dumps(rows[-1]), file=out, flush=True)
    return rows


def memory(models_: tuple[str, ...] = ("mlp", "cnn"), workers: tuple[int, int] = (64, 1024), batch_size: int = 3,
           steps: int = 4, out=None) -> list[dict]:
    """Peak resident memory per worker on the CPU: a short MGRAWA run (``steps`` steps, a round every 2)
    at each of the two worker counts in a fresh process; KiB per worker = the difference of the two
    peaks over the difference of M. B = 3 lets M = 1024 fit MNIST-1D's 4000 training samples."""
    out = out or sys.stdout
    rows = []
    for model in models_:
        peaks = {}
        for m in workers:
            child = (f"from grawa_sim.bench.training import _peak_rss; "
                     f"_peak_rss({model!r}, {m}, {batch_size}, {steps})")
            done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            peaks[m] = json.loads(done.stdout.strip().splitlines()[-1])
        small, large = workers
        rows.append({"model": model, "batch_size": batch_size, "workers": list(workers),
                     "peak_kib": [peaks[m]["peak_kib"] for m in workers],
                     "seconds": [peaks[m]["seconds"] for m in workers],
                     "kib_per_worker": round((peaks[large]["peak_kib"] - peaks[small]["peak_kib"])
                                             / (large - small), 1)})
        print(json.dumps(rows[-1]), file=out, flush=True)
    return rows


def _peak_rss(model: str, workers: int, batch_size: int, steps: int) -> None:
    """In a fresh process: run one short MGRAWA run, print its peak resident memory (KiB) and seconds."""
    import resource

    from grawa_sim.engine.runner import run

    torch.set_num_threads(1)
    start = time.perf_counter()
    run(Config(algorithm="mgrawa", workers=workers, tau=2, steps=steps, eval_every=steps, model=model,
               batch_size=batch_size), progress=False)
    print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "seconds": round(time.perf_counter() - start, 2)}))


def float32_gap(steps: int = 100, out=None, device: torch.device | str = "cpu") -> list[dict]:
    """Max |vmap - loop| over final worker parameters and history, float32 vs float64, every algorithm.

    Same settings as the parity tests (M = 3, tau = 8, momentum 0.9, weight decay 1e-3).
    """
    out = out or sys.stdout  # the current one (not the one at import)
    from grawa_sim.config import ALGORITHMS
    from grawa_sim.engine.runner import run
    from grawa_sim.experiments.presets import method_name

    rows = []
    cases = [(m, a, sam) for m in ("mlp", "cnn_bn") for a in ALGORITHMS for sam in (False, True)
             if not sam or algorithms.get(a).takes_sam]
    for model, algorithm, sam in cases:
        row = {"model": model, "algorithm": method_name(algorithm, sam)}
        for dtype in ("float32", "float64"):
            cfg = Config(algorithm=algorithm, sam=sam, model=model, dtype=dtype, workers=3, steps=steps, tau=8,
                         lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=16, eval_every=steps)
            fast = run(cfg, progress=False, device=device)
            ref = run(Config(**{**cfg.__dict__, "backend": "loop"}), progress=False, device=device)
            gap = max(float((fast.workers[n] - ref.workers[n]).abs().max()) for n in fast.workers)
            row[f"{dtype}_param_gap"] = float(f"{gap:.2e}")
            cols = ["train_loss", "test_loss"]
            row[f"{dtype}_loss_gap"] = float(f"{(fast.history[cols] - ref.history[cols]).abs().max().max():.2e}")
        print(json.dumps(row), file=out, flush=True)
        rows.append(row)
    return rows


def resolve_execution(cfg: Config, device: torch.device | str = "cpu") -> str:
    """What execution="auto" picks for cfg's model on ``device``."""
    from grawa_sim.models.execution import choose_execution

    model, _ = model_and_data(cfg)
    return choose_execution(model, "auto", torch.device(device))


DISTRIBUTED_BENCH = Config(algorithm="mgrawa", workers=8, tau=32, model="mlp", dataset="mnist1d", batch_size=32)


def distributed(steps: int = 200, repeats: int = 3, out=None) -> dict:
    """steps/s of the one-process simulator (M = 8) against 8 gloo processes with one worker each.

    Same config (MGRAWA, tau 32, MLP, B 32). The simulator is timed in this process; the
    distributed run is started with torchrun and times itself on rank 0 after a warm-up and
    a barrier (process start-up excluded). Repeats alternate simulator / distributed.
    """
    out = out or sys.stdout  # the current one (not the one at import)
    import subprocess
    import tempfile

    from grawa_sim.core.ports import torchrun_command

    sim = _stepper(DISTRIBUTED_BENCH)
    sim(20)
    sim_rates, dist_rates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sim(steps)
        sim_rates.append(steps / (time.perf_counter() - t0))
        with tempfile.TemporaryDirectory() as tmp:
            rate_file = f"{tmp}/rate"
            ranks = DISTRIBUTED_BENCH.workers
            command = torchrun_command(ranks, ["-m", "grawa_sim.bench.training", rate_file, str(steps)])
            subprocess.run(command, check=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
            with open(rate_file) as f:
                dist_rates.append(float(f.read()))
    row = {"config": "mgrawa M=8 tau=32 mlp B=32", "steps": steps,
           "simulator_steps_per_s": round(statistics.median(sim_rates), 1),
           "gloo_8_processes_steps_per_s": round(statistics.median(dist_rates), 1),
           "simulator_over_distributed": round(statistics.median(sim_rates) / statistics.median(dist_rates), 2)}
    print(json.dumps(row), file=out, flush=True)
    return row


def _distributed_rank_main(rate_file: str, steps: int) -> None:
    """Under torchrun: time ``steps`` training steps of this rank's share of DISTRIBUTED_BENCH."""
    import torch.distributed as dist

    from grawa_sim.core.collectives import DistributedAxis

    dist.init_process_group("gloo")
    axis = DistributedAxis(DISTRIBUTED_BENCH.workers, dist.get_rank(), dist.get_world_size())
    step = _stepper(DISTRIBUTED_BENCH, axis)
    step(20)
    dist.barrier()
    t0 = time.perf_counter()
    step(steps)
    dist.barrier()
    rate = steps / (time.perf_counter() - t0)
    if dist.get_rank() == 0:
        with open(rate_file, "w") as f:
            f.write(str(rate))
    dist.destroy_process_group()


if __name__ == "__main__":
    _distributed_rank_main(sys.argv[1], int(sys.argv[2]))
