"""The stacked (vmap) engine against the independent loop backend, float64, momentum and weight decay on."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ALGORITHMS
from grawa_sim.engine.ensemble import SGDState
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stacked_sgd_update_equals_the_formula_with_transposed_gradients(dtype):
    """SGDState's update (the fused kernel with one rate, the row-by-row path with one rate per worker)
    against g' = g + wd x; v' = mu v + g'; x' = x - lr (g' + mu v'), with gradients that autograd may
    hand back transposed (non-contiguous)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 10, 7), (4, 7)]
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads[0] = torch.randn(4, 7, 10, generator=gen, dtype=dtype).transpose(1, 2)  # non-contiguous
    velocity = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    lr, mu, wd = 0.05, 0.9, 1e-3
    expected = []
    for x, g, v in zip(params, grads, velocity):
        g2 = g + wd * x
        v2 = mu * v + g2
        expected.append(x - lr * (g2 + mu * v2))
    for rates in (dict(lr=lr, momentum=mu, weight_decay=wd),
                  dict(lr=torch.full((4,), lr, dtype=dtype), momentum=torch.full((4,), mu, dtype=dtype),
                       weight_decay=torch.full((4,), wd, dtype=dtype))):
        x = [p.clone() for p in params]
        sgd = SGDState(dict(zip("ab", x)), **rates)
        sgd.buffers = [v.clone() for v in velocity]
        sgd.apply(x, [g.clone() for g in grads])
        for got, want in zip(x, expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14)


def test_stacked_step_uses_the_fused_update_after_adopting_the_gradient_layout(monkeypatch):
    """After the first step every parameter sits in its gradient's layout (a linear weight's gradient comes
    transposed), so later steps take the fused kernel on every tensor without copying a gradient."""
    from grawa_sim.engine.problem import build_problem

    problem = build_problem(Config(algorithm="localsgd", workers=4, tau=8, batch_size=8, model="mlp"), "cpu")
    problem.step()
    calls = []
    real = torch._fused_sgd_
    monkeypatch.setattr(torch, "_fused_sgd_", lambda *a, **k: calls.append(a) or real(*a, **k))
    copies = []
    real_empty_like = torch.empty_like
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: copies.append(a) or real_empty_like(*a, **k))
    problem.step()
    assert len(calls) == 1 and len(calls[0][0]) == len(problem.engine.params)
    assert all(t.is_contiguous() for group in calls[0] for t in group)
    assert copies == []


def test_result_workers_are_contiguous_whatever_layout_the_engine_keeps():
    """The engine keeps a linear weight in its gradient's transposed layout; the Result hands back the
    usual contiguous tensors (so randn_like / view on them behave as on a module's parameters)."""
    result = run(Config(algorithm="localsgd", workers=2, tau=2, steps=4, batch_size=8, model="mlp", eval_every=4),
                 progress=False)
    assert all(w.is_contiguous() for w in result.workers.values())


def test_fused_update_on_parameters_kept_transposed_over_several_steps():
    """A parameter and its momentum in a transposed layout (as the engine keeps a linear weight) take the
    fused kernel through cached permuted views; three steps equal the formula applied three times."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, 10, generator=gen, dtype=torch.float64).transpose(1, 2)  # [4, 10, 7], not contiguous
    sgd = SGDState({"w": x}, lr=0.05, momentum=0.9, weight_decay=1e-3)
    assert sgd.buffers[0].stride() == x.stride()  # momentum created in the parameter's layout
    want, v = x.clone(), torch.zeros_like(x)
    for _ in range(3):
        g = torch.randn(4, 7, 10, generator=gen, dtype=torch.float64).transpose(1, 2)
        g2 = g + 1e-3 * want
        v = 0.9 * v + g2
        want = want - 0.05 * (g2 + 0.9 * v)
        sgd.apply([x], [g.clone()])
    assert len(sgd._views) == 1  # the cached views served the later steps
    torch.testing.assert_close(x, want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_update_of_a_parameter_used_only_through_its_sum(momentum):
    """Autograd returns such a parameter's gradient expanded (overlapping memory); the in-place update
    (the fallback path without momentum, the fused one with it) must equal torch.optim.SGD per worker."""
    from torch import nn

    from grawa_sim.algorithms import build
    from grawa_sim.algorithms.base import Hyper
    from grawa_sim.core.collectives import StackedAxis
    from grawa_sim.engine.ensemble import VmapEngine

    class Summed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)
            self.s = nn.Parameter(torch.linspace(0.5, 1.0, 4))

        def forward(self, x):
            return self.lin(x) * self.s.sum()

    torch.manual_seed(0)
    model = Summed().double()
    loss = lambda out, y: nn.functional.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)  # noqa: E731
    engine = VmapEngine(model, build("localsgd", Hyper(pull=1.0, prox=0.0, tau=100)), StackedAxis(2), loss,
                        0.1, momentum, 1e-2, 0.0, 100, execution="vmap")
    copies = [Summed().double() for _ in range(2)]
    for c in copies:
        c.load_state_dict(model.state_dict())
    optimizers = [torch.optim.SGD(c.parameters(), lr=0.1, momentum=momentum, nesterov=momentum > 0,
                                  weight_decay=1e-2) for c in copies]
    for _ in range(3):
        x, y = torch.randn(2, 5, 3, dtype=torch.float64), torch.randint(0, 2, (2, 5))
        engine.local_step(x, y)
        for i, (c, opt) in enumerate(zip(copies, optimizers)):
            opt.zero_grad()
            nn.functional.cross_entropy(c(x[i]), y[i]).backward()
            opt.step()
    for i, c in enumerate(copies):
        assert max_abs_diff({n: p[i] for n, p in engine.params.items()},
                            {n: p.detach() for n, p in c.named_parameters()}) <= 1e-12
