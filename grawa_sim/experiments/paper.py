"""The paper's setting, ready for a GPU: ResNet-20 on CIFAR-10 (or CIFAR-100), 4 and 8 workers.

Every compared algorithm (and DP with SAM) with the reference hyperparameters of the authors' scripts:
batch 128 per worker, lr 0.1 (constant), momentum 0.9, weight decay 1e-4, each algorithm's own tau,
pull and prox (the registry's defaults), the same simulated-time budget for all (the scripts give
every method 15 wall-clock minutes; here 900 simulated seconds of a 1e12 FLOP/s device with the
default 10 Gbit/s network), 3 seeds. Runs are resumable sweeps; the figure is test error against
simulated time, one panel per M; the table is the final test accuracy with Welch's t-test against
the best method of the same M.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.experiments import presets, protocol
from grawa_sim.results.sweep import grid

PAPERS = ("cifar10", "cifar100")
BUDGET = 900.0  # simulated seconds: the reference scripts' 15 minutes per run
WORKERS = (4, 8)
SEEDS = 3


def paper_configs(dataset: str = "cifar10", quick: bool = False, seeds: int = SEEDS, data_dir: str | None = None,
                  budget: float | None = None, workers: tuple[int, ...] = WORKERS) -> list[Config]:
    """The paper's grid: (DP, DP+SAM, LocalSGD, EASGD, LSGD, MGRAWA, LGRAWA) x ``workers`` x ``seeds``.

    Quick: a narrow ResNet-20 (width 4), batch 16, M = 2, a budget of 5 ms (about 20 steps) and one seed, for a
    smoke test on a small (e.g. synthetic) CIFAR folder.
    """
    base = Config(dataset=dataset, data_dir=data_dir, model="resnet20", lr=0.1, momentum=0.9, weight_decay=1e-4,
                  batch_size=16 if quick else 128, steps=10**9, time_budget=budget or (0.005 if quick else BUDGET),
                  eval_seconds=0.0025 if quick else 30.0, width=4 if quick else None,
                  bn_recalibration=2 if quick else 10)
    configs = []
    for m in (2,) if quick else workers:
        for algorithm in COMPARED:
            for sam in (False, True) if algorithm == "dp" else (False,):
                configs += grid(dataclasses.replace(base, workers=m, algorithm=algorithm, sam=sam),
                                seed=list(range(1 if quick else seeds)))
    return configs


def with_method(histories: pd.DataFrame) -> pd.DataFrame:
    """The histories with ``method`` ('dp+sam' for DP with SAM, else the algorithm) as their algorithm
    column (plots and tables group by it) and ``test_error`` = 1 - test accuracy."""
    named = protocol.with_methods(histories)
    named = named.assign(algorithm=named["method"]).drop(columns="method")
    return named.assign(test_error=1 - named["test_acc"])


def paper_summary(histories: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per (M, method), best first within each M, Welch's p against that M's best."""
    named = with_method(histories)
    tables = [presets.summary(named[named["workers"] == m]).assign(workers=m)
              for m in sorted(named["workers"].unique())]
    return pd.concat(tables).set_index("workers", append=True).reorder_levels(["workers", "algorithm"])
