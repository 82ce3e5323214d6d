"""Loss closures of models on a fixed probe set, and the metric table of a run (evaluated model + workers).

Batch norm: by default the loss is measured in *train* mode (batch statistics of the
probe batch, running statistics neither used nor updated) on a fixed probe set of 320
training samples drawn with a fixed seed, as the GRAWA authors' flatness code does.
``mode="eval"`` uses the running statistics instead (the evaluated model: the mean of
the workers' statistics; a worker: its own).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from grawa_sim.flatness.core import Batched, LossClosure, Params
from grawa_sim.flatness.sharpness import stacked_epsilon_sharpness
from grawa_sim.flatness.spectrum import stacked_hessian_trace, stacked_lanczos_spectrum, stacked_top_eigenvalue

MODES = ("train", "eval")
METRICS = ("loss", "lambda_max", "trace", "lanczos", "eps_sharpness")
FLATNESS_CSV = "flatness.csv"


def probe_indices(train_size: int, size: int | None = 320, seed: int = 0) -> torch.Tensor:
    """The fixed probe set: the first ``size`` of a seeded permutation of the training set (all when None)."""
    perm = torch.randperm(train_size, generator=torch.Generator().manual_seed(seed))
    return perm if size is None else perm[: min(size, train_size)]


class ModelLoss:
    """``loss_fn(params, buffers=None)``: mean per-sample loss of ``model`` on a fixed batch (x, y).

    Built by `model_loss`. ``params`` is a full parameter dict of ``model``. In
    ``mode="train"`` batch norm uses the batch's statistics (``buffers`` are ignored);
    in ``mode="eval"`` it uses ``buffers`` (default: the ones given at construction).
    Pure: nothing is updated in place, so it serves torch.func transforms and vmap.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, per_sample, mode: str = "train",
                 buffers: Params | None = None):
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
        self.model = copy.deepcopy(model)
        if mode == "train":
            torch.func.replace_all_batch_norm_modules_(self.model)  # batch statistics, no running ones
            self.model.train()
            self.buffers: Params = {}
        else:
            self.model.eval()
            self.buffers = {n: b.detach() for n, b in (buffers or dict(model.named_buffers())).items()}
        self.x, self.y, self.per_sample, self.mode = x, y, per_sample, mode

    def __call__(self, params: Params, buffers: Params | None = None) -> torch.Tensor:
        tensors = dict(params)
        if self.mode == "eval":
            tensors.update(self.buffers if buffers is None else buffers)
        out = functional_call(self.model, tensors, (self.x,))
        return self.per_sample(out, self.y).mean()


def model_loss(model: nn.Module, data, *, mode: str = "train", probe: int | None = 320, seed: int = 0,
               buffers: Params | None = None) -> ModelLoss:
    """The loss closure of ``model`` on ``probe`` training samples of ``data`` (a grawa_sim Dataset).

    Cross-entropy for classification, 0.5 * squared error for regression (the training
    loss), averaged over the probe set `probe_indices(len(train), probe, seed)`;
    ``probe=None`` uses the whole training set. See `ModelLoss` for ``mode``.
    """
    from grawa_sim.ensemble import per_sample_loss

    idx = probe_indices(len(data.y_train), probe, seed)
    device = next(model.parameters()).device
    return ModelLoss(model, data.x_train[idx].to(device), data.y_train[idx].to(device),
                     per_sample_loss(data.classes), mode, buffers)


@dataclass(frozen=True)
class Settings:
    """Iteration counts of the metrics; ``seed`` seeds every random vector (same for every model).

    Lanczos defaults to the reference code's 100 steps and 3 random starts; epsilon-sharpness
    to Keskar et al.'s eps = 1e-3.
    """

    power_iters: int = 100
    power_tol: float = 1e-4
    trace_samples: int = 100
    lanczos_steps: int = 100
    lanczos_starts: int = 3
    lanczos_k: int = 5
    eps: float = 1e-3
    eps_steps: int = 20
    eps_restarts: int = 1
    seed: int = 0
    method: str = "reverse"


def stacked_measure(op: Batched, metrics: Sequence[str] = METRICS, settings: Settings = Settings()) -> dict:
    """Every requested metric of the M models of ``op``: column name -> tensor [M].

    Columns: ``loss``; ``lambda_max``, ``lambda_max_converged``, ``lambda_max_iters``
    (power iteration); ``trace``, ``trace_se`` (Hutchinson); ``ritz_max``, ``ritz_sum``
    (Lanczos; ``ritz_sum`` is the authors' "trace", not ``trace``); ``eps_sharpness`` (%).
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"metrics: must be among {', '.join(METRICS)} (got {sorted(unknown)})")
    s, out = settings, {}
    if "loss" in metrics:
        out["loss"] = op.loss().double()
    if "lambda_max" in metrics:
        out["lambda_max"], out["lambda_max_converged"], out["lambda_max_iters"] = stacked_top_eigenvalue(
            op, s.power_iters, s.power_tol, s.seed)
    if "trace" in metrics:
        out["trace"], out["trace_se"] = stacked_hessian_trace(op, s.trace_samples, s.seed)
    if "lanczos" in metrics:
        spec = stacked_lanczos_spectrum(op, s.lanczos_k, s.seed, s.lanczos_steps, s.lanczos_starts)
        out["ritz_max"], out["ritz_sum"] = spec.ritz_max, spec.ritz_sum
    if "eps_sharpness" in metrics:
        out["eps_sharpness"] = stacked_epsilon_sharpness(op, s.eps, s.eps_steps, s.eps_restarts, s.seed)
    return out


def measure(loss_fn: LossClosure, params: Params, metrics: Sequence[str] = METRICS,
            settings: Settings = Settings()) -> dict[str, float]:
    """The metrics of one model (no vmap): column name -> value (see `stacked_measure`)."""
    from grawa_sim.flatness.core import single

    return {k: v[0].item() for k, v in stacked_measure(single(loss_fn, params, settings.method), metrics,
                                                       settings).items()}


def measure_workers(loss_fn: LossClosure, stacked: Params, buffers: Params | None = None,
                    metrics: Sequence[str] = METRICS, settings: Settings = Settings(),
                    execution: str = "vmap") -> pd.DataFrame:
    """The metrics of all M stacked models, one row each (column ``worker`` = 0..M-1).

    Every Hessian-vector product (and gradient) of an iteration is one ``torch.vmap``
    call over the worker dim (``execution="loop"``: one model at a time, the reference).
    ``buffers`` (leading dim M) are passed per worker as ``loss_fn(params, buffers_i)``.
    """
    op = Batched(loss_fn, stacked, buffers, execution, settings.method)
    cols = stacked_measure(op, metrics, settings)
    df = pd.DataFrame({k: v.cpu().numpy() for k, v in cols.items()})
    df.insert(0, "worker", range(op.models))
    return df


def _stack(first: Params, rest: Params) -> Params:
    return {n: torch.cat([first[n].unsqueeze(0).to(rest[n].dtype), rest[n]]) for n in rest}


def measure_tensors(config, tensors: dict[str, Params], *, mode: str = "train", probe: int | None = 320,
                    probe_seed: int = 0, metrics: Sequence[str] = METRICS, settings: Settings = Settings(),
                    center: bool = False, execution: str = "vmap") -> pd.DataFrame:
    """The flatness table of a finished run given its final tensors (`storage.load_params` layout).

    Rows: ``model="evaluated"`` (worker empty), optionally ``"center"``, then one
    ``model="worker"`` row per worker; all measured in one vmapped call over M + 1 (+ 1)
    models (``execution="loop"``: one model after another; faster for the 1-D CNNs on CPU,
    see `grawa_sim.bench_flatness`). The loss is `model_loss` (``mode``, ``probe``
    samples drawn with ``probe_seed``); in eval mode the evaluated model and the center use
    the mean of the workers' running statistics. Columns ``mode`` and ``probe`` record the choice.
    """
    from grawa_sim.runner import build_problem

    model, data = build_problem(config)
    model = model.to(next(iter(tensors["workers"].values())).device)
    loss_fn = model_loss(model, data, mode=mode, probe=probe, seed=probe_seed)
    workers, wbuf = tensors["workers"], tensors.get("buffers") or {}
    names = ["evaluated"] + (["center"] if center else [])
    stacked = _stack(tensors["evaluated"], workers)
    if center:
        stacked = {n: torch.cat([stacked[n][:1], tensors["center"][n].unsqueeze(0), stacked[n][1:]]) for n in stacked}
    buffers = None
    if mode == "eval" and wbuf:
        avg = {n: b.mean(0) if b.is_floating_point() else b[0] for n, b in wbuf.items()}
        buffers = _stack(avg, wbuf)
        if center:
            buffers = {n: torch.cat([b[:1], b[:1], b[1:]]) for n, b in buffers.items()}
    df = measure_workers(loss_fn, stacked, buffers, metrics, settings, execution)
    m = next(iter(workers.values())).shape[0]
    df.insert(0, "model", names + ["worker"] * m)
    df["worker"] = pd.array([pd.NA] * len(names) + list(range(m)), dtype="Int64")
    df["mode"], df["probe"] = mode, "all" if probe is None else probe
    return df


def measure_result(result, **kwargs) -> pd.DataFrame:
    """`measure_tensors` on a `grawa_sim.Result` (its evaluated model, center and workers)."""
    tensors = {"workers": result.workers, "buffers": result.buffers, "evaluated": result.evaluated,
               "center": result.center}
    return measure_tensors(result.config, tensors, **kwargs)


def summary_columns(table: pd.DataFrame) -> dict[str, float]:
    """Flat columns for a run's summary: the evaluated model's metrics as ``flat_<metric>`` and the
    mean over workers as ``flat_worker_<metric>`` (numeric metric columns only)."""
    metric_cols = [c for c in table.columns if c not in ("model", "worker", "mode", "probe")]
    ev = table[table["model"] == "evaluated"].iloc[0]
    wk = table[table["model"] == "worker"]
    out = {f"flat_{c}": float(ev[c]) for c in metric_cols}
    out.update({f"flat_worker_{c}": float(wk[c].astype(float).mean()) for c in metric_cols})
    return out


def measure_run(run_dir: str | os.PathLike, *, write: bool = True, device=None, **kwargs) -> pd.DataFrame:
    """The flatness table of a saved run directory (``config.json`` + ``params.pt``); writes
    ``run_dir/flatness.csv`` atomically unless ``write=False``. ``device``: where to measure (default:
    the CPU, where the tensors are loaded). Other keyword arguments as `measure_tensors`.
    """
    from grawa_sim.storage import CONFIG, PARAMS, load_config, load_params, write_csv_atomic

    if not (Path(run_dir) / CONFIG).is_file() or not (Path(run_dir) / PARAMS).is_file():
        raise ValueError(f"run: not a finished run directory with {CONFIG} and {PARAMS} (got '{run_dir}')")
    tensors = load_params(run_dir)
    if device is not None:
        tensors = {k: {n: t.to(device) for n, t in v.items()} for k, v in tensors.items()}
    table = measure_tensors(load_config(run_dir), tensors, **kwargs)
    if write:
        write_csv_atomic(table, Path(run_dir) / FLATNESS_CSV)
    return table
