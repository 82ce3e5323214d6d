"""Algorithm invariants that hold exactly, checked on whole runs (float64)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grawa_sim import Config, algorithms, run
from grawa_sim.algorithms import grawa
from tests.helpers import batch_stream, max_abs_diff, train_single

BASE = Config(workers=3, steps=40, tau=4, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="digits", model="mlp", batch_size=16, eval_every=10)
METRICS = ["train_loss", "test_loss", "test_acc", "spread"]


def test_localsgd_tau1_no_momentum_equals_dp():
    cfg = dataclasses.replace(BASE, momentum=0.0, tau=1)
    local = run(dataclasses.replace(cfg, algorithm="localsgd"), progress=False)
    dp = run(dataclasses.replace(cfg, algorithm="dp"), progress=False)
    assert max_abs_diff(local.workers, dp.workers) < 1e-10
    assert (local.history[METRICS] - dp.history[METRICS]).abs().max().max() < 1e-10


def test_localsgd_tau2_differs_from_dp():
    """Guard for the test above: with tau = 2 the workers' second gradients are taken at different points."""
    cfg = dataclasses.replace(BASE, momentum=0.0, tau=2)
    local = run(dataclasses.replace(cfg, algorithm="localsgd"), progress=False)
    dp = run(dataclasses.replace(cfg, algorithm="dp"), progress=False)
    assert max_abs_diff(local.workers, dp.workers) > 1e-6


@pytest.mark.parametrize("level", ["mgrawa", "lgrawa"])
def test_grawa_with_equal_scores_and_full_pull_equals_localsgd(monkeypatch, level):
    monkeypatch.setattr(grawa, "layer_norms", lambda grads: torch.ones(len(next(iter(grads.values()))), len(grads),
                                                                      dtype=torch.float64))
    cfg = dataclasses.replace(BASE, pull=1.0, prox=0.0)
    g = run(dataclasses.replace(cfg, algorithm=level), progress=False)
    local = run(dataclasses.replace(cfg, algorithm="localsgd"), progress=False)
    assert max_abs_diff(g.workers, local.workers) < 1e-12
    assert (g.history[METRICS] - local.history[METRICS]).abs().max().max() < 1e-12
    assert g.weights["weight"].sub(1 / 3).abs().max() < 1e-15


def test_grawa_real_scores_differ_from_localsgd():
    """Guard for the test above: without equal scores GRAWA is not LocalSGD."""
    cfg = dataclasses.replace(BASE, pull=1.0, prox=0.0)
    g = run(dataclasses.replace(cfg, algorithm="mgrawa"), progress=False)
    local = run(dataclasses.replace(cfg, algorithm="localsgd"), progress=False)
    assert max_abs_diff(g.workers, local.workers) > 1e-6


@pytest.mark.parametrize("algorithm", [a for a, kind in algorithms.classes().items()
                                       if kind.takes_pull and not kind.communicates_every_step])
def test_pull_and_prox_zero_leave_workers_independent(algorithm):
    """Every worker equals a model trained alone by torch.optim.SGD on that worker's batches."""
    cfg = dataclasses.replace(BASE, algorithm=algorithm, pull=0.0, prox=0.0)
    result = run(cfg, progress=False)
    batches, data = batch_stream(cfg)
    for i in range(cfg.workers):
        alone = train_single(cfg, [b[i] for b in batches], data)
        assert max_abs_diff({n: p[i] for n, p in result.workers.items()}, alone) < 1e-10


def test_dp_equals_one_model_on_the_concatenated_batch():
    cfg = dataclasses.replace(BASE, algorithm="dp")
    result = run(cfg, progress=False)
    batches, data = batch_stream(cfg)
    single = train_single(cfg, [b.flatten() for b in batches], data)
    assert max_abs_diff(result.evaluated, single) < 1e-10
    for i in range(cfg.workers):
        assert max_abs_diff({n: p[i] for n, p in result.workers.items()}, single) < 1e-10
    assert result.history["spread"].abs().max() < 1e-10
