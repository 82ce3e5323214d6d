"""External anchor: our MNIST-1D models against the accuracies their authors publish.

MNIST-1D (Greydanus 2020, github.com/greydanus/mnist1d) reports test accuracy 32 %
(logistic regression), 68 % (MLP) and 94 % (CNN) on its default 4000 / 1000 split. We train
the same three architectures as single workers (DP with M = 1: plain SGD with Nesterov
momentum, cosine learning rate), then the CNN with M = 8 workers under each of the six
algorithms, all through the resumable sweep, and report mean and std over seeds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from grawa_sim.algorithms import COMPARED
from grawa_sim.config import Config
from grawa_sim.experiments.presets import summary, with_twins
from grawa_sim.experiments.protocol import by_method
from grawa_sim.results.sweep import grid, sweep

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}  # MNIST-1D README, test accuracy
SINGLE_MODELS = (*PUBLISHED, "resnet1d")  # resnet1d: ours, no published number
CNN_TARGET = 0.93  # our CNN must reach this mean test accuracy over seeds


def single_configs(quick: bool, seeds: int = 3) -> list[Config]:
    """Logistic, MLP, CNN (and our 1-D ResNet) as one worker: 6000 SGD steps of 32 samples (48 epochs), cosine lr."""
    base = Config(algorithm="dp", workers=1, dataset="mnist1d", lr=0.05, momentum=0.9, weight_decay=1e-4,
                  batch_size=32, steps=40 if quick else 6000, eval_every=20 if quick else 500, lr_schedule="cosine")
    return grid(base, model=list(SINGLE_MODELS), seed=list(range(1 if quick else seeds)))


def ensemble_configs(quick: bool, seeds: int = 3) -> list[Config]:
    """The CNN with M = 8 workers under every algorithm (reference tau/pull/prox) and GRAWA's uniform twin,
    3000 steps, cosine lr."""
    base = Config(workers=8, dataset="mnist1d", model="cnn", lr=0.05, momentum=0.9, weight_decay=1e-4,
                  batch_size=32, steps=64 if quick else 3000, eval_every=32 if quick else None, lr_schedule="cosine")
    return with_twins(grid(base, algorithm=list(COMPARED), seed=list(range(1 if quick else seeds))))


def anchor(out: str | Path, quick: bool = False, seeds: int = 3, progress: bool | None = None,
           log=None, device: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run (or resume) both parts under ``out`` on ``device``; return (single-worker table, M = 8 table).

    The single-worker table has a ``published`` column (NaN where nothing is published); both
    are written as CSV next to the runs.
    """
    out = Path(out)
    def on(configs: list[Config]) -> list[Config]:
        return [dataclasses.replace(c, device=device) for c in configs]

    singles = summary(sweep(on(single_configs(quick, seeds)), out / "single", progress, log, batch_runs="auto"),
                      by="model")
    singles = singles.reindex(list(SINGLE_MODELS))
    singles.insert(0, "published", [PUBLISHED.get(m, float("nan")) for m in singles.index])
    runs = by_method(sweep(on(ensemble_configs(quick, seeds)), out / "ensemble", progress, log, batch_runs="auto"))
    ensemble = summary(runs, reference="localsgd")
    singles.to_csv(out / "single" / "anchor.csv")
    ensemble.to_csv(out / "ensemble" / "anchor.csv")
    return singles, ensemble


def report(singles: pd.DataFrame, ensemble: pd.DataFrame) -> str:
    """Both tables as text, with the CNN target verdict."""
    fmt = {"float_format": lambda v: f"{v:.3f}"}
    cnn = singles.loc["cnn", "test_acc_mean"] if "cnn" in singles.index else float("nan")
    verdict = "met" if cnn >= CNN_TARGET else "NOT met"
    return "\n".join([
        "MNIST-1D, one worker (DP, M = 1), test accuracy against the published numbers (resnet1d: ours only):",
        singles.to_string(**fmt),
        f"CNN target >= {CNN_TARGET:.2f} (mean over seeds): {verdict} ({cnn:.3f})",
        "",
        "MNIST-1D, 1-D CNN, M = 8 workers, each algorithm's reference tau / pull / prox:",
        ensemble.to_string(**fmt),
    ])
