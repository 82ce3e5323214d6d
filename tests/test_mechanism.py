"""The two-basins landscape, R runs in one ensemble (GroupedAxis), the mechanism study and the
weights-against-sharpness recorder, each against an independent reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.testing import assert_close

from grawa_sim import Config, algorithms, run
from grawa_sim.algorithms import Hyper
from grawa_sim.core.collectives import GroupedAxis, StackedAxis
from grawa_sim.data.two_basins import Point, basins, flow_to_basin, landscape
from grawa_sim.engine.problem import model_and_data
from grawa_sim.experiments import mechanism
from grawa_sim.experiments import weights_sharpness as ws
from grawa_sim.flatness import hessian_matrix, model_loss

F64 = torch.float64
R, M = 3, 4


def _params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(R * M, 3, 2, generator=g, dtype=F64), "b": torch.randn(R * M, 5, generator=g, dtype=F64)}


# ---------------------------------------------------------------- the grouped axis


def test_grouped_collectives_reduce_within_each_group():
    axis = GroupedAxis(M, R)
    t = torch.randn(R * M, 2, dtype=F64)
    for r in range(R):
        rows = slice(r * M, (r + 1) * M)
        assert_close(axis.all_reduce_sum(t)[rows], t[rows].sum(0, keepdim=True).expand(M, 2))
        assert_close(axis.all_reduce_min(t)[rows], t[rows].min(0, keepdim=True).values.expand(M, 2))
        assert_close(axis.all_reduce_mean(t)[rows], t[rows].mean(0, keepdim=True).expand(M, 2))
        assert_close(axis.broadcast(t, 2)[rows], t[r * M + 2].expand(M, 2))


def test_select_min_lowest_index_on_ties():
    values = torch.tensor([3.0, 1.0, 1.0, 2.0, 5.0, 4.0, 4.0, 0.5], dtype=F64)
    params = {"x": torch.arange(8, dtype=F64).unsqueeze(1)}
    index, chosen = StackedAxis(8).select_min(values, params)
    assert index == 7 and chosen["x"].shape == (1, 1) and float(chosen["x"]) == 7.0
    index, chosen = GroupedAxis(4, 2).select_min(values, params)
    assert index.tolist() == [1, 3]  # group 0: tie 1.0 at 1 and 2 -> 1; group 1: 0.5 at its worker 3
    assert chosen["x"].flatten().tolist() == [1.0] * 4 + [7.0] * 4


@pytest.mark.parametrize("name", algorithms.names())
def test_grouped_rounds_equal_separate_runs(name):
    """Three rounds of R runs on one GroupedAxis equal each run alone on its own StackedAxis."""
    hyper = Hyper(pull=0.4, prox=0.0, tau=4)
    grouped, alone = algorithms.build(name, hyper), [algorithms.build(name, hyper) for _ in range(R)]
    params, axis = _params(0), GroupedAxis(M, R)
    start = {n: x.reshape(R, M, *x.shape[1:])[:, :1].expand(R, M, *x.shape[1:]).reshape(x.shape)
             for n, x in params.items()}  # each run's common initial point: its worker 0
    state = grouped.init(start, axis)
    runs = [({n: x[r * M:(r + 1) * M].clone() for n, x in params.items()}) for r in range(R)]
    states = [a.init({n: x[:1].clone() for n, x in p.items()}, StackedAxis(M)) for a, p in zip(alone, runs)]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        losses = torch.rand(R * M, generator=g, dtype=F64)
        grads = {n: torch.randn(x.shape, generator=g, dtype=F64) for n, x in params.items()}
        state = grouped.observe_losses(state, losses)
        if grouped.communicates_every_step:
            reduced = grouped.reduce_grads(grads, axis)
        else:
            params, state, _ = grouped.round(params, state, axis, grads)
        for r in range(R):
            rows = slice(r * M, (r + 1) * M)
            states[r] = alone[r].observe_losses(states[r], losses[rows])
            mine = {n: x[rows] for n, x in grads.items()}
            if grouped.communicates_every_step:
                for n in grads:
                    assert_close(reduced[n][rows], alone[r].reduce_grads(mine, StackedAxis(M))[n])
            else:
                runs[r], states[r], _ = alone[r].round(runs[r], states[r], StackedAxis(M), mine)
    for r in range(R):
        rows = slice(r * M, (r + 1) * M)
        for n in params:
            assert_close(params[n][rows], runs[r][n], rtol=1e-12, atol=1e-12)
            assert_close(grouped.center(state)[n].expand_as(params[n])[rows],
                         alone[r].center(states[r])[n].expand(M, *params[n].shape[1:]), rtol=1e-12, atol=1e-12)
            evaluated = grouped.evaluated(params, state, axis)[n].expand_as(params[n])[rows]
            assert_close(evaluated, alone[r].evaluated(runs[r], states[r], StackedAxis(M))[n].expand_as(evaluated),
                         rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the landscape


def test_two_basins_have_equal_depth_and_different_curvature():
    shape = landscape()
    where = basins(shape)

    def f(v: np.ndarray) -> float:
        return float(shape.value(torch.tensor(v, dtype=F64)))

    found = [minimize(f, np.array([s, 0.3]), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
             for s in (-1.4, 1.4)]  # an independent 2-D search for each minimum
    assert abs(found[0].fun - found[1].fun) < 1e-9
    assert_close(torch.tensor(found[0].x), where.sharp, atol=1e-5, rtol=0)
    assert_close(torch.tensor(found[1].x), where.wide, atol=1e-5, rtol=0)
    assert where.sharp_curvature > 5 * where.wide_curvature
    assert float(shape.value(where.ridge)) > where.value + 0.3  # a real barrier between the basins


def test_gradient_matches_finite_differences_and_flow_finds_basins():
    shape = landscape(dim=3)
    x = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    h = 1e-6
    fd = torch.stack([(shape.value(x + h * e) - shape.value(x - h * e)) / (2 * h) for e in torch.eye(3, dtype=F64)])
    assert_close(shape.gradient(x), fd, atol=1e-8, rtol=0)
    where = basins(shape)
    points = torch.stack([where.sharp + 0.05, where.wide - 0.1, where.ridge + torch.tensor([0.2, 0, 0], dtype=F64),
                          where.ridge - torch.tensor([0.2, 0, 0], dtype=F64)])
    assert flow_to_basin(shape, points).tolist() == [False, True, True, False]


def test_point_model_outputs_each_samples_loss():
    shape = landscape()
    model = Point(shape, torch.tensor([0.1, -0.4])).double()
    xi = torch.randn(5, 2, dtype=F64)
    assert_close(model(xi), shape.value(model.x.detach()) + xi @ model.x.detach())


def test_two_basins_runs_through_run_deterministically():
    cfg = Config(algorithm="mgrawa", workers=4, dataset="two_basins", model="point", steps=64, tau=8, lr=0.05,
                 momentum=0.0, weight_decay=0.0, dtype="float64", batch_size=4)
    a, b = run(cfg, progress=False), run(cfg, progress=False)
    assert_close(a.workers["x"], b.workers["x"], rtol=0, atol=0)
    assert np.isfinite(a.history["train_loss"]).all()
    with pytest.raises(ValueError, match="model"):
        Config(dataset="two_basins", model="mlp")


# ---------------------------------------------------------------- the mechanism study


def test_mechanism_simulate_invariants_and_determinism():
    base = mechanism.Setup(runs=6, steps=32, tau=8)
    local = mechanism.simulate(dataclasses.replace(base, algorithm="localsgd"))
    # LocalSGD with pull 1 after a round at the last step: every run's workers coincide with its average
    assert_close(local.workers, local.evaluated.unsqueeze(1).expand_as(local.workers), rtol=0, atol=1e-12)
    dp = mechanism.simulate(dataclasses.replace(base, algorithm="dp"))
    assert_close(dp.workers, dp.workers[:, :1].expand_as(dp.workers), rtol=0, atol=1e-12)  # one model per run
    again = mechanism.simulate(dataclasses.replace(base, algorithm="lsgd"))
    once = mechanism.simulate(dataclasses.replace(base, algorithm="lsgd"))
    assert torch.equal(again.workers, once.workers)
    assert again.path.shape == (33, base.workers, 2) and again.center_path.shape == (33, 2)


def test_mechanism_study_table():
    table, outcomes = mechanism.study(methods=("dp", "localsgd", "mgrawa"), taus=(4, 8), pulls=(0.5, 1.0),
                                      base=mechanism.Setup(runs=5, steps=16))
    # DP once; LocalSGD once per tau; MGRAWA per (tau, pull)
    assert len(table) == 1 + 2 + 4 and set(outcomes) == {tuple(r) for r in table[["algorithm", "tau", "pull"]].values}
    for what in ("model", "center", "worker"):
        low, mid, high = table[f"{what}_low"], table[f"{what}_wide"], table[f"{what}_high"]
        assert ((low <= mid) & (mid <= high)).all()
    row = table.iloc[-1]
    outcome = outcomes[(row["algorithm"], row["tau"], row["pull"])]
    assert row["model_wide"] == pytest.approx(float(outcome.evaluated_wide.double().mean()))


# ---------------------------------------------------------------- weights against sharpness


def test_on_round_sees_the_workers_before_the_round():
    cfg = Config(algorithm="localsgd", workers=4, model="mlp", width=8, steps=32, tau=16, dtype="float64")
    seen = []
    result = run(cfg, progress=False, on_round=lambda k, before, info: seen.append((k, before)))
    assert [k for k, _ in seen] == [1, 2]
    before = seen[-1][1]
    assert float((before["net.0.weight"] - before["net.0.weight"][:1]).abs().max()) > 0  # distinct workers
    for n, x in result.workers.items():  # pull 1: after the last round every worker is the mean of `before`
        assert_close(x, before[n].mean(0, keepdim=True).expand_as(x))


def test_recorded_lambda_max_matches_the_exact_hessian():
    cfg = Config(algorithm="mgrawa", workers=3, model="logistic", steps=16, tau=8, dtype="float64")
    table = ws.record(cfg, settings=dataclasses.replace(ws.SETTINGS, power_iters=3000, power_tol=1e-12))
    befores = []
    result = run(cfg, progress=False, on_round=lambda k, before, info: befores.append(before))
    model, data = model_and_data(cfg)
    loss_fn = model_loss(model, data)
    for k, before in enumerate(befores, start=1):
        rows = table[table["round"] == k].sort_values("worker")
        for i in range(cfg.workers):
            exact = torch.linalg.eigvalsh(hessian_matrix(loss_fn, {n: x[i] for n, x in before.items()})).max()
            assert rows["lambda_max"].iloc[i] == pytest.approx(float(exact), rel=1e-6)
    weights = result.weights.sort_values(["round", "worker"])["weight"].to_numpy()
    assert_close(torch.tensor(table.sort_values(["round", "worker"])["weight"].to_numpy()), torch.tensor(weights))


def test_round_correlations_against_scipy_by_hand():
    import pandas as pd
    from scipy.stats import spearmanr

    g = np.random.default_rng(0)
    table = pd.DataFrame({"seed": np.repeat([0, 1], 8), "round": np.tile(np.repeat([1, 2], 4), 2),
                          "worker": np.tile(range(4), 4), "weight": g.random(16), "score": g.random(16),
                          "lambda_max": g.random(16)})
    rhos = ws.round_correlations(table)
    first = table[(table["seed"] == 0) & (table["round"] == 1)]
    assert rhos["rho"].iloc[0] == pytest.approx(spearmanr(first["weight"], first["lambda_max"]).statistic)
    summary = ws.correlation_summary(table).set_index("pair")
    per_seed = rhos.groupby("seed")["rho"].mean()
    assert summary.loc["weight vs lambda_max", "rho_mean"] == pytest.approx(per_seed.mean())


def test_studies_resume_from_their_cache(tmp_path, monkeypatch):
    import pandas as pd

    base = mechanism.Setup(runs=4, steps=16)
    first, outcomes = mechanism.study(methods=("localsgd", "mgrawa"), taus=(4, 8), base=base, cache=tmp_path / "b")
    assert len(outcomes) == len(first) == len(list((tmp_path / "b").glob("*.csv")))
    weights = ws.study(1, dataclasses.replace(ws.BASE, steps=64, width=8), cache=tmp_path / "w")

    def no_work(*args, **kwargs):
        raise AssertionError("a cached piece was computed again")

    monkeypatch.setattr(mechanism, "simulate", no_work)
    monkeypatch.setattr(ws, "record", no_work)
    again, computed = mechanism.study(methods=("localsgd", "mgrawa"), taus=(4, 8), base=base, cache=tmp_path / "b")
    pd.testing.assert_frame_equal(first, again, check_dtype=False)
    assert computed == {}
    pd.testing.assert_frame_equal(weights, ws.study(1, dataclasses.replace(ws.BASE, steps=64, width=8),
                                                    cache=tmp_path / "w"), check_dtype=False)
