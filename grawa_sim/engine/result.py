"""`Result`: what a finished run returns (history, final worker tensors, weights, flatness)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from grawa_sim.config import Config
from grawa_sim.core.collectives import Params

# (history column, Config field of its target, does a value reach the target?): the first evaluation that
# reaches it is recorded as <column>_reached_step / <column>_reached_time (NaN until then, and if never)
TARGETS = (("train_loss", "target_train_loss", lambda value, target: value <= target),
           ("test_acc", "target_test_acc", lambda value, target: value >= target))


def target_columns(metric: str) -> tuple[str, str]:
    """The history columns of the step and simulated time at which ``metric`` first reached its target."""
    return f"{metric}_reached_step", f"{metric}_reached_time"


@dataclass(repr=False)
class Result:
    """A finished run.

    - ``history``: one row per evaluation (see README for the columns);
    - ``workers``: final stacked worker parameters, leading dim M;
    - ``buffers``: final stacked worker buffers (batch-norm statistics);
    - ``evaluated``: parameters of the model the algorithm is evaluated on;
    - ``center``: the algorithm's last center (GRAWA's x_C, LSGD's leader, EASGD's x~; DP: its model);
    - ``weights``: GRAWA weights per round, long format (round, worker, layer, weight);
    - ``flatness``: with ``config.flatness``, the flatness table of the evaluated model and of
      every worker (grawa_sim.results.run_flatness.measure_result); its summary is added to the last history row.
    """

    config: Config
    history: pd.DataFrame
    workers: Params
    buffers: Params
    evaluated: Params
    center: Params
    weights: pd.DataFrame = field(default_factory=pd.DataFrame)
    flatness: pd.DataFrame | None = None

    @property
    def final(self) -> pd.Series:
        return self.history.iloc[-1]

    def reached(self, metric: str = "train_loss") -> tuple[float, float] | None:
        """(step, simulated seconds) of the first evaluation at which ``metric`` (train_loss or test_acc)
        reached its target (``config.target_train_loss`` / ``target_test_acc``); None if it never did.
        Raises ValueError when that target was not set."""
        fields = {m: f for m, f, _ in TARGETS}
        if metric not in fields:
            raise ValueError(f"metric: must be one of {', '.join(fields)} (got {metric!r})")
        if getattr(self.config, fields[metric]) is None:
            raise ValueError(f"{fields[metric]}: the run had no target for {metric} (got None)")
        step, time = (float(self.final[c]) for c in target_columns(metric))
        return None if math.isnan(step) else (step, time)

    @property
    def reached_step(self) -> float | None:
        """The step at which the train-loss target (else the test-accuracy target) was reached; None if never."""
        hit = self.reached("train_loss" if self.config.target_train_loss is not None else "test_acc")
        return None if hit is None else hit[0]

    @property
    def reached_time(self) -> float | None:
        """The simulated seconds at which the train-loss (else test-accuracy) target was reached; None if never."""
        hit = self.reached("train_loss" if self.config.target_train_loss is not None else "test_acc")
        return None if hit is None else hit[1]

    def __repr__(self) -> str:
        c = self.config
        text = f"Result({c.algorithm}, M={c.workers}, {c.model} on {c.dataset}, seed={c.seed}, {len(self.history)} rows"
        if len(self.history):
            last = self.final
            text += "".join(f", {k}={last[k]:.4g}" for k in ("step", "test_acc", "test_loss") if k in last)
        return text + (", flatness" if self.flatness is not None else "") + ")"
