"""The stacked (vmap) engine against the independent loop backend, float64, momentum and weight decay on."""

from __future__ import annotations

import dataclasses

import pytest

from grawa_sim import Config, run
from grawa_sim.config import ALGORITHMS
from tests.helpers import max_abs_diff

HISTORY = ["round", "train_loss", "test_loss", "test_acc", "worker_loss", "center_test_loss", "spread"]


def _compare(cfg: Config, tol: float) -> None:
    fast = run(dataclasses.replace(cfg, backend="vmap"), progress=False)
    ref = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    assert max_abs_diff(fast.workers, ref.workers) <= tol
    assert max_abs_diff(fast.buffers, ref.buffers) <= tol
    assert max_abs_diff(fast.evaluated, ref.evaluated) <= tol
    assert max_abs_diff(fast.center, ref.center) <= tol
    diff = (fast.history[HISTORY] - ref.history[HISTORY]).abs().max().max()
    assert diff <= tol, fast.history[HISTORY] - ref.history[HISTORY]
    assert list(fast.history["step"]) == list(ref.history["step"])
    if len(fast.weights):
        assert (fast.weights[["round", "worker"]].values == ref.weights[["round", "worker"]].values).all()
        assert (fast.weights["weight"] - ref.weights["weight"]).abs().max() <= tol


BASE = Config(workers=3, steps=100, tau=8, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="mnist1d", model="mlp", batch_size=16, eval_every=25)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_vmap_matches_loop_mlp(algorithm):
    _compare(dataclasses.replace(BASE, algorithm=algorithm), 1e-5)


def test_vmap_matches_loop_dp_sam():
    _compare(dataclasses.replace(BASE, algorithm="dp", sam=True), 1e-5)


@pytest.mark.parametrize("grawa_norm,smoothing", [("global", True), ("layer_sum", False)])
def test_vmap_matches_loop_grawa_options(grawa_norm, smoothing):
    _compare(dataclasses.replace(BASE, algorithm="mgrawa", grawa_norm=grawa_norm, grawa_smoothing=smoothing), 1e-5)


@pytest.mark.parametrize("execution", ["vmap", "unrolled"])
@pytest.mark.parametrize("algorithm", ["lgrawa", "lsgd", "dp"])
def test_vmap_matches_loop_batchnorm_cnn(algorithm, execution):
    """Train-mode BatchNorm with stacked running statistics, both stacked executions."""
    cfg = dataclasses.replace(BASE, algorithm=algorithm, model="cnn_bn", steps=24, eval_every=12,
                              execution=execution, sam=algorithm == "dp")
    _compare(cfg, 1e-5)
