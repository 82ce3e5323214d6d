"""Every algorithm reaches the known optimum of a convex least-squares objective."""

from __future__ import annotations

import pytest

from grawa_sim import Config, run
from grawa_sim.config import ALGORITHMS
from grawa_sim.data.datasets import load


def test_optimum_is_the_minimum():
    """The closed-form optimum is below what any run reaches, and far below the initial loss."""
    data = load("lstsq")
    first = run(Config(algorithm="dp", workers=2, steps=1, dataset="lstsq", model="logistic"), progress=False)
    assert 0 < data.optimum_loss < 1e-3 < first.history["train_loss"].iloc[0]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reaches_optimum_within_1e3(algorithm):
    cfg = Config(algorithm=algorithm, workers=4, steps=600, tau=8, lr=0.05, momentum=0.9, weight_decay=0.0,
                 batch_size=16, dataset="lstsq", model="logistic", eval_every=300)
    history = run(cfg, progress=False).history
    gap = history["train_loss"].iloc[-1] - load("lstsq").optimum_loss
    assert -1e-9 <= gap <= 1e-3
    assert history["train_loss"].iloc[-1] < 1e-4 * history["train_loss"].iloc[0]
