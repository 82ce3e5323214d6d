"""`Result`: what a finished run returns (history, final worker tensors, weights, flatness)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from grawa_sim.config import Config
from grawa_sim.core.collectives import Params


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

    def __repr__(self) -> str:
        c = self.config
        text = f"Result({c.algorithm}, M={c.workers}, {c.model} on {c.dataset}, seed={c.seed}, {len(self.history)} rows"
        if len(self.history):
            last = self.final
            text += "".join(f", {k}={last[k]:.4g}" for k in ("step", "test_acc", "test_loss") if k in last)
        return text + (", flatness" if self.flatness is not None else "") + ")"
