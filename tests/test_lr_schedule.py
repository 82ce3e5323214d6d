"""Learning-rate schedules: the formula at hand-computed points, and the trained parameters against torch."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ConfigError, resolve
from grawa_sim.engine.lr_schedule import lr_at
from tests.helpers import batch_stream


def _cfg(**kw) -> Config:
    return resolve(Config(lr=0.2, steps=100, **kw))


def test_constant_is_the_default():
    cfg = _cfg()
    assert cfg.lr_schedule == "constant"
    assert [lr_at(cfg, t) for t in (0, 50, 99)] == [0.2, 0.2, 0.2]


def test_step_decay_by_factor():
    cfg = _cfg(lr_decay_at=(10, 30), lr_decay_factor=0.5)
    assert cfg.lr_schedule == "step"
    assert lr_at(cfg, 9) == pytest.approx(0.2)
    assert lr_at(cfg, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 29) == pytest.approx(0.1)
    assert lr_at(cfg, 30) == pytest.approx(0.05)


def test_cosine_hand_values():
    cfg = _cfg(lr_schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(0.2)
    assert lr_at(cfg, 50) == pytest.approx(0.1)
    assert lr_at(cfg, 25) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert lr_at(cfg, 100) == pytest.approx(0.0, abs=1e-12)


def test_warmup_then_cosine():
    cfg = _cfg(lr_schedule="cosine", warmup=10)
    assert lr_at(cfg, 0) == pytest.approx(0.02)  # first step: lr * 1 / 10
    assert lr_at(cfg, 4) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(0.2)
    assert lr_at(cfg, 10) == pytest.approx(0.2)  # cosine starts after the warm-up
    assert lr_at(cfg, 55) == pytest.approx(0.1)


def test_seconds_unit_uses_time_budget_as_horizon():
    cfg = resolve(Config(lr=0.2, lr_schedule="cosine", lr_decay_unit="seconds", time_budget=2.0, step_time=0.01))
    assert lr_at(cfg, 1.0) == pytest.approx(0.1)
    warm = resolve(Config(lr=0.2, warmup=0.1, lr_decay_unit="seconds", step_time=0.01))
    assert lr_at(warm, 0.0) == pytest.approx(0.02)  # one 10 ms step of a 100 ms warm-up


@pytest.mark.parametrize("kw,field", [
    (dict(lr_schedule="linear"), "lr_schedule"),
    (dict(lr_schedule="cosine", lr_decay_at=(10,)), "lr_decay_at"),
    (dict(lr_schedule="cosine", lr_decay_unit="seconds"), "lr_schedule"),
    (dict(lr_decay_factor=0.0), "lr_decay_factor"),
    (dict(warmup=-1), "warmup"),
    (dict(lr_schedule="step"), "lr_decay_at"),
    (dict(lr_schedule="cosine", steps=100, warmup=100), "warmup"),
    (dict(steps=100, warmup=150), "warmup"),
    (dict(lr_schedule="cosine", lr_decay_unit="seconds", time_budget=1.0, warmup=1.0), "warmup"),
])
def test_schedule_config_errors(kw, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        resolve(Config(**kw))


def _torch_reference(cfg: Config, factor, **sgd):
    """One model trained by torch.optim.SGD (``sgd`` options) with LambdaLR(``factor``) on the batches the
    runner draws for ``cfg`` (one worker), from the same seeded initial point."""
    from grawa_sim.models import registry as models

    batches, data = batch_stream(cfg)
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, data.features, data.outputs).double()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, **sgd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for idx in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.x_train[idx[0]]), data.y_train[idx[0]]).backward()
        opt.step()
        sched.step()
    return model


def test_trained_parameters_follow_the_schedule():
    """One worker (DP, M = 1) against torch.optim.SGD with LambdaLR implementing the same formula."""
    cfg = Config(algorithm="dp", workers=1, steps=30, lr=0.1, momentum=0.9, weight_decay=1e-3, batch_size=16,
                 dtype="float64", model="mlp", lr_schedule="cosine", warmup=5, eval_every=10)
    result = run(cfg, progress=False)

    def factor(t: int) -> float:
        return min(1.0, (t + 1) / 5) * 0.5 * (1 + math.cos(math.pi * max(0, t - 5) / 25))

    model = _torch_reference(cfg, factor, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for name, p in model.named_parameters():
        assert torch.allclose(result.workers[name][0], p.detach(), atol=1e-10), name
    constant = run(dataclasses.replace(cfg, lr_schedule="constant", warmup=0.0), progress=False)
    assert not torch.allclose(constant.workers["net.0.weight"], result.workers["net.0.weight"], atol=1e-4)
    assert result.history["lr_now"].iloc[-1] == pytest.approx(0.1 * factor(30))


def test_inverse_decay_hand_values():
    cfg = _cfg(lr_schedule="inverse", lr_t0=20)
    assert [lr_at(cfg, t) for t in (0, 20, 60)] == pytest.approx([0.2, 0.1, 0.05])
    warm = _cfg(lr_schedule="inverse", lr_t0=20, warmup=10)
    assert lr_at(warm, 4) == pytest.approx(0.2 * 0.5 / (1 + 4 / 20))


@pytest.mark.parametrize("kw", [dict(lr_schedule="inverse"), dict(lr_schedule="inverse", lr_t0=0),
                                dict(lr_schedule="inverse", lr_t0=float("nan")), dict(lr_t0=5.0)])
def test_inverse_needs_a_positive_t0(kw):
    with pytest.raises(ConfigError, match="^lr_t0: "):
        resolve(Config(**kw))


def test_inverse_trained_parameters_match_lambdalr():
    """DP with M = 1 under lr / (1 + t / t0) against torch.optim.SGD + LambdaLR, plain SGD."""
    cfg = Config(algorithm="dp", workers=1, steps=25, lr=0.3, momentum=0.0, weight_decay=0.0, batch_size=16,
                 dtype="float64", model="logistic", lr_schedule="inverse", lr_t0=4.0, eval_every=25)
    result = run(cfg, progress=False)
    model = _torch_reference(cfg, lambda t: 1 / (1 + t / 4))
    for name, p in model.named_parameters():
        assert torch.allclose(result.workers[name][0], p.detach(), atol=1e-12), name


def test_worker_lr_factors_are_geometric_around_one():
    from grawa_sim.engine.lr_schedule import worker_factors

    factors = worker_factors(resolve(Config(algorithm="localsgd", workers=3, lr_spread=4.0)))
    assert factors == pytest.approx([0.5, 1.0, 2.0])
    assert worker_factors(resolve(Config(algorithm="localsgd", workers=3))) is None
    assert resolve(Config(algorithm="localsgd", lr_spread=1.0)).lr_spread is None  # the same run as unset
    assert resolve(Config(algorithm="localsgd", workers=1, lr_spread=4.0)).lr_spread is None  # one worker


@pytest.mark.parametrize("value", [0.5, 0.0, float("nan"), "2"])
def test_lr_spread_below_one_is_refused(value):
    with pytest.raises(ConfigError, match="^lr_spread: "):
        Config(algorithm="localsgd", lr_spread=value)


def test_lr_spread_is_ignored_by_dp_with_a_warning():
    from grawa_sim.config import ConfigWarning

    with pytest.warns(ConfigWarning, match="^lr_spread: "):
        cfg = Config(algorithm="dp", lr_spread=2.0)
    assert resolve(cfg).lr_spread is None


def test_each_worker_trains_at_its_own_lr_as_torch_sgd_does():
    """Per-worker lrs against the loop backend (one torch.optim.SGD per worker, its own lr), under a cosine
    schedule and GRAWA's rounds; and the spread changes the workers (the check can fail)."""
    from tests.test_parity import BASE, _compare

    cfg = dataclasses.replace(BASE, algorithm="mgrawa", lr_spread=9.0, lr_schedule="cosine", steps=48, eval_every=24)
    _compare(cfg, 1e-5)
    same = run(dataclasses.replace(cfg, lr_spread=None), progress=False)
    spread = run(cfg, progress=False)
    assert not torch.allclose(same.workers["net.0.weight"][0], spread.workers["net.0.weight"][0], atol=1e-4)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_worker_with_a_spread_lr_trains_as_a_run_at_that_lr(schedule):
    """Before the first round, worker i of a run with lr_spread s holds what every worker of a run at
    lr x s^(i/(M-1) - 1/2) holds (same seed: same batches), momentum and weight decay on."""
    cfg = Config(algorithm="localsgd", workers=3, steps=12, tau=6, lr=0.05, momentum=0.9, weight_decay=1e-3,
                 batch_size=16, dtype="float64", model="mlp", lr_spread=4.0, lr_schedule=schedule, eval_every=6)

    def before_first_round(config: Config) -> dict:
        seen = {}

        def keep(index, before, info):
            seen.setdefault("params", before)

        run(config, progress=False, on_round=keep)
        return seen["params"]

    spread = before_first_round(cfg)
    for worker, factor in enumerate((0.5, 1.0, 2.0)):
        alone = before_first_round(dataclasses.replace(cfg, lr_spread=None, lr=0.05 * factor))
        for name, p in alone.items():
            torch.testing.assert_close(spread[name][worker], p[worker], rtol=0, atol=1e-12)


def test_per_worker_lrs_under_the_asynchronous_schedule_match_the_loop():
    """Asynchronous rounds step a subset of the workers at a time: each keeps its own lr (vmap against loop)."""
    from tests.test_parity import BASE, _compare

    _compare(dataclasses.replace(BASE, algorithm="localsgd", lr_spread=4.0, schedule="async", speed_spread=0.5,
                                 steps=48, eval_every=24), 1e-5)
