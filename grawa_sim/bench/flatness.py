"""Flatness benchmark: lambda_max and the Hessian trace against PyHessian, side by side in one process.

PyHessian (Yao et al. 2020, GPL-3.0) is an optional benchmark dependency only
(``pip install pyhessian``); it is imported inside `compare` and never vendored.

Both sides measure the same M = 8 trained workers (a short LocalSGD run) on the same
batch (the 320-sample probe set of `flatness.model_loss`), with the same iterations
(power iteration: ``iters`` products, no early stop; Hutchinson: ``samples`` probes)
and the same random vectors: PyHessian draws them from torch's global generator, so the
benchmark replays those draws (same seed, same calls, same order) and hands them to our
functions. Agreement is then limited only by floating-point rounding.

Timing: ours measures all M workers in one call (one vmapped Hessian-vector product per
iteration); PyHessian one model at a time. Contenders alternate within each repeat
(ours, PyHessian, ours, ...) and the medians are reported, per worker.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import torch

from grawa_sim import flatness
from grawa_sim.flatness.core import Batched, Layout

T = TypeVar("T")

PYHESSIAN_MISSING = ("pyhessian is not installed: the flatness benchmark compares against it. "
                     "Install it into this environment with `pip install pyhessian` (GPL-3.0, benchmark only).")


def _pyhessian():
    try:
        from pyhessian import hessian
    except ImportError as err:  # also a broken install (e.g. an import error inside the package)
        raise SystemExit(f"{PYHESSIAN_MISSING} ({err})") from err
    return hessian


def _trained_workers(model: str, dataset: str, workers: int, steps: int, seed: int):
    """Model template, data and the stacked parameters of ``workers`` workers after a short LocalSGD run."""
    from grawa_sim.config import Config
    from grawa_sim.engine.problem import model_and_data
    from grawa_sim.engine.runner import run

    cfg = Config(algorithm="localsgd", workers=workers, tau=16, steps=steps, model=model, dataset=dataset,
                 seed=seed, eval_every=steps)
    result = run(cfg, progress=False)
    template, data = model_and_data(cfg)
    return template, data, result.workers, result.buffers


def _replayed_draws(params: list[torch.Tensor], seed: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The start vector and the Rademacher probes PyHessian draws after ``torch.manual_seed(seed)``.

    PyHessian's power iteration draws ``torch.randn(p.size())`` per parameter; its trace draws
    ``torch.randint_like(p, high=2)`` per parameter and probe and maps 0 to -1.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init = torch.cat([torch.randn(p.size()).flatten() for p in params])
        torch.manual_seed(seed)
        probes = []
        for _ in range(samples):
            v = torch.cat([torch.randint_like(p, high=2).flatten() for p in params])
            probes.append(torch.where(v == 0, -1.0, 1.0))
    return init, torch.stack(probes)


def _module(template: torch.nn.Module, stacked: dict, buffers: dict, i: int) -> torch.nn.Module:
    m = copy.deepcopy(template)
    m.load_state_dict({**{n: p[i] for n, p in stacked.items()}, **{n: b[i] for n, b in buffers.items()}})
    return m


def _theirs(hessian, template, stacked, buffers, batch, seed: int, iters: int, samples: int, cuda: bool = False):
    """PyHessian, one worker at a time: (lambda_max per worker, trace estimate per worker)."""
    criterion = torch.nn.CrossEntropyLoss()
    lams, traces = [], []
    for i in range(next(iter(stacked.values())).shape[0]):
        with warnings.catch_warnings():  # its backward(create_graph=True) warns about a reference cycle
            warnings.simplefilter("ignore", UserWarning)
            h = hessian(_module(template, stacked, buffers, i), criterion, data=batch, cuda=cuda)
        torch.manual_seed(seed)
        eig, _ = h.eigenvalues(maxIter=iters, tol=0.0, top_n=1)  # tol 0: all iters
        torch.manual_seed(seed)
        vhv = h.trace(maxIter=samples, tol=0.0)
        if len(vhv) != samples:
            raise RuntimeError(f"pyhessian stopped its trace after {len(vhv)} of {samples} probes")
        lams.append(eig[0])
        traces.append(sum(vhv) / len(vhv))
    return lams, traces


def _ours(contender: str, loss_fn, stacked, init, probes, iters: int):
    """Ours, all workers in one call: (lambda_max per worker, trace estimate per worker)."""
    execution, method = contender.split("/")
    op = Batched(loss_fn, stacked, None, execution, method)
    lam, _, _ = flatness.stacked_power_iteration(op, iters, tol=0.0, init=init)  # PyHessian's quantity
    est, _ = flatness.stacked_hessian_trace(op, probes=probes)
    return lam.tolist(), est.tolist()


def compare(models: tuple[str, ...] = ("mlp", "cnn"), dataset: str = "mnist1d", workers: int = 8,
            probe: int = 320, iters: int = 100, samples: int = 100, train_steps: int = 200, repeats: int = 3,
            contenders: tuple[str, ...] = ("vmap/reverse", "unrolled/reverse"),
            seed: int = 0,
            out=None, device: torch.device | str = "cpu") -> list[dict]:
    """Our lambda_max and Hutchinson trace vs PyHessian's: agreement (%) and seconds per worker.

    ``contenders``: ours as ``execution/method`` (`flatness.core.Batched`): ``vmap`` measures
    all workers in one vmapped call per product, ``unrolled`` one model after another in one
    call (``auto`` picks one of the two for the model, as training does); ``reverse`` reuses
    the gradient graph (as PyHessian does), ``forward`` is
    ``jvp(grad(.))``. One JSON line per model and contender; ``auto_picks`` names what ``auto`` runs for
    the model (`choose_execution` with ``second_order``), so auto's row is the contender it picks (the
    default leaves out ``auto/reverse``, which would time that contender twice, and ``vmap/forward``,
    0.49x PyHessian on the MLP and the slowest of them: docs/benchmarks.md). ``device``: where both sides
    measure (the workers are trained on the CPU, then moved); CUDA timings are synchronised.
    """
    from grawa_sim.models.execution import choose_execution

    out = out or sys.stdout  # the current one (not the one at import)
    device = torch.device(device)
    hessian = _pyhessian()
    rows = []
    for model in models:
        template, data, stacked, buffers = _trained_workers(model, dataset, workers, train_steps, seed)
        template = template.to(device)
        stacked = {n: p.to(device) for n, p in stacked.items()}
        buffers = {n: b.to(device) for n, b in buffers.items()}
        if data.classes == 0:
            raise ValueError(f"dataset: the PyHessian comparison needs a classification set (got {dataset!r})")
        loss_fn = flatness.model_loss(template, data, probe=probe, seed=seed)
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in template.modules()):
            raise ValueError(f"model: PyHessian measures in eval mode, use a model without batch norm (got {model!r})")
        x, y = loss_fn.x, loss_fn.y
        init, probes = _replayed_draws([p[0].cpu() for p in stacked.values()], seed, samples)

        runs = {"pyhessian": partial(_theirs, hessian, template, stacked, buffers, (x, y), seed, iters, samples,
                                     device.type == "cuda"),
                **{c: partial(_ours, c, loss_fn, stacked, init, probes, iters) for c in contenders}}
        times: dict[str, list[float]] = {k: [] for k in runs}
        values: dict[str, tuple[list[float], list[float]]] = {}
        for _ in range(repeats):
            for name, fn in runs.items():
                values[name], seconds = timed_call(fn, device)
                times[name].append(seconds)
        auto = choose_execution(template, "auto", device, second_order=True)
        ref_lam, ref_tr = values["pyhessian"]
        theirs_s = statistics.median(times["pyhessian"]) / workers
        n = Layout(stacked, lead=1).size
        for name in contenders:
            lam, tr = values[name]
            ours_s = statistics.median(times[name]) / workers
            row = {
                "model": model, "params": n, "workers": workers, "probe": probe, "iters": iters, "samples": samples,
                "threads": torch.get_num_threads(), "device": str(device), "contender": name, "auto_picks": auto,
                "lambda_max_pyhessian": round(statistics.mean(ref_lam), 4),
                "trace_pyhessian": round(statistics.mean(ref_tr), 3),
                "lambda_agreement_pct": float(f"{max(_pct(a, b) for a, b in zip(lam, ref_lam)):.2e}"),
                "trace_agreement_pct": float(f"{max(_pct(a, b) for a, b in zip(tr, ref_tr)):.2e}"),
                "s_per_worker": round(ours_s, 4), "pyhessian_s_per_worker": round(theirs_s, 4),
                "speedup": round(theirs_s / ours_s, 2),
            }
            print(json.dumps(row), file=out, flush=True)
            rows.append(row)
    return rows


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(fn(), seconds it took), the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    value = fn()
    sync(device)
    return value, time.perf_counter() - t0


def _pct(a: float, b: float) -> float:
    """|a - b| / |b| in percent."""
    return 100 * abs(a - b) / abs(b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grawa_sim.bench.flatness", description=compare.__doc__)
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    compare(tuple(args.models.split(",")), workers=args.workers, iters=args.iters, samples=args.samples,
            repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
