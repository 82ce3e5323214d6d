"""GRAWA's uniform-weight twin: the control of the weighting, against LocalSGD and the loop backend."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ConfigError, ConfigWarning, resolve, run_identity
from grawa_sim.engine.run_many import run_many
from grawa_sim.experiments.presets import method_name
from grawa_sim.plots.runs import STYLES
from tests.helpers import max_abs_diff

BASE = Config(workers=4, steps=48, tau=8, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="mnist1d", model="mlp", width=16, batch_size=16, eval_every=16, pull=0.5, prox=0.01)


@pytest.mark.parametrize("algorithm", ["mgrawa", "lgrawa"])
def test_uniform_twin_is_localsgd_with_the_same_pull_and_prox(algorithm):
    twin = run(dataclasses.replace(BASE, algorithm=algorithm, weighting="uniform"), progress=False)
    local = run(dataclasses.replace(BASE, algorithm="localsgd"), progress=False)
    assert max_abs_diff(twin.workers, local.workers) <= 1e-10
    assert max_abs_diff(twin.evaluated, local.evaluated) <= 1e-10
    assert max_abs_diff(twin.center, local.center) <= 1e-10
    columns = ["train_loss", "test_loss", "test_acc", "spread"]
    assert (twin.history[columns] - local.history[columns]).abs().max().max() <= 1e-10


@pytest.mark.parametrize("algorithm", ["mgrawa", "lgrawa"])
def test_uniform_twin_records_weights_of_exactly_one_over_m_and_the_same_clock(algorithm):
    cfg = dataclasses.replace(BASE, algorithm=algorithm)
    twin = run(dataclasses.replace(cfg, weighting="uniform"), progress=False)
    grawa = run(cfg, progress=False)
    assert len(twin.weights) == len(grawa.weights) > 0
    assert (twin.weights["weight"] == 1 / BASE.workers).all()
    assert not (grawa.weights["weight"] == 1 / BASE.workers).all()
    assert max_abs_diff(twin.workers, grawa.workers) > 1e-6  # the weighting changes the run
    # the probe is drawn and charged alike: the same simulated clock and bytes, row by row
    clock = ["sim_time", "compute_time", "comm_time", "comm_bytes", "round"]
    assert twin.history[clock].equals(grawa.history[clock])


def test_uniform_twin_stacked_equals_the_loop_backend():
    cfg = dataclasses.replace(BASE, algorithm="lgrawa", weighting="uniform", steps=20)
    fast, ref = (run(dataclasses.replace(cfg, backend=b), progress=False) for b in ("vmap", "loop"))
    assert max_abs_diff(fast.workers, ref.workers) <= 1e-10
    assert (ref.weights["weight"] == 1 / BASE.workers).all()


def test_twin_and_parent_share_an_ensemble_only_as_separate_runs():
    """run_many takes runs differing in seed only: the twin is its own ensemble and equals its solo run."""
    cfgs = [dataclasses.replace(BASE, algorithm="mgrawa", weighting="uniform", seed=s) for s in (0, 1)]
    for many, cfg in zip(run_many(cfgs, progress=False), cfgs):
        assert max_abs_diff(many.workers, run(cfg, progress=False).workers) <= 1e-10
    with pytest.raises(ConfigError, match="^weighting: "):
        run_many([cfgs[0], dataclasses.replace(cfgs[1], weighting=None)], progress=False)


def test_weighting_keeps_the_identity_of_grawa_runs_and_is_checked():
    plain = resolve(Config(algorithm="mgrawa"))
    assert plain.weighting == "inverse_norm"
    assert "weighting" not in run_identity(plain)
    assert run_identity(resolve(Config(algorithm="mgrawa", weighting="inverse_norm"))) == run_identity(plain)
    assert run_identity(resolve(Config(algorithm="mgrawa", weighting="uniform")))["weighting"] == "uniform"
    with pytest.raises(ConfigError, match=r"^weighting: must be one of inverse_norm, uniform \(got 'flat'\)"):
        Config(algorithm="lgrawa", weighting="flat")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Config(algorithm="localsgd", weighting="uniform")
    assert any(issubclass(w.category, ConfigWarning) and str(w.message).startswith("weighting: ") for w in caught)


def test_the_twin_is_named_and_styled_beside_its_parent():
    assert method_name("mgrawa", False, "uniform") == "mgrawa+uniform"
    assert method_name("lgrawa", False, "inverse_norm") == "lgrawa"
    assert method_name("dp", True) == "dp+sam"
    for parent in ("mgrawa", "lgrawa"):
        twin = STYLES[f"{parent}+uniform"]
        assert twin.color == STYLES[parent].color and twin.linestyle != STYLES[parent].linestyle
        assert twin.label == STYLES[parent].label + " (uniform)"


def test_uniform_weights_ignore_the_scores_but_keep_the_divergence_check():
    from grawa_sim.algorithms import build
    from grawa_sim.algorithms.grawa import DivergenceError, GrawaHyper
    from grawa_sim.core.collectives import StackedAxis

    twin = build("mgrawa", GrawaHyper(pull=1.0, prox=0.0, tau=1, weighting="uniform", grawa_smoothing=False))
    axis = StackedAxis(3)
    params = {"w": torch.tensor([[0.0], [3.0], [9.0]], dtype=torch.float64)}
    state = twin.init({"w": params["w"][:1]}, axis)
    new, _, info = twin.round(params, state, axis, {"w": torch.tensor([[1.0], [10.0], [100.0]])})
    assert torch.equal(info.weights, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert torch.allclose(new["w"], torch.full((3, 1), 4.0, dtype=torch.float64))
    with pytest.raises(DivergenceError):
        twin.round(params, state, axis, {"w": torch.tensor([[1.0], [float("nan")], [1.0]])})


def test_the_two_twins_are_one_rule():
    """With uniform weights the per-layer and per-model centers are the same mean: MGRAWA's and LGRAWA's twins
    give bitwise the same run, so a study may train one and show it beside both."""
    m, lg = (run(dataclasses.replace(BASE, algorithm=a, weighting="uniform"), progress=False)
             for a in ("mgrawa", "lgrawa"))
    assert all(torch.equal(m.workers[n], lg.workers[n]) for n in m.workers)
    assert m.history["test_acc"].equals(lg.history["test_acc"])
