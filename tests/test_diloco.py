"""DiLoCo: the outer Nesterov step by hand, LocalSGD as its special case, the command line."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from grawa_sim import Config, run
from grawa_sim.algorithms import Hyper, build
from grawa_sim.algorithms.diloco import DiLoCoHyper
from grawa_sim.cli.main import main
from grawa_sim.core.collectives import StackedAxis
from tests.helpers import max_abs_diff


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_two_worker_rounds_with_momentum_by_hand():
    """eta_out = 0.5, mu = 0.9, x_global = (1, -2), m = 0, two rounds; every number below worked out by hand:

    round 1: workers (0, -1), (1, -4) -> mean (0.5, -2.5); Delta = (0.5, 0.5); m = (0.5, 0.5);
             x_global = (1, -2) - 0.5 ((0.5, 0.5) + 0.9 (0.5, 0.5)) = (0.525, -2.475)
    round 2: workers (2, -2), (0, -3) -> mean (1, -2.5); Delta = (-0.475, 0.025);
             m = 0.9 (0.5, 0.5) + Delta = (-0.025, 0.475);
             x_global = (0.525, -2.475) - 0.5 ((-0.475, 0.025) + 0.9 (-0.025, 0.475)) = (0.77375, -2.70125)
    """
    algo = build("diloco", DiLoCoHyper(pull=1.0, prox=0.0, tau=4, outer_lr=0.5, outer_momentum=0.9))
    axis = StackedAxis(2)
    state = algo.init({"w": t([[1.0, -2.0]])}, axis)
    params, state, _ = algo.round({"w": t([[0.0, -1.0], [1.0, -4.0]])}, state, axis, None)
    assert_close(state.momentum["w"], t([[0.5, 0.5]]), rtol=0, atol=1e-12)
    assert_close(state.center["w"], t([[0.525, -2.475]]), rtol=0, atol=1e-12)
    assert_close(params["w"], t([[0.525, -2.475], [0.525, -2.475]]), rtol=0, atol=1e-12)
    params, state, _ = algo.round({"w": t([[2.0, -2.0], [0.0, -3.0]])}, state, axis, None)
    assert_close(state.momentum["w"], t([[-0.025, 0.475]]), rtol=0, atol=1e-12)
    assert_close(params["w"], t([[0.77375, -2.70125], [0.77375, -2.70125]]), rtol=0, atol=1e-12)
    assert_close(algo.evaluated(params, state, axis)["w"], t([[0.77375, -2.70125]]), rtol=0, atol=1e-12)
    assert_close(algo.center(state)["w"], t([[0.77375, -2.70125]]), rtol=0, atol=1e-12)


def test_loop_reference_gives_the_same_hand_computed_rounds():
    kind = build("diloco", Hyper(pull=1.0, prox=0.0, tau=4))
    hyper = DiLoCoHyper(pull=1.0, prox=0.0, tau=4, outer_lr=0.5, outer_momentum=0.9)
    rule = kind.reference(hyper, {"w": t([1.0, -2.0])}, 2)
    new, _ = rule.round([{"w": t([0.0, -1.0])}, {"w": t([1.0, -4.0])}], None)
    assert_close(new[1]["w"], t([0.525, -2.475]), rtol=0, atol=1e-12)
    new, _ = rule.round([{"w": t([2.0, -2.0])}, {"w": t([0.0, -3.0])}], None)
    for worker in new:
        assert_close(worker["w"], t([0.77375, -2.70125]), rtol=0, atol=1e-12)
    assert_close(rule.evaluated(new)["w"], t([0.77375, -2.70125]), rtol=0, atol=1e-12)


def test_a_plain_hyper_takes_the_outer_defaults():
    algo = build("diloco", Hyper(pull=1.0, prox=0.0, tau=4))
    assert (algo.hyper.outer_lr, algo.hyper.outer_momentum) == (0.7, 0.9)


BASE = Config(workers=3, steps=48, tau=8, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="digits", model="mlp", batch_size=16, eval_every=16)


@pytest.mark.parametrize("backend", ["vmap", "loop"])
def test_outer_lr_1_momentum_0_is_localsgd(backend):
    """x_global - 1 (x_global - mean) = mean and no momentum: LocalSGD's plain averaging, to rounding."""
    local = run(dataclasses.replace(BASE, algorithm="localsgd", backend=backend), progress=False)
    diloco = run(dataclasses.replace(BASE, algorithm="diloco", backend=backend, outer_lr=1.0, outer_momentum=0.0),
                 progress=False)
    columns = [c for c in local.history.columns if c != "wall_time"]
    assert list(diloco.history.columns) == list(local.history.columns)
    assert (diloco.history[columns] - local.history[columns]).abs().max().max() <= 1e-12
    assert max_abs_diff(diloco.workers, local.workers) <= 1e-12
    assert max_abs_diff(diloco.evaluated, local.evaluated) <= 1e-12
    assert max_abs_diff(diloco.center, local.center) <= 1e-12


def test_outer_momentum_changes_the_run():
    plain = run(dataclasses.replace(BASE, algorithm="diloco", outer_lr=1.0, outer_momentum=0.0), progress=False)
    nesterov = run(dataclasses.replace(BASE, algorithm="diloco"), progress=False)
    assert nesterov.config.outer_lr == 0.7 and nesterov.config.outer_momentum == 0.9
    assert max_abs_diff(plain.workers, nesterov.workers) > 1e-6


def test_command_line_runs_diloco(tmp_path, capsys):
    argv = ["run", "--algorithm", "diloco", "--dataset", "digits", "--model", "logistic", "--workers", "2",
            "--steps", "16", "--tau", "4", "--batch-size", "8", "--outer-lr", "0.5", "--no-progress"]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert line.startswith("diloco M=2 tau=4 steps=16 rounds=4 "), line
