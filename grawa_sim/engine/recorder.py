"""What a run records: the evaluated model's metrics, the workers' losses, GRAWA's weights, divergence.

`Recorder.evaluate(step)` appends one history row: loss and accuracy of the evaluated model on the
full train and test sets (and on the held-out validation set when the config has one; of the center
on the test set for the periodic algorithms), the mean minibatch loss of every local step since the
previous row (a collective: every rank takes part), the workers' spread, the simulated clock's
totals and the current learning rate.
`Recorder.check_finite()` stops the run at the first step whose loss was not finite.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config
from grawa_sim.core.collectives import Params, StackedAxis
from grawa_sim.data.datasets import Dataset
from grawa_sim.engine.batchnorm import Recalibrator
from grawa_sim.engine.problem import Problem
from grawa_sim.engine.result import TARGETS, Result, target_columns
from grawa_sim.models.losses import per_sample_loss
from grawa_sim.models.registry import has_batchnorm

SPREAD_CHUNK = 1 << 22  # float64 elements the spread metric holds at once (32 MiB)
WEIGHT_COLUMNS = ["round", "worker", "layer", "weight"]


class Evaluator:
    """Loss and accuracy of one parameter set on the full train and test sets (eval mode).

    For batch-norm models, ``statistics(params, worker_buffers)`` gives the running
    statistics to test with: re-estimated on ``recalibration`` training batches, or (0)
    the mean of the workers' statistics.
    """

    def __init__(self, model: nn.Module, data: Dataset, recalibration: int = 0):
        self.data = data
        self.loss = per_sample_loss(data.classes, data.loss)
        self.recalibrate = None
        if recalibration and has_batchnorm(model):
            self.recalibrate = Recalibrator(model, data.x_train, recalibration)
        self.model = copy.deepcopy(model).eval()

    def statistics(self, params: Params, averaged: Params) -> Params:
        return self.recalibrate(params) if self.recalibrate is not None else averaged

    @torch.no_grad()
    def __call__(self, params: Params, buffers: Params, split: str, chunk: int = 4096) -> tuple[float, float]:
        """Mean loss and accuracy over the split (train, val or test), in chunks of ``chunk`` samples."""
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        losses, correct = [], []
        for xs, ys in zip(x.split(chunk), y.split(chunk)):
            out = functional_call(self.model, (params, buffers), (xs,))
            losses.append(self.loss(out, ys))
            correct.append(out.argmax(-1) == ys)
        loss = float(torch.cat(losses).mean())
        acc = float(torch.cat(correct).double().mean()) if self.data.classes else float("nan")
        return loss, acc


def average_buffers(buffers: Params, axis: StackedAxis) -> Params:
    """Evaluation statistics of a merged model: the mean of the workers' float buffers."""
    return {n: (axis.all_reduce_mean(b) if b.is_floating_point() else axis.broadcast(b, 0)).squeeze(0)
            for n, b in buffers.items()}


def spread(params: Params, axis: StackedAxis, chunk: int = SPREAD_CHUNK) -> float:
    """Mean over workers of ||x_i - mean_j x_j||_2 (all parameters as one vector), in float64.

    Layer by layer and a few workers at a time: at most about ``chunk`` float64 elements exist at once.
    """
    sq = None
    for p in params.values():
        flat = p.detach().flatten(1)
        rows = max(1, chunk // max(1, flat.shape[1]))
        parts = flat.split(rows)
        total = parts[0].double().sum(0, keepdim=True)
        for part in parts[1:]:
            total += part.double().sum(0, keepdim=True)
        mean = axis.all_reduce_sum(total) / axis.workers
        layer = torch.cat([(part.double() - mean).square().sum(1) for part in parts])
        sq = layer if sq is None else sq + layer
    if sq is None:
        return 0.0
    return float(axis.all_reduce_sum(sq.sqrt())) / axis.workers


def weight_rows(round_index: int, w: torch.Tensor, layers: list[str]) -> list[dict]:
    """Long-format rows of one round's weights, [M] (model level) or [M, L] (layer level)."""
    rows = []
    for worker in range(w.shape[0]):
        if w.ndim == 1:
            rows.append({"round": round_index, "worker": worker, "layer": "model", "weight": float(w[worker])})
        else:
            rows += [{"round": round_index, "worker": worker, "layer": layer, "weight": float(w[worker, l])}
                     for l, layer in enumerate(layers)]
    return rows


def diverged(cfg: Config, step: float, rows: list[dict], what: str = "a loss, gradient or parameter"
             ) -> DivergenceError:
    """The one-line error of a run that went non-finite at ``step``, with the history so far."""
    step = int(step) if float(step).is_integer() else step
    return DivergenceError(f"diverged at step {step} ({cfg.algorithm}, M={cfg.workers}, lr={cfg.lr:g}): {what} is "
                           f"NaN or infinite; lower the lr", step=step, history=pd.DataFrame(rows), config=cfg)


class Recorder:
    """The history of one run on ``problem``: rows at every evaluation, GRAWA's weights at every round."""

    def __init__(self, problem: Problem, on_evaluate: Callable[[float, Params], None] | None = None,
                 on_row: Callable[[dict], None] | None = None):
        self.problem, self.on_evaluate, self.on_row = problem, on_evaluate, on_row
        self.evaluator = Evaluator(problem.model, problem.data, problem.config.bn_recalibration)
        self.layers = [n for n, _ in problem.model.named_parameters()]
        self.rows: list[dict] = []
        self.weight_rows: list[dict] = []
        self.rounds = 0
        self.lr = problem.config.lr  # the learning rate of the latest step, as the history reports it
        self.start = time.perf_counter()
        self._losses: list[tuple[float, torch.Tensor, int]] = []  # (step, summed minibatch loss, count)
        self._checked = 0  # entries of ``_losses`` already checked for finiteness
        self.reached: dict[str, tuple[float, float]] = {}  # metric -> (step, simulated time) of its target

    def _mark_targets(self, row: dict) -> None:
        """Add the target columns to ``row``: when each set target was first reached (NaN: not yet)."""
        cfg = self.problem.config
        for metric, field, reaches in TARGETS:
            target = getattr(cfg, field)
            if target is None:
                continue
            if metric not in self.reached and math.isfinite(row[metric]) and reaches(row[metric], target):
                self.reached[metric] = (row["step"], row["sim_time"])
            step_column, time_column = target_columns(metric)
            row[step_column], row[time_column] = self.reached.get(metric, (math.nan, math.nan))

    def stop_at_target(self) -> bool:
        """The run should stop: its train-loss target is reached (or its test-accuracy target, when asked)."""
        cfg = self.problem.config
        return "train_loss" in self.reached or (cfg.stop_at_target_acc and "test_acc" in self.reached)

    @property
    def wall_time(self) -> float:
        return time.perf_counter() - self.start

    def add_losses(self, step: float, losses: torch.Tensor | None) -> None:
        """A local step's per-worker minibatch losses (kept on the device until the next row)."""
        if losses is not None:
            self._losses.append((step, losses.to(torch.float64).sum(), len(losses)))

    def add_round(self, info) -> None:
        """A round happened; its weights (GRAWA's), gathered from every rank, join the weights table."""
        self.rounds += 1
        if info is not None and info.weights is not None:
            self.weight_rows += weight_rows(self.rounds, self.problem.axis.all_gather(info.weights), self.layers)

    def check_finite(self) -> None:
        """Stop at the first step whose loss was not finite; every rank takes part and agrees on the step.

        A step's summed minibatch loss (kept for the history anyway) is finite exactly when every loss is.
        """
        axis = self.problem.axis
        fresh = self._losses[self._checked:]
        self._checked = len(self._losses)
        if not fresh and type(axis) is StackedAxis:
            return
        first = math.inf
        if fresh:
            finite = torch.isfinite(torch.stack([total for _, total, _ in fresh])).cpu()
            if not bool(finite.all()):
                first = fresh[int((~finite).nonzero()[0, 0])][0]
        if type(axis) is not StackedAxis:
            here = next(iter(self.problem.engine.stacked_params().values())).device  # this rank's device
            first = float(axis.all_reduce_min(torch.tensor([[first]], dtype=torch.float64, device=here))[0, 0])
        if math.isfinite(first):
            raise diverged(self.problem.config, first, self.rows)

    def evaluate(self, step: float) -> dict:
        """Append (and return) the history row of ``step``."""
        problem, evaluator = self.problem, self.evaluator
        engine, axis = problem.engine, problem.axis
        averaged = average_buffers(engine.stacked_buffers(), axis)
        evaluated = engine.evaluated()
        if self.on_evaluate is not None:
            self.on_evaluate(step, {n: p.detach().clone() for n, p in evaluated.items()})
        buffers = evaluator.statistics(evaluated, averaged)
        train_loss, train_acc = evaluator(evaluated, buffers, "train")
        test_loss, test_acc = evaluator(evaluated, buffers, "test")
        held_out = {}
        if problem.data.x_val is not None:
            held_out = dict(zip(("val_loss", "val_acc"), evaluator(evaluated, buffers, "val")))
        center_loss, center_acc = float("nan"), float("nan")
        if not problem.communicates_every_step:
            center = engine.center()
            center_loss, center_acc = evaluator(center, evaluator.statistics(center, averaged), "test")
        loss_sum = float(torch.stack([total for _, total, _ in self._losses]).sum()) if self._losses else 0.0
        local = torch.tensor([[loss_sum, sum(c for _, _, c in self._losses)]], dtype=torch.float64)
        total, count = axis.all_reduce_sum(local)[0].tolist()
        totals, steps = problem.clock.totals, problem.clock.steps
        row = {
            "step": step, "round": self.rounds, "wall_time": self.wall_time,
            "sim_time": totals.sim_time, "compute_time": totals.compute_time, "comm_time": totals.comm_time,
            "comm_bytes": totals.comm_bytes, "steps_min": int(steps.min()), "steps_mean": float(steps.double().mean()),
            "steps_max": int(steps.max()), "lr_now": self.lr,
            "train_loss": train_loss, "train_acc": train_acc, **held_out, "test_loss": test_loss, "test_acc": test_acc,
            "worker_loss": total / count if count else float("nan"),
            "center_test_loss": center_loss, "center_test_acc": center_acc,
            "spread": spread(engine.stacked_params(), axis),
        }
        self._mark_targets(row)
        self.rows.append(row)
        self._losses.clear()
        self._checked = 0
        if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss", "spread")):
            raise diverged(problem.config, step, self.rows[:-1], "the evaluated model's loss or the workers' spread")
        if self.on_row is not None:
            self.on_row(dict(row))
        return row

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def weights(self) -> pd.DataFrame:
        return pd.DataFrame(self.weight_rows, columns=WEIGHT_COLUMNS)

    def result(self) -> Result:
        """The finished run's Result (every worker gathered on every rank); rank 0 measures flatness if asked."""
        problem = self.problem
        cfg, engine, axis = problem.config, problem.engine, problem.axis
        evaluated = engine.evaluated()
        result = Result(
            config=cfg, history=self.history(),
            # contiguous: the engine may hold a parameter in its gradient's (transposed) layout, and a
            # user's randn_like / view on the result should see the usual one
            workers={n: axis.all_gather(p.detach()).clone(memory_format=torch.contiguous_format)
                     for n, p in engine.stacked_params().items()},
            buffers={n: axis.all_gather(b).clone() for n, b in engine.stacked_buffers().items()},
            evaluated=evaluated, center=evaluated if problem.communicates_every_step else engine.center(),
            weights=self.weights(),
        )
        if cfg.flatness and axis.offset == 0:  # rank 0 measures (every rank holds all workers now)
            from grawa_sim import flatness

            tensors = {"workers": result.workers, "buffers": result.buffers, "center": result.center}
            result.flatness = flatness.measure_tensors(cfg, tensors, problem.model, problem.data,
                                                     execution=cfg.execution)
            for column, value in flatness.summary_columns(result.flatness).items():
                result.history.loc[result.history.index[-1], column] = value
        return result


def interactive() -> bool:
    """A terminal or a Jupyter kernel is watching."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress_bar(cfg: Config, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, desc=f"{cfg.algorithm} M={cfg.workers}", disable=not show, leave=False)
