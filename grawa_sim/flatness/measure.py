"""Loss closures of models on a fixed probe set, and the metric table of a run (average, center, workers).

Batch norm: by default the loss is measured in *train* mode on a fixed probe set of 320
training samples drawn with a fixed seed, split into batches of 32 whose losses (and so
Hessian-vector products) are averaged, each batch normalised by its own statistics: the
GRAWA authors' flatness setting. ``batch=None`` normalises all 320 samples as one batch.
``mode="eval"`` uses the running statistics instead (the average and the center: the mean
of the workers' statistics; a worker: its own). Models without batch norm give the same
loss either way (the mean of equal-size batch means is the overall mean).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from grawa_sim.flatness.core import Batched, LossClosure, Params
from grawa_sim.flatness.sharpness import stacked_epsilon_sharpness
from grawa_sim.flatness.spectrum import stacked_extreme_eigenvalues, stacked_hessian_trace, stacked_lanczos_spectrum

MODES = ("train", "eval")
METRICS = ("loss", "lambda_max", "trace", "lanczos", "eps_sharpness")


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
                 buffers: Params | None = None, batch: int | None = None):
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
        if batch is not None and batch < 1:
            raise ValueError(f"batch: must be >= 1 or None (got {batch})")
        from grawa_sim.models.registry import has_batchnorm

        # batches only change the loss where batch statistics are used: train-mode batch norm
        self.batch = batch if (batch is not None and mode == "train" and has_batchnorm(model)) else None
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
        if self.batch is None:
            return self.per_sample(functional_call(self.model, tensors, (self.x,)), self.y).mean()
        losses = [self.per_sample(functional_call(self.model, tensors, (xb,)), yb).mean()
                  for xb, yb in zip(self.x.split(self.batch), self.y.split(self.batch))]
        return torch.stack(losses).mean()  # the mean of the batches' losses: their HVPs are averaged


def model_loss(model: nn.Module, data, *, mode: str = "train", probe: int | None = 320, seed: int = 0,
               buffers: Params | None = None, batch: int | None = 32) -> ModelLoss:
    """The loss closure of ``model`` on ``probe`` training samples of ``data`` (a grawa_sim Dataset).

    Cross-entropy for classification, 0.5 * squared error for regression (the training
    loss), averaged over the probe set `probe_indices(len(train), probe, seed)`;
    ``probe=None`` uses the whole training set. In train mode batch norm normalises each
    ``batch`` samples by their own statistics and the batches' losses are averaged (the
    reference: 10 batches of 32); ``batch=None``: the probe set as one batch. See `ModelLoss`.
    """
    from grawa_sim.models.losses import per_sample_loss

    idx = probe_indices(len(data.y_train), probe, seed)
    device = next(model.parameters()).device
    return ModelLoss(model, data.x_train[idx].to(device), data.y_train[idx].to(device),
                     per_sample_loss(data.classes, data.loss), mode, buffers, batch)


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

    Columns: ``loss``; ``lambda_max`` and ``lambda_min`` (the largest and smallest algebraic
    eigenvalues, power iteration on shifted Hessians), their ``*_converged`` flags and
    ``lambda_hvps`` (Hessian-vector products taken); ``trace``, ``trace_se`` (Hutchinson); ``ritz_max``, ``ritz_sum``
    (Lanczos; ``ritz_sum`` is the authors' "trace", not ``trace``); ``eps_sharpness`` (%).
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"metrics: must be among {', '.join(METRICS)} (got {sorted(unknown)})")
    s, out = settings, {}
    if "loss" in metrics:
        out["loss"] = op.loss().double()
    if "lambda_max" in metrics:
        ext = stacked_extreme_eigenvalues(op, s.power_iters, s.power_tol, s.seed)
        out["lambda_max"], out["lambda_max_converged"] = ext.lambda_max, ext.max_converged
        out["lambda_min"], out["lambda_min_converged"] = ext.lambda_min, ext.min_converged
        out["lambda_hvps"] = ext.hvps
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
                    execution: str = "auto") -> pd.DataFrame:
    """The metrics of all M stacked models, one row each (column ``worker`` = 0..M-1).

    Every Hessian-vector product (and gradient) of an iteration is one ``torch.vmap``
    call over the worker dim (``execution="unrolled"``: one model at a time, the reference;
    ``"auto"``: as the training engine picks for the loss's model, see `Batched`).
    ``buffers`` (leading dim M) are passed per worker as ``loss_fn(params, buffers_i)``.
    """
    op = Batched(loss_fn, stacked, buffers, execution, settings.method)
    cols = stacked_measure(op, metrics, settings)
    df = pd.DataFrame({k: v.cpu().numpy() for k, v in cols.items()})
    df.insert(0, "worker", range(op.models))
    return df


def measured_models(algorithm: str, half: bool = False) -> list[tuple[str, str]]:
    """(row name, what it measures) of the non-worker rows of a flatness table.

    ``average``: the uniform average of the workers, for every algorithm (DP: its one model,
    which every worker equals); ``center``: the algorithm's own center where it has one (EASGD's
    x~, LSGD's leader, GRAWA's x_C); with ``half``, ``half``: the uniform average of the first half
    of the workers, what the reference code's flatness script measures (it averages the final
    parameters of 4 of its 8 workers, those saved on one machine; for DP it loads the one model).
    """
    from grawa_sim import algorithms

    kind = algorithms.get(algorithm)
    same = kind.communicates_every_step
    rows = [("average", "the model (all workers equal)" if same else "uniform average of the workers")]
    if kind.center_description is not None:
        rows.append(("center", kind.center_description))
    if half and not same:
        rows.append(("half", "uniform average of the first half of the workers (the reference's flatness script)"))
    return rows


def measure_tensors(config, tensors: dict[str, Params], model: nn.Module, data, *, mode: str = "train",
                    probe: int | None = 320,
                    probe_seed: int = 0, batch: int | None = 32, metrics: Sequence[str] = METRICS,
                    settings: Settings = Settings(), center: bool = True, workers: bool = True,
                    execution: str = "auto", half: bool = False) -> pd.DataFrame:
    """The flatness table of a finished run given its final tensors (`storage.load_params` layout), its
    freshly built model template and data set (`grawa_sim.engine.problem.model_and_data`;
    `grawa_sim.results.run_flatness` builds them for a config, a Result or a saved run).

    Rows (column ``model``): ``average``, the uniform average of the workers (for every
    algorithm; DP's workers are all equal to its model); ``center`` (with ``center=True``, for
    EASGD, LSGD and GRAWA), the algorithm's own center; then (with ``workers=True``) one ``worker``
    row per worker.
    Column ``measured`` says in words which model a row is. All rows are measured in one vmapped
    call (``execution="vmap"``), one model after another (``"unrolled"``), or as the training engine
    picks for ``model`` on its device (``"auto"``: unrolled for 2-D convolutions on the CPU, else
    vmap; `grawa_sim.models.execution.choose_execution`). The loss is `model_loss` (``mode``,
    ``probe`` samples drawn with ``probe_seed``, ``batch``); in eval mode the average and the
    center use the mean of the workers' running statistics. Columns ``mode``, ``probe`` and
    ``batch`` record the choice. ``half=True`` adds the row ``half`` (see `measured_models`).
    """
    stacked_workers, wbuf = tensors["workers"], tensors.get("buffers") or {}
    model = model.to(next(iter(stacked_workers.values())).device)
    loss_fn = model_loss(model, data, mode=mode, probe=probe, seed=probe_seed, batch=batch)
    named = [r for r in measured_models(config.algorithm, half) if center or r[0] != "center"]
    m = next(iter(stacked_workers.values())).shape[0] if workers else 0
    heads = {"average": {n: w.mean(0) for n, w in stacked_workers.items()}, "center": tensors.get("center"),
             "half": {n: w[: max(1, w.shape[0] // 2)].mean(0) for n, w in stacked_workers.items()}}
    stacked = {n: torch.cat([torch.stack([heads[name][n].to(w.dtype) for name, _ in named]), w[:m]])
               for n, w in stacked_workers.items()}
    buffers = None
    if mode == "eval" and wbuf:
        avg = {n: b.mean(0) if b.is_floating_point() else b[0] for n, b in wbuf.items()}
        buffers = {n: torch.cat([torch.stack([avg[n]] * len(named)), b[:m]]) for n, b in wbuf.items()}
    df = measure_workers(loss_fn, stacked, buffers, metrics, settings, execution)
    df.insert(0, "model", [name for name, _ in named] + ["worker"] * m)
    df.insert(1, "measured", [what for _, what in named] + [f"worker {i}" for i in range(m)])
    df["worker"] = pd.array([pd.NA] * len(named) + list(range(m)), dtype="Int64")
    df["mode"], df["probe"] = mode, "all" if probe is None else probe
    df["batch"] = "all" if batch is None else batch
    return df


def summary_columns(table: pd.DataFrame) -> dict[str, float]:
    """Flat columns for a run's summary: the uniform average's metrics as ``flat_<metric>``, the
    center's as ``flat_center_<metric>`` (when measured) and the mean over workers as
    ``flat_worker_<metric>`` (numeric metric columns only)."""
    metric_cols = [c for c in table.columns if c not in ("model", "measured", "worker", "mode", "probe", "batch")]
    out = {}
    for name, prefix in (("average", "flat_"), ("center", "flat_center_")):
        rows = table[table["model"] == name]
        if len(rows):
            out.update({f"{prefix}{c}": float(rows.iloc[0][c]) for c in metric_cols})
    wk = table[table["model"] == "worker"]
    out.update({f"flat_worker_{c}": float(wk[c].astype(float).mean()) for c in metric_cols})
    return out
