"""The prepared GPU check: `python -m grawa_sim bench --gpu [--out FILE.json]`.

On one CUDA device, in under 5 minutes, it measures side by side in one process:

- ``training``: steps/s of the stacked engine (``vmap``) against the per-worker loop backend
  (``loop``) at M in {8, 64, 256} for the MLP and the 1-D CNN on MNIST-1D and ResNet-20 on
  synthetic CIFAR-10-format data (LocalSGD, tau 32, B 32), the vmap/loop ratio, and the peak
  device memory (``torch.cuda.max_memory_allocated``) of each engine, in total and per worker;
- ``flatness``: lambda_max by power iteration of M = 8 trained workers, all workers in one
  vmapped call, against PyHessian one worker at a time (where pyhessian imports; else skipped
  with a note), seconds per worker and agreement.

Timing: the device is synchronised before and after every timed block
(``torch.cuda.synchronize``); every contender is warmed up first; contenders are interleaved
(vmap, loop, vmap, loop, ...) over ``repeats`` and the medians reported. Each cell has a time
cap: a contender whose single step is too slow for ``repeats`` full repeats is measured on
fewer steps or repeats (``steps``/``repeats`` in its entry, and a ``note``), and a cell or
section that the caps leave no time for is skipped with a note. An error in one cell is
recorded in the JSON (``error``) and the check goes on. A watchdog writes what was measured
and ends the process if the whole check ever runs past its hard limit.

The same harness runs on the CPU with tiny sizes (``check(device="cpu", ...)``), which is
how the tests exercise it.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from grawa_sim.bench.flatness import sync, timed_call
from grawa_sim.core.folders import write_atomic

MODELS = ("mlp", "cnn", "resnet20")
WORKERS = (8, 64, 256)
TOTAL_CAP = 240.0  # seconds: the check plans to finish within this ...
HARD_CAP = 280.0  # ... and the watchdog ends it here (exit 3); with start-up and install, under 300 s
SECTION_SHARE = {"training": 0.78, "flatness": 0.22}  # of what is left after setup
MODEL_WEIGHT = {"mlp": 1.0, "cnn": 1.3, "resnet20": 2.5}  # a cell's share of the training section ...
LARGE_M_WEIGHT = 1.3  # ... times this for M > 64


def cell_weight(model: str, m: int) -> float:
    return MODEL_WEIGHT.get(model, 2.5) * (LARGE_M_WEIGHT if m > 64 else 1.0)


def training_order(models: tuple[str, ...], workers: tuple[int, ...]) -> list[tuple[str, int]]:
    """The cells, the goals' first: every model at M <= 64, then the larger M (the first to skip)."""
    small = [(model, m) for model in models for m in workers if m <= 64]
    return small + [(model, m) for model in models for m in workers if m > 64]


class Stopwatch:
    """Seconds since the check began, and deadlines."""

    def __init__(self):
        self.start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.start


def _timed(fn: Callable[[int], None], steps: int, device: torch.device) -> float:
    """Seconds for fn(steps), the device synchronised before and after."""
    return timed_call(lambda: fn(steps), device)[1]


def _reset_memory(device: torch.device) -> int:
    """Free cached blocks, reset the peak counter; the bytes still allocated (the baseline)."""
    gc.collect()
    if device.type != "cuda":
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def measure(contenders: dict[str, Callable[[int], None]], device: torch.device, budget: float, repeats: int,
            max_steps: int = 400, warm_up: bool = True) -> dict[str, dict]:
    """Median steps/s of each contender, interleaved, within about ``budget`` seconds.

    Each contender: one warm-up step (``warm_up``), one calibration step, then ``repeats`` interleaved
    repeats of ``steps`` steps, ``steps`` chosen from the calibration so that all repeats fit
    the budget (at least 1). A contender whose calibration step alone uses up its share is
    measured on that one step (``note``); later repeats are dropped when the budget runs out.
    """
    t_start = time.perf_counter()
    end = t_start + budget
    out: dict[str, dict] = {}
    for name, fn in contenders.items():
        warm = _timed(fn, 1, device) if warm_up else None
        calib = _timed(fn, 1, device)
        out[name] = {"calibration_s_per_step": round(calib, 5), "rates": []}
        if warm is not None:
            out[name]["warmup_s"] = round(warm, 4)
    live = dict(contenders)
    share = max(0.0, end - time.perf_counter()) / max(1, repeats * len(live))
    for name in contenders:
        per_step = out[name]["calibration_s_per_step"]
        if per_step > share:
            out[name]["steps"] = 1
            out[name]["rates"] = [1.0 / per_step]
            out[name]["note"] = (f"one step ({per_step:.2f} s) exceeds the time cap's share ({share:.2f} s): "
                                 f"measured on the single calibration step")
            del live[name]
        else:
            out[name]["steps"] = max(1, min(max_steps, int(share / max(per_step, 1e-6))))
    for r in range(repeats):
        if r and time.perf_counter() > end:
            for name in live:
                out[name]["note"] = f"time cap: {r} of {repeats} repeats"
            break
        for name, fn in live.items():
            out[name]["rates"].append(out[name]["steps"] / _timed(fn, out[name]["steps"], device))
    for entry in out.values():
        entry["repeats"] = len(entry["rates"])
        entry["steps_per_s"] = round(statistics.median(entry["rates"]), 3)
        entry["rates"] = [round(v, 3) for v in entry["rates"]]
    return out


def _training_cell(model: str, m: int, device: torch.device, budget: float, repeats: int, data_dir: str,
                   batch_size: int) -> dict:
    from grawa_sim.bench.training import _stepper
    from grawa_sim.config import IMAGE_MODELS, Config

    images = model in IMAGE_MODELS
    base = Config(algorithm="localsgd", workers=m, tau=32, model=model, batch_size=batch_size,
                  dataset="cifar10" if images else "mnist1d", data_dir=data_dir if images else None)
    row: dict = {"model": model, "workers": m, "batch_size": batch_size, "tau": 32, "algorithm": "localsgd",
                 "dataset": base.dataset}
    t0 = time.perf_counter()
    memory = {}
    steppers = {}
    # each engine alone first: its peak memory, then both interleaved for the timing
    for name, cfg in (("vmap", dataclasses.replace(base, execution="vmap")),
                      ("loop", dataclasses.replace(base, backend="loop"))):
        baseline = _reset_memory(device)
        fn = _stepper(cfg, device=device)
        warm = _timed(fn, 1, device)  # the warm-up step: allocations of a step and of the optimiser state
        sync(device)
        peak = _peak(device)
        if peak is not None:
            memory[name] = {"peak_bytes": peak - baseline, "peak_bytes_per_worker": (peak - baseline) // m}
        memory.setdefault(name, {})["warmup_s"] = round(warm, 4)
        steppers[name] = fn
    setup = time.perf_counter() - t0
    result = measure(steppers, device, max(0.0, budget - setup), repeats, warm_up=False)
    row["setup_s"] = round(setup, 2)
    for name, entry in result.items():
        row[name] = {**entry, **memory.get(name, {})}
    row["vmap_steps_per_s"] = result["vmap"]["steps_per_s"]
    row["loop_steps_per_s"] = result["loop"]["steps_per_s"]
    row["vmap_over_loop"] = round(result["vmap"]["steps_per_s"] / result["loop"]["steps_per_s"], 2)
    if "peak_bytes" in memory["vmap"]:
        row["peak_bytes_per_worker_vmap"] = memory["vmap"]["peak_bytes_per_worker"]
        row["peak_bytes_per_worker_loop"] = memory["loop"]["peak_bytes_per_worker"]
    else:
        row["memory_note"] = "peak memory is measured on CUDA devices only"
    steppers.clear()
    _reset_memory(device)
    return row


def _pyhessian():
    try:
        from pyhessian import hessian
    except Exception as err:  # missing, or broken on this torch
        return None, f"{type(err).__name__}: {err}"
    return hessian, None


def _flatness_cell(model: str, device: torch.device, workers: int, iters: int, train_steps: int, repeats: int,
                   budget: float) -> dict:
    """lambda_max of ``workers`` trained workers: ours (vmapped, one call) against PyHessian per worker."""
    import copy
    import warnings

    from grawa_sim import flatness
    from grawa_sim.bench.flatness import _trained_workers
    from grawa_sim.flatness.core import Batched, Layout

    t_start = time.perf_counter()
    template, data, stacked, buffers = _trained_workers(model, "mnist1d", workers, train_steps, seed=0)
    template = template.to(device)
    stacked = {n: p.to(device) for n, p in stacked.items()}
    buffers = {n: b.to(device) for n, b in buffers.items()}
    loss_fn = flatness.model_loss(template, data, probe=320, seed=0)
    with torch.random.fork_rng(devices=[]):  # PyHessian's start vector after torch.manual_seed(0)
        torch.manual_seed(0)
        init = torch.cat([torch.randn(p[0].shape).flatten() for p in stacked.values()])
    row: dict = {"model": model, "workers": workers, "iters": iters, "probe": 320,
                 "params": Layout(stacked, lead=1).size, "dtype": str(next(iter(stacked.values())).dtype)}

    def ours() -> list[float]:
        op = Batched(loss_fn, stacked, None, "vmap", "reverse")
        lam, _, _ = flatness.stacked_top_eigenvalue(op, iters, tol=0.0, init=init)
        return lam.tolist()

    hessian, missing = _pyhessian()
    criterion = torch.nn.CrossEntropyLoss()

    def theirs() -> list[float]:
        lams = []
        for i in range(workers):
            net = copy.deepcopy(template)
            net.load_state_dict({**{n: p[i] for n, p in stacked.items()}, **{n: b[i] for n, b in buffers.items()}})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                h = hessian(net, criterion, data=(loss_fn.x, loss_fn.y), cuda=device.type == "cuda")
                torch.manual_seed(0)
                eig, _ = h.eigenvalues(maxIter=iters, tol=0.0, top_n=1)
            lams.append(float(eig[0]))
        return lams

    runs = {"ours_vmap": ours}
    if hessian is None:
        row["pyhessian_note"] = f"skipped: pyhessian does not import ({missing})"
    else:
        runs["pyhessian"] = theirs
    times: dict[str, list[float]] = {k: [] for k in runs}
    values: dict[str, list[float]] = {}
    end = t_start + budget
    for name, fn in runs.items():  # warm-up (and the values if the cap stops us)
        values[name], seconds = timed_call(fn, device)
        row[f"{name}_warmup_s"] = round(seconds, 4)
    for r in range(repeats):
        if time.perf_counter() > end:
            row["note"] = f"time cap: {r} of {repeats} timed repeats"
            break
        for name, fn in runs.items():
            values[name], seconds = timed_call(fn, device)
            times[name].append(seconds)
    for name in runs:
        measured = times[name] or [row[f"{name}_warmup_s"]]  # no repeat fitted: the warm-up, an upper bound
        row[f"{name}_s_per_worker"] = round(statistics.median(measured) / workers, 5)
        row[f"{name}_repeats"] = len(times[name])
        row[f"{name}_lambda_max"] = [round(v, 5) for v in values[name]]
    if "pyhessian" in runs:
        ref = values["pyhessian"]
        worst = max(100 * abs(a - b) / abs(b) for a, b in zip(values["ours_vmap"], ref))
        row["lambda_agreement_pct"] = float(f"{worst:.2e}")
        row["speedup_over_pyhessian"] = round(row["pyhessian_s_per_worker"] / row["ours_vmap_s_per_worker"], 2)
    return row


def _environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads(), "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_bytes=props.total_memory,
                   tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                   cudnn=torch.backends.cudnn.version())
    return env


def check(device: str | torch.device = "cuda", models: tuple[str, ...] = MODELS, workers: tuple[int, ...] = WORKERS,
          total_cap: float = TOTAL_CAP, hard_cap: float | None = HARD_CAP, repeats: int = 3, batch_size: int = 32,
          flatness_models: tuple[str, ...] = ("mlp", "cnn"), flatness_workers: int = 8, flatness_iters: int = 50,
          flatness_train_steps: int = 100, out: str | Path | None = None, log=None) -> dict:
    """Run the GPU check on ``device``; the report as a dict (also written to ``out`` as JSON after every cell).

    ``total_cap``: the seconds the check plans with (training, then flatness, each with its
    share; a cell gets its share of what is left); ``hard_cap``: a watchdog writes the report
    and ends the process (exit 3) if the check is still running then (None: no watchdog).
    """
    log = log or sys.stdout  # the current one (not the one at import)
    device = torch.device(device)
    clock = Stopwatch()
    report: dict = {"check": "grawa_sim bench --gpu", "caps_s": {"total": total_cap, "hard": hard_cap},
                    "environment": _environment(device), "training": [], "flatness": [], "notes": [
                        "steps/s: median over interleaved repeats after a warm-up step, device synchronised "
                        "around every timed block; LocalSGD tau 32 (rounds included when a repeat spans one)",
                        "peak_bytes: torch.cuda.max_memory_allocated during the engine's set-up and first "
                        "step (the warm-up), less what was allocated before; it includes the data set on the device",
                        "run-axis speed-up (run_many): not implemented yet, not measured"]}
    lock = threading.Lock()

    def save() -> None:
        report["elapsed_s"] = round(clock.now(), 1)
        if out is not None:
            with lock:
                text = json.dumps(report, indent=1, default=str)
                write_atomic(out, lambda tmp: tmp.write_text(text))

    watchdog = None
    if hard_cap is not None:
        def abort() -> None:
            report["aborted"] = f"hard cap of {hard_cap:g} s reached: the report holds what was measured"
            print(f"bench --gpu: {report['aborted']}", file=log, flush=True)
            try:
                save()
            finally:
                os._exit(3)

        watchdog = threading.Timer(hard_cap, abort)
        watchdog.daemon = True
        watchdog.start()

    def say(text: str) -> None:
        print(f"[{clock.now():6.1f}s] {text}", file=log, flush=True)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = clock.now()
            try:
                from grawa_sim.data import cifar
                from grawa_sim.data.datasets import load

                load("mnist1d")  # generated once, cached
                if any(m in ("resnet20",) or m.startswith("vgg") for m in models):
                    cifar.synthetic(tmp, "cifar10", train=2048, test=256)
                if device.type == "cuda":
                    torch.ones(1, device=device).sum().item()  # CUDA context
            except Exception as err:  # noqa: BLE001 - recorded, the sections will fail and say so too
                report["setup_error"] = f"{type(err).__name__}: {err}"
            report["setup_s"] = round(clock.now() - t0, 2)
            say(f"setup {report['setup_s']} s on {device}")
            save()

            left = max(0.0, total_cap - clock.now())
            training_end = clock.now() + SECTION_SHARE["training"] * left
            cells = training_order(models, workers)
            for k, (model, m) in enumerate(cells):
                weights = [cell_weight(*c) for c in cells[k:]]
                budget = (training_end - clock.now()) * weights[0] / sum(weights)
                if budget < 0.5:
                    report["training"].append({"model": model, "workers": m,
                                               "skipped": "time cap: no time left in the training section"})
                    say(f"training {model} M={m}: skipped (time cap)")
                    save()
                    continue
                try:
                    row = _training_cell(model, m, device, budget, repeats, tmp, batch_size)
                    say(f"training {model} M={m}: vmap {row['vmap_steps_per_s']} steps/s, loop "
                        f"{row['loop_steps_per_s']} steps/s, ratio {row['vmap_over_loop']}")
                except Exception as err:  # noqa: BLE001 - recorded, the check goes on
                    row = {"model": model, "workers": m, "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc(limit=4)}
                    say(f"training {model} M={m}: error {row['error']}")
                    _reset_memory(device)
                row["budget_s"] = round(budget, 1)
                report["training"].append(row)
                save()

            flat_end = total_cap
            for i, model in enumerate(flatness_models):
                budget = (flat_end - clock.now()) / (len(flatness_models) - i)
                if budget < 1.0:
                    report["flatness"].append({"model": model, "skipped": "time cap: no time left for flatness"})
                    say(f"flatness {model}: skipped (time cap)")
                    continue
                try:
                    row = _flatness_cell(model, device, flatness_workers, flatness_iters, flatness_train_steps,
                                         repeats, budget)
                    say(f"flatness {model}: ours {row['ours_vmap_s_per_worker']} s/worker"
                        + (f", pyhessian {row['pyhessian_s_per_worker']} s/worker" if "pyhessian_s_per_worker"
                           in row else f" ({row.get('pyhessian_note')})"))
                except Exception as err:  # noqa: BLE001
                    row = {"model": model, "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc(limit=4)}
                    say(f"flatness {model}: error {row['error']}")
                row["budget_s"] = round(budget, 1)
                report["flatness"].append(row)
                save()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    save()
    print(table(report), file=log, flush=True)
    return report


def table(report: dict) -> str:
    """The short summary printed at the end."""
    env = report["environment"]
    lines = [f"GPU check on {env.get('gpu', env['device'])} (torch {env['torch']}), {report.get('elapsed_s')} s",
             f"{'model':<9} {'M':>4} {'vmap st/s':>10} {'loop st/s':>10} {'vmap/loop':>9} {'MiB/worker':>10}  note"]
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in report["training"]))}
    for r in sorted(report["training"], key=lambda r: (order[r["model"]], r["workers"])):
        if "vmap_steps_per_s" not in r:
            lines.append(f"{r['model']:<9} {r['workers']:>4} {'-':>10} {'-':>10} {'-':>9} {'-':>10}  "
                         f"{r.get('error') or r.get('skipped')}")
            continue
        mem = r.get("peak_bytes_per_worker_vmap")
        mem = f"{mem / 2**20:.2f}" if mem is not None else "-"
        note = "; ".join(f"{k}: {r[k]['note']}" for k in ("vmap", "loop") if "note" in r[k])
        lines.append(f"{r['model']:<9} {r['workers']:>4} {r['vmap_steps_per_s']:>10.2f} {r['loop_steps_per_s']:>10.2f} "
                     f"{r['vmap_over_loop']:>9.2f} {mem:>10}  {note}")
    for r in report["flatness"]:
        if "ours_vmap_s_per_worker" not in r:
            lines.append(f"flatness {r['model']}: {r.get('error') or r.get('skipped')}")
        elif "pyhessian_s_per_worker" in r:
            lines.append(f"flatness {r['model']} M={r['workers']}: lambda_max ours {r['ours_vmap_s_per_worker']} "
                         f"s/worker, PyHessian {r['pyhessian_s_per_worker']} s/worker, speed-up "
                         f"{r['speedup_over_pyhessian']}x, max disagreement {r['lambda_agreement_pct']} %")
        else:
            lines.append(f"flatness {r['model']} M={r['workers']}: lambda_max ours {r['ours_vmap_s_per_worker']} "
                         f"s/worker; {r['pyhessian_note']}")
    if "aborted" in report:
        lines.append(report["aborted"])
    return "\n".join(lines)
