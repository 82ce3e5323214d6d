"""Batch-norm recalibration of the evaluated model."""

from __future__ import annotations

import dataclasses

import torch

from grawa_sim import Config, run
from grawa_sim.data.datasets import load
from grawa_sim.engine.batchnorm import Recalibrator
from grawa_sim.models.registry import build
from tests.helpers import reference_statistics

CFG = Config(algorithm="easgd", model="cnn_bn", workers=8, steps=600, dataset="mnist1d")


def test_recalibrated_statistics_match_a_module_fed_the_same_batches():
    data = load("mnist1d")
    torch.manual_seed(0)
    model = build("cnn_bn", data.features, data.outputs)
    params = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()}
    stats = Recalibrator(model, data.x_train, batches=3, batch_size=64)(params)

    expected = reference_statistics(lambda: build("cnn_bn", data.features, data.outputs), params, data.x_train, 3, 64)
    assert stats.keys() == expected.keys()
    for name in stats:
        torch.testing.assert_close(stats[name], expected[name])
    assert int(stats["features.1.num_batches_tracked"]) == 3


def test_recalibration_helps_the_averaged_easgd_center():
    """x~ never produced activations of its own: averaged worker statistics misdescribe it."""
    averaged = run(dataclasses.replace(CFG, bn_recalibration=0), progress=False).final
    recalibrated = run(CFG, progress=False).final
    assert recalibrated["test_loss"] < averaged["test_loss"] - 0.05
    assert recalibrated["test_acc"] > averaged["test_acc"] + 0.03


def test_models_without_batchnorm_are_unaffected():
    from grawa_sim.engine.recorder import Evaluator

    data = load("digits")
    assert Evaluator(build("mlp", data.features, data.outputs), data, recalibration=10).recalibrate is None
    assert Evaluator(build("cnn_bn", data.features, data.outputs), data, recalibration=10).recalibrate is not None
    cfg = Config(algorithm="mgrawa", model="mlp", workers=2, steps=16, tau=4, dataset="digits", batch_size=8)
    a = run(dataclasses.replace(cfg, bn_recalibration=0), progress=False).history
    b = run(cfg, progress=False).history
    cols = [c for c in a.columns if c != "wall_time"]
    assert a[cols].equals(b[cols])
