"""Flatness toolkit: exact spectra of quadratics, a small MLP against its dense Hessian,
vmapped workers against one-by-one calls, epsilon-sharpness against a grid search, and
the flatness table of a run saved by the core runner."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

import grawa_sim
from grawa_sim import flatness as F
from grawa_sim.models import registry as models
from grawa_sim.models.losses import per_sample_loss
from grawa_sim.results import run_flatness
from grawa_sim.results.storage import save_result

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's jvp

N = 40
SPECTRA = {
    "separated": [10.0, 7.0, 5.0] + list(np.linspace(0.1, 4.0, N - 3)),
    "near_degenerate_top": [10.0, 9.99, 7.0] + list(np.linspace(0.1, 5.0, N - 3)),
    "indefinite": [10.0, 7.0] + list(np.linspace(-6.0, 5.0, N - 2)),
}


def quadratic(eigenvalues, seed: int = 0):
    """0.5 x^T A x with A = Q diag(eigenvalues) Q^T for a seeded random rotation Q."""
    ev = torch.tensor(eigenvalues, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(ev), len(ev), dtype=torch.float64, generator=g))
    a = q @ torch.diag(ev) @ q.T
    a = 0.5 * (a + a.T)
    x0 = {"x": torch.randn(len(ev), dtype=torch.float64, generator=g)}
    return (lambda p: 0.5 * p["x"] @ a @ p["x"]), x0, a, ev


# --- quadratics with known spectra ---------------------------------------------------------
@pytest.mark.parametrize("name", list(SPECTRA))
def test_top_eigenvalue_of_quadratic(name):
    loss, x0, _, ev = quadratic(SPECTRA[name])
    value, converged = F.top_eigenvalue(loss, x0, iters=3000, tol=1e-12)
    assert abs(value - ev.max().item()) <= 1e-4 * ev.max().item()
    assert isinstance(converged, bool)


def test_power_iteration_converges_flag_and_stops_early():
    loss, x0, _, ev = quadratic(SPECTRA["separated"])
    op = F.core.single(loss, x0)
    values, converged, iters = F.stacked_power_iteration(op, iters=500, tol=1e-10)
    assert bool(converged[0]) and 10 < int(iters[0]) < 500
    assert abs(values[0].item() - 10.0) <= 1e-6
    _, converged, iters = F.stacked_power_iteration(op, iters=3, tol=1e-10)
    assert not bool(converged[0]) and int(iters[0]) == 3


def test_power_iteration_returns_signed_dominant_eigenvalue_and_lanczos_the_largest():
    loss, x0, _, ev = quadratic([-12.0] + SPECTRA["indefinite"][:-1])
    op = F.core.single(loss, x0)
    value, converged, _ = F.stacked_power_iteration(op, iters=3000, tol=1e-12)
    assert bool(converged[0]) and abs(value[0].item() + 12.0) <= 1e-4 * 12  # largest |lambda|, with its sign
    top = F.lanczos_spectrum(loss, x0, k=2, steps=N).top
    torch.testing.assert_close(top, torch.tensor([10.0, 7.0], dtype=torch.float64), rtol=0, atol=1e-8)


EXTREME_SPECTRA = {
    "issue_example": [3.0, 1.0, -5.0, 0.5],
    "dominant_negative": [-12.0, 10.0, 7.0] + list(np.linspace(-6.0, 5.0, N - 3)),
    "near_degenerate_top_negative_dominant": [-20.0, 8.0, 7.999] + list(np.linspace(-3.0, 5.0, N - 3)),
    "symmetric_ends": [9.0, -9.0, 6.0] + list(np.linspace(-4.0, 4.0, N - 3)),
    "positive_definite": [10.0, 7.0] + list(np.linspace(0.5, 5.0, N - 2)),
    "negative_definite": [-0.5, -3.0] + list(np.linspace(-10.0, -4.0, N - 2)),
}


@pytest.mark.parametrize("name", list(EXTREME_SPECTRA))
def test_lambda_max_is_the_largest_algebraic_eigenvalue_and_lambda_min_the_smallest(name):
    loss, x0, a, ev = quadratic(EXTREME_SPECTRA[name])
    exact = torch.linalg.eigvalsh(a)  # the independent reference: a dense eigensolver
    lam_max, converged = F.top_eigenvalue(loss, x0, iters=5000, tol=1e-13)
    assert lam_max == pytest.approx(exact[-1].item(), abs=2e-3 * exact.abs().max().item())
    hi, lo = F.extreme_eigenvalues(loss, x0, iters=5000, tol=1e-13)
    assert hi == pytest.approx(exact[-1].item(), abs=2e-3 * exact.abs().max().item())
    assert lo == pytest.approx(exact[0].item(), abs=2e-3 * exact.abs().max().item())
    if name == "issue_example":
        assert lam_max == pytest.approx(3.0, abs=1e-6) and lo == pytest.approx(-5.0, abs=1e-6)


def test_extreme_eigenvalues_of_several_models_at_once_match_one_by_one():
    quads = [quadratic(EXTREME_SPECTRA[k], seed=i) for i, k in enumerate(["dominant_negative", "positive_definite"])]
    a = torch.stack([q[2] for q in quads])
    stacked = {"x": torch.stack([q[1]["x"] for q in quads])}
    # a loss closure per model through the aux argument: the matrix travels as a per-model buffer
    op = F.Batched(lambda p, aux: 0.5 * p["x"] @ aux["a"] @ p["x"], stacked, {"a": a})
    ext = F.stacked_extreme_eigenvalues(op, iters=3000, tol=1e-12)
    for i in range(2):
        exact = torch.linalg.eigvalsh(a[i])
        assert ext.lambda_max[i].item() == pytest.approx(exact[-1].item(), abs=1e-2)
        assert ext.lambda_min[i].item() == pytest.approx(exact[0].item(), abs=1e-2)


@pytest.mark.parametrize("name", list(SPECTRA))
def test_hutchinson_trace_within_three_standard_errors(name):
    loss, x0, a, ev = quadratic(SPECTRA[name])
    est, se = F.hessian_trace(loss, x0, samples=200, seed=1)
    assert se > 0
    assert abs(est - ev.sum().item()) <= 3 * se


def test_hutchinson_standard_error_matches_the_exact_variance():
    # Var(z^T A z) = 2 * sum_{i != j} A_ij^2 for Rademacher z.
    loss, x0, a, _ = quadratic(SPECTRA["indefinite"])
    samples = 2000
    _, se = F.hessian_trace(loss, x0, samples=samples, seed=3)
    exact = math.sqrt(2 * float((a**2).sum() - (a.diagonal() ** 2).sum()) / samples)
    assert 0.9 * exact < se < 1.1 * exact


def test_hutchinson_is_exact_and_has_zero_error_for_a_diagonal_hessian():
    ev = torch.tensor(SPECTRA["indefinite"], dtype=torch.float64)
    est, se = F.hessian_trace(lambda p: 0.5 * (ev * p["x"] ** 2).sum(), {"x": torch.ones(N, dtype=torch.float64)},
                              samples=5)
    assert est == pytest.approx(float(ev.sum()), abs=1e-12) and se == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(SPECTRA))
def test_lanczos_top_k_of_quadratic(name):
    loss, x0, _, ev = quadratic(SPECTRA[name])
    spec = F.lanczos_spectrum(loss, x0, k=5, steps=30, seed=2)
    expected = ev.sort(descending=True).values[:5]
    assert spec.top.shape == (5,)
    assert (spec.top - expected).abs().max() <= 1e-4 * expected[0]


def test_ritz_sum_is_the_sum_of_ritz_values_not_the_trace():
    loss, x0, _, ev = quadratic(SPECTRA["separated"])
    full = F.lanczos_spectrum(loss, x0, k=3, steps=N)  # a full basis: T is similar to A
    assert full.ritz_sum.item() == pytest.approx(ev.sum().item(), rel=1e-10)
    torch.testing.assert_close(full.ritz, ev.sort(descending=True).values, rtol=0, atol=1e-8)
    part = F.lanczos_spectrum(loss, x0, k=3, steps=10)
    assert part.ritz.shape == (10,) and part.ritz_sum.item() == pytest.approx(part.ritz.sum().item())
    assert part.ritz_sum.item() < 0.8 * ev.sum().item()  # 10 Ritz values sum to far less than tr(A)


def test_lanczos_survives_an_exhausted_krylov_space():
    # Repeated eigenvalues: the Krylov space of one start has 3 dimensions, the basis restarts.
    ev = [5.0] * 4 + [3.0] * 3 + [1.0] * 3
    loss, x0, _, ev_t = quadratic(ev)
    spec = F.lanczos_spectrum(loss, x0, k=10, steps=10)
    torch.testing.assert_close(spec.ritz, ev_t.sort(descending=True).values, rtol=0, atol=1e-8)


def test_zero_hessian_gives_zeros_not_nan():
    # A linear loss: H v = 0 exactly, so Lanczos breaks down at once and power iteration meets H v = 0.
    x0 = {"x": torch.ones(6, dtype=torch.float64)}
    loss = lambda p: (torch.arange(6.0, dtype=torch.float64) * p["x"]).sum()  # noqa: E731
    for method in ("forward", "reverse"):
        assert F.top_eigenvalue(loss, x0, method=method) == (0.0, True)
        spec = F.lanczos_spectrum(loss, x0, k=3, steps=6, method=method)
        assert torch.equal(spec.ritz, torch.zeros(6, dtype=torch.float64))
        assert F.hessian_trace(loss, x0, samples=3, method=method) == (0.0, 0.0)


# --- a small MLP against its dense Hessian -------------------------------------------------
def small_mlp(seed: int = 0, workers: int = 0):
    """features 6 -> 12 -> 12 -> 3 (279 parameters), float64, on 48 random samples."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = models.MLP(6, 3, hidden=12).double()
    x = torch.randn(48, 6, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    loss = F.ModelLoss(model, x, y, per_sample_loss(3))
    params = {n: p.detach() for n, p in model.named_parameters()}
    if workers:
        params = {n: p + 0.3 * torch.randn(workers, *p.shape, dtype=torch.float64, generator=g)
                  for n, p in params.items()}
    return loss, params


def test_mlp_hvps_match_the_dense_hessian():
    loss, params = small_mlp()
    n = sum(p.numel() for p in params.values())
    assert n <= 2000
    hess = torch.func.hessian(lambda y: loss(F.Layout(params).unflat(y)))(F.Layout(params).flat(params))
    torch.testing.assert_close(F.hessian_matrix(loss, params), hess)
    layout = F.Layout(params)
    v = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = v @ hess.T
    for method in ("auto", "forward", "reverse"):
        got = torch.stack([layout.flat(F.hvp(loss, params, layout.unflat(vi), method=method)) for vi in v])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(hess.abs().max()))
    for method in ("forward", "reverse"):
        op = F.core.single(loss, params, method)
        torch.testing.assert_close(op.hvp(v[:1]), expected[:1], rtol=0, atol=1e-5 * float(hess.abs().max()))


def test_mlp_top_eigenvalue_and_spectrum_match_the_dense_hessian():
    loss, params = small_mlp()
    eig = torch.linalg.eigvalsh(F.hessian_matrix(loss, params))
    lam_abs = eig[eig.abs().argmax()].item()
    value, converged = F.top_eigenvalue(loss, params, iters=2000, tol=1e-10)
    assert converged and abs(value - lam_abs) <= 1e-3 * abs(lam_abs)
    assert abs(value - eig[-1].item()) <= 1e-3 * eig[-1].item()
    top = F.lanczos_spectrum(loss, params, k=3, steps=120).top
    torch.testing.assert_close(top, eig.flip(0)[:3], rtol=1e-4, atol=0)
    est, se = F.hessian_trace(loss, params, samples=100)
    assert abs(est - eig.sum().item()) <= 3 * se


def test_hvp_falls_back_to_double_backward_without_forward_mode():
    class Cube(torch.autograd.Function):  # no jvp: forward-mode AD is unsupported
        @staticmethod
        def forward(x):
            return x**3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * g

    x = {"x": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)}
    v = {"x": torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)}
    loss = lambda p: Cube.apply(p["x"]).sum()  # noqa: E731  H = diag(6 x)
    with pytest.raises((RuntimeError, NotImplementedError)):
        F.hvp(loss, x, v, method="forward")
    torch.testing.assert_close(F.hvp(loss, x, v)["x"], 6 * x["x"] * v["x"])
    op = F.core.single(loss, x, method="auto")
    torch.testing.assert_close(op.hvp(v["x"][None])[0], 6 * x["x"] * v["x"])
    assert op.method == "reverse"


# --- all workers in one vmapped call -------------------------------------------------------
SMALL = F.Settings(power_iters=30, power_tol=1e-6, trace_samples=8, lanczos_steps=12, lanczos_starts=2,
                   lanczos_k=3, eps=1e-2, eps_steps=6, eps_restarts=2, seed=4)


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_vmapped_workers_equal_one_by_one(method):
    settings = dataclasses.replace(SMALL, method=method)
    loss, stacked = small_mlp(seed=1, workers=3)
    table = F.measure_workers(loss, stacked, settings=settings)
    assert list(table["worker"]) == [0, 1, 2]
    for i in range(3):
        one = F.measure(loss, {n: p[i] for n, p in stacked.items()}, settings=settings)
        for col, value in one.items():
            assert table.loc[i, col] == pytest.approx(value, rel=1e-9, abs=1e-12), col
    assert table["lambda_max"].nunique() == 3  # the workers differ: no cross-talk hidden by equal inputs


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_unrolled_execution_equals_vmap(method):
    """The two executions of one Batched operator: every metric of every worker to 1e-10 (float64)."""
    settings = dataclasses.replace(SMALL, method=method)
    loss, stacked = small_mlp(seed=2, workers=3)
    vmapped = F.measure_workers(loss, stacked, settings=settings, execution="vmap")
    unrolled = F.measure_workers(loss, stacked, settings=settings, execution="unrolled")
    assert list(vmapped.columns) == list(unrolled.columns)
    for col in vmapped.columns:
        np.testing.assert_allclose(unrolled[col].astype(float), vmapped[col].astype(float), rtol=1e-10, atol=1e-10,
                                   err_msg=col)
    op = F.Batched(loss, stacked, execution="unrolled")
    v = torch.randn(3, op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(op.hvp(v), F.Batched(loss, stacked, execution="vmap").hvp(v), rtol=1e-10, atol=1e-10)


def test_auto_execution_picks_for_second_order_products():
    """"auto" asks `choose_execution` about the loss's model, for second-order products: any convolution on
    the CPU (2-D, and the 1-D CNN that training runs vmapped) runs unrolled, an MLP (and a closure without a
    model) vmapped."""
    from grawa_sim.models.execution import choose_execution

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    conv2d = models.build("resnet20", (3, 8, 8), 3, 2).double()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=g), torch.randint(0, 3, (6,), generator=g)
    conv_loss = F.ModelLoss(conv2d, x, y, per_sample_loss(3), batch=None)
    conv_params = {n: p.detach().unsqueeze(0).repeat(2, *[1] * p.ndim) for n, p in conv2d.named_parameters()}
    mlp_loss, mlp_params = small_mlp(workers=2)
    cpu = torch.device("cpu")
    for loss, params, model in ((conv_loss, conv_params, conv2d), (mlp_loss, mlp_params, mlp_loss.model)):
        op = F.Batched(loss, params)  # the default is "auto"
        assert op.execution == choose_execution(model, "auto", cpu, second_order=True)
    assert F.Batched(conv_loss, conv_params).execution == "unrolled"
    cnn1d = models.build("cnn", (40,), 10)
    assert choose_execution(cnn1d, "auto", cpu) == "vmap"  # training: 1-D convolutions win under vmap
    assert choose_execution(cnn1d, "auto", cpu, second_order=True) == "unrolled"
    assert choose_execution(cnn1d, "auto", torch.device("cuda"), second_order=True) == "vmap"
    assert choose_execution(conv2d, "auto", torch.device("cuda")) == "vmap"  # vmap on a GPU
    assert F.Batched(mlp_loss, mlp_params).execution == "vmap"
    assert F.Batched(lambda p: (p["x"] ** 2).sum(), {"x": torch.ones(2, 3)}).execution == "vmap"  # no model
    # the flatness table of a 2-D conv net: "auto" (unrolled here) gives the vmapped numbers
    settings = dataclasses.replace(SMALL, power_iters=5, trace_samples=2)
    metrics = ("loss", "lambda_max", "trace")
    auto = F.measure_workers(conv_loss, conv_params, metrics=metrics, settings=settings)
    vmapped = F.measure_workers(conv_loss, conv_params, metrics=metrics, settings=settings, execution="vmap")
    for col in ("loss", "lambda_max", "trace"):
        np.testing.assert_allclose(auto[col], vmapped[col], rtol=1e-10, err_msg=col)


def test_loop_is_not_an_execution(tmp_path, capsys):
    """"loop" names the per-worker backend; the flatness toolkit's executions are auto, vmap and unrolled."""
    from grawa_sim.cli.main import main

    loss, stacked = small_mlp(workers=2)
    message = r"^execution: must be one of auto, vmap, unrolled \(got 'loop'\)$"
    with pytest.raises(ValueError, match=message):
        F.Batched(loss, stacked, execution="loop")
    with pytest.raises(ValueError, match=message):
        F.measure_workers(loss, stacked, execution="loop")
    cfg = grawa_sim.Config(algorithm="localsgd", workers=2, steps=4, tau=2, dataset="digits", model="logistic",
                           batch_size=8)
    save_result(grawa_sim.run(cfg, progress=False), tmp_path / "run")
    assert main(["flatness", "--run", str(tmp_path / "run"), "--metrics", "loss", "--execution", "loop"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not (tmp_path / "run" / "flatness.csv").exists()
    assert captured.err == "error: execution: must be one of auto, vmap, unrolled (got 'loop')\n"
    assert main(["flatness", "--run", str(tmp_path / "run"), "--metrics", "loss", "--probe", "16",
                 "--execution", "unrolled"]) == 0
    assert (tmp_path / "run" / "flatness.csv").is_file()


@pytest.mark.parametrize("method", ["reverse", "forward"])
def test_vmapped_batchnorm_workers_equal_one_by_one_in_both_modes(method):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = models.CNN1d(8, 3, channels=3, batch_norm=True).double()
    x, y = torch.randn(32, 8, dtype=torch.float64, generator=g), torch.randint(0, 3, (32,), generator=g)
    stacked = {n: p.detach() + 0.1 * torch.randn(2, *p.shape, dtype=torch.float64, generator=g)
               for n, p in model.named_parameters()}
    buffers = {n: b.unsqueeze(0).repeat(2, *[1] * b.ndim).clone() for n, b in model.named_buffers()}
    for n in buffers:
        if n.endswith("running_var"):
            buffers[n][1] = 2.5
    settings = dataclasses.replace(SMALL, method=method, power_iters=10)
    for mode in ("eval", "train"):
        loss = F.ModelLoss(model, x, y, per_sample_loss(3), mode=mode)
        table = F.measure_workers(loss, stacked, buffers, metrics=("loss", "lambda_max", "trace"), settings=settings)
        for i in range(2):
            own = {n: b[i] for n, b in buffers.items()}
            one = F.measure(lambda p, own=own, loss=loss: loss(p, own), {n: p[i] for n, p in stacked.items()},
                            metrics=("loss", "lambda_max", "trace"), settings=settings)
            for col, value in one.items():
                assert table.loc[i, col] == pytest.approx(value, rel=1e-9), (mode, col)


def test_model_loss_batchnorm_modes_and_purity():
    torch.manual_seed(0)
    model = models.CNN1d(8, 3, channels=3, batch_norm=True).double()
    x, y = torch.randn(16, 8, dtype=torch.float64), torch.randint(0, 3, (16,))
    with torch.no_grad():
        model.train()(x)  # move the running statistics away from their initial values
    before = {n: b.clone() for n, b in model.named_buffers()}
    params = {n: p.detach() for n, p in model.named_parameters()}
    train, evalm = F.ModelLoss(model, x, y, per_sample_loss(3)), F.ModelLoss(model, x, y, per_sample_loss(3), "eval")
    ref = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert float(train(params)) == pytest.approx(float(ref(copy.deepcopy(model).train()(x), y)), rel=1e-12)
        assert float(evalm(params)) == pytest.approx(float(ref(copy.deepcopy(model).eval()(x), y)), rel=1e-12)
    assert float(train(params)) != pytest.approx(float(evalm(params)), rel=1e-6)
    F.top_eigenvalue(train, params, iters=3)
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n])  # measuring never updates the running statistics
    with pytest.raises(ValueError, match="mode"):
        F.ModelLoss(model, x, y, per_sample_loss(3), mode="test")


def test_same_seed_same_numbers_other_seed_differs():
    loss, params = small_mlp(seed=2)
    a = F.measure(loss, params, settings=SMALL)
    assert a == F.measure(loss, params, settings=SMALL)
    b = F.measure(loss, params, settings=dataclasses.replace(SMALL, seed=5))
    assert a["loss"] == b["loss"]
    for col in ("lambda_max", "trace", "ritz_sum", "eps_sharpness"):  # every random draw follows the seed
        assert a[col] != b[col], col


# --- epsilon-sharpness -------------------------------------------------------------------
def bumpy(p):
    """A non-quadratic 2-D function whose box maximum is not always at a corner."""
    x, y = p["w"][0], p["w"][1]
    return (x - 1) ** 2 + 2 * (y + 0.5) ** 2 + 0.8 * torch.sin(3 * x) * torch.cos(2 * y) + 0.3 * x * y + 2.0


def brute_force(w: torch.Tensor, eps: float, points: int = 801) -> float:
    r = eps * (w.abs() + 1)
    xs = torch.linspace(-1, 1, points, dtype=torch.float64)
    gx, gy = torch.meshgrid(w[0] + r[0] * xs, w[1] + r[1] * xs, indexing="ij")
    f0 = float(bumpy({"w": w}))
    worst = float(bumpy({"w": torch.stack([gx, gy])}).max())
    return 100 * (worst - f0) / (1 + f0)


@pytest.mark.parametrize("w", [[0.3, -0.2], [1.2, 0.4], [-0.4, -0.6]])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_epsilon_sharpness_matches_a_grid_search(w, eps):
    w = torch.tensor(w, dtype=torch.float64)
    got = F.epsilon_sharpness(bumpy, {"w": w}, eps=eps, steps=60, restarts=4)
    expected = brute_force(w, eps)
    assert expected > 0
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert got <= expected + 1e-9 + 1e-6 * abs(expected)  # a point inside the box: never above the max


def test_epsilon_sharpness_zero_at_zero_and_grows_with_eps():
    loss, params = small_mlp(seed=3)
    assert F.epsilon_sharpness(loss, params, eps=0.0) == 0.0
    values = [F.epsilon_sharpness(loss, params, eps=e, steps=10) for e in (1e-4, 1e-3, 1e-2, 5e-2)]
    assert all(b > a for a, b in zip(values, values[1:])) and values[0] > 0


# --- landscapes ----------------------------------------------------------------------------
def test_filter_normalised_direction():
    loss, params = small_mlp()
    d = F.random_direction(params, seed=3)
    for n, w in params.items():
        if w.ndim <= 1:
            assert torch.count_nonzero(d[n]) == 0
        else:
            torch.testing.assert_close(d[n].norm(dim=1), w.norm(dim=1))
    kept = F.random_direction(params, seed=3, ignore_1d=False)
    assert kept["net.0.bias"].norm().item() == pytest.approx(params["net.0.bias"].norm().item())
    assert not torch.equal(F.random_direction(params, seed=4)["net.0.weight"], d["net.0.weight"])


def test_landscapes_and_interpolation_evaluate_the_right_points():
    loss, params = small_mlp()
    d1, d2 = F.random_direction(params, seed=0), F.random_direction(params, seed=1)
    at = lambda a, b: float(loss({n: params[n] + a * d1[n] + b * d2[n] for n in params}))  # noqa: E731
    one = F.landscape_1d(loss, params, alphas=[-0.5, 0.0, 0.7], direction=d1)
    assert list(one.columns) == ["alpha", "loss"]
    np.testing.assert_allclose(one["loss"], [at(-0.5, 0), at(0, 0), at(0.7, 0)], rtol=1e-12)
    two = F.landscape_2d(loss, params, alphas=[-1.0, 0.0, 0.5], betas=[0.0, 0.25], chunk=4)
    assert len(two) == 6
    row = two[(two["alpha"] == 0.5) & (two["beta"] == 0.25)]["loss"].item()
    assert row == pytest.approx(at(0.5, 0.25), rel=1e-12)
    assert two.pivot(index="beta", columns="alpha", values="loss").shape == (2, 3)
    other = {n: p + 0.5 for n, p in params.items()}
    line = F.interpolate(loss, params, other, alphas=[0.0, 0.5, 1.0])
    expected = [float(loss(params)), float(loss({n: params[n] + 0.25 for n in params})), float(loss(other))]
    np.testing.assert_allclose(line["loss"], expected, rtol=1e-12)


# --- a run saved by the core runner ---------------------------------------------------------
def test_measure_run_writes_flatness_csv(tmp_path):
    cfg = grawa_sim.Config(algorithm="mgrawa", workers=3, steps=20, tau=4, dataset="digits", model="mlp",
                           batch_size=8)
    result = grawa_sim.run(cfg, progress=False)
    run_dir = save_result(result, tmp_path / "run")
    settings = F.Settings(power_iters=15, trace_samples=4, lanczos_steps=8, lanczos_starts=1, eps_steps=3)
    table = run_flatness.measure_run(run_dir, settings=settings)
    csv = pd.read_csv(run_dir / run_flatness.FLATNESS_CSV)
    assert sorted(p.name for p in run_dir.iterdir() if "flatness" in p.name) == ["flatness.csv"]  # no temp left
    assert list(csv["model"]) == ["average", "center", "worker", "worker", "worker"]
    assert csv["worker"].isna().tolist() == [True, True, False, False, False]
    assert csv["worker"].dropna().astype(int).tolist() == [0, 1, 2]
    assert csv["measured"].tolist()[:2] == ["uniform average of the workers", "x_C (GRAWA's weighted center)"]
    for col in ("loss", "lambda_max", "trace", "trace_se", "ritz_max", "ritz_sum", "eps_sharpness"):
        assert np.isfinite(csv[col]).all(), col
    assert (csv["lambda_max"] > 0).all() and (csv["mode"] == "train").all() and (csv["probe"] == 320).all()
    np.testing.assert_allclose(csv["lambda_max"], table["lambda_max"])
    # the average row measures the uniform average, the center row x_C, the worker rows the workers
    loss = F.model_loss(*grawa_sim.engine.problem.model_and_data(cfg))
    average = {n: p.mean(0) for n, p in result.workers.items()}
    assert csv.loc[0, "loss"] == pytest.approx(float(loss(average)), rel=1e-5)
    assert csv.loc[1, "loss"] == pytest.approx(float(loss(result.center)), rel=1e-5)
    assert csv.loc[3, "loss"] == pytest.approx(float(loss({n: p[1] for n, p in result.workers.items()})), rel=1e-5)
    same = run_flatness.measure_result(result, settings=settings)
    np.testing.assert_allclose(same["trace"], csv["trace"], rtol=1e-6)
    summary = F.summary_columns(table)
    assert summary["flat_lambda_max"] == pytest.approx(csv.loc[0, "lambda_max"])
    assert summary["flat_center_lambda_max"] == pytest.approx(csv.loc[1, "lambda_max"])
    assert summary["flat_worker_trace"] == pytest.approx(csv["trace"][2:].mean())


def test_the_half_row_measures_the_first_half_of_the_workers_as_the_reference_script_does():
    cfg = grawa_sim.Config(algorithm="localsgd", workers=4, steps=6, tau=4, dataset="digits", model="mlp",
                           batch_size=8)
    result = grawa_sim.run(cfg, progress=False)
    settings = F.Settings(power_iters=5, trace_samples=2, lanczos_steps=4, lanczos_starts=1, eps_steps=2)
    table = run_flatness.measure_result(result, settings=settings, workers=False, half=True)
    assert list(table["model"]) == ["average", "half"]
    loss = F.model_loss(*grawa_sim.engine.problem.model_and_data(cfg))
    first_two = {n: p[:2].mean(0) for n, p in result.workers.items()}
    assert table.loc[1, "loss"] == pytest.approx(float(loss(first_two)), rel=1e-5)
    dp = grawa_sim.Config(algorithm="dp", workers=4, steps=3, dataset="digits", model="mlp", batch_size=8)
    assert "half" not in set(run_flatness.measure_result(grawa_sim.run(dp, progress=False), settings=settings,
                                                         workers=False, half=True)["model"])  # DP: one model


def test_bad_arguments_raise_one_line_errors(tmp_path):
    loss, params = small_mlp()
    with pytest.raises(ValueError, match="run: not a finished run"):
        run_flatness.measure_run(tmp_path)
    with pytest.raises(ValueError, match="method"):
        F.hvp(loss, params, params, method="sideways")
    with pytest.raises(ValueError, match="iters"):
        F.top_eigenvalue(loss, params, iters=0)
    with pytest.raises(ValueError, match="metrics"):
        F.measure(loss, params, metrics=("loss", "curvature"))
    with pytest.raises(ValueError, match="execution"):
        F.Batched(loss, {n: p[None] for n, p in params.items()}, execution="threads")


def test_run_with_flatness_true_adds_the_table_and_summary(tmp_path):
    from grawa_sim import Config, run
    from grawa_sim.cli.main import main
    from grawa_sim.results.storage import save_result

    cfg = Config(algorithm="lgrawa", workers=2, steps=8, tau=4, dataset="digits", model="logistic", batch_size=8,
                 flatness=True)
    result = run(cfg, progress=False)
    assert list(result.flatness["model"]) == ["average", "center", "worker", "worker"]
    last = result.history.iloc[-1]
    assert last["flat_lambda_max"] == pytest.approx(float(result.flatness["lambda_max"].iloc[0]))
    assert last["flat_lambda_max"] > 0 and result.history["flat_lambda_max"].iloc[:-1].isna().all()
    save_result(result, tmp_path / "run")
    assert (tmp_path / "run" / "flatness.csv").is_file()
    assert main(["flatness", "--run", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("algorithm", ["easgd", "lsgd", "dp", "localsgd"])
def test_flatness_is_measured_on_the_uniform_average_for_every_method(algorithm):
    """The reference measures the workers' uniform average (EASGD included, not its x~); the
    algorithm's own center is a separate row."""
    cfg = grawa_sim.Config(algorithm=algorithm, workers=3, steps=12, tau=4, dataset="digits", model="logistic",
                           batch_size=8, dtype="float64")
    result = grawa_sim.run(cfg, progress=False)
    table = run_flatness.measure_result(result, metrics=("loss",))
    loss = F.model_loss(*grawa_sim.engine.problem.model_and_data(cfg))
    average = {n: p.mean(0) for n, p in result.workers.items()}
    assert table.loc[table["model"] == "average", "loss"].item() == pytest.approx(float(loss(average)), rel=1e-10)
    has_center = algorithm in ("easgd", "lsgd")
    assert ("center" in set(table["model"])) == has_center
    if has_center:
        center = result.center
        assert table.loc[table["model"] == "center", "loss"].item() == pytest.approx(float(loss(center)), rel=1e-10)
    if algorithm == "easgd":  # x~ is not the average after training: the rows differ
        assert abs(float(loss(average)) - float(loss(result.center))) > 1e-6


def test_reference_batching_averages_per_batch_losses_and_hvps_with_batch_statistics():
    """10 batches of 32, batch norm in train mode per batch: the loss is the mean of the batches' losses
    (each from an nn.Module in train mode fed that batch alone) and the HVP the mean of their HVPs."""
    torch.manual_seed(0)
    data = grawa_sim.data.datasets.load("digits", torch.float64)
    model = models.build("cnn_bn", data.input_shape, data.outputs, 4).double()
    params = {n: p.detach() for n, p in model.named_parameters()}
    batched = F.model_loss(model, data, probe=320, batch=32)
    whole = F.model_loss(model, data, probe=320, batch=None)
    idx = F.probe_indices(len(data.y_train), 320, 0)
    x, y = data.x_train[idx], data.y_train[idx]
    ref = copy.deepcopy(model).train()
    with torch.no_grad():
        per_batch = [torch.nn.functional.cross_entropy(ref(x[i:i + 32]), y[i:i + 32]) for i in range(0, 320, 32)]
    assert float(batched(params)) == pytest.approx(float(torch.stack(per_batch).mean()), rel=1e-12)
    assert abs(float(batched(params)) - float(whole(params))) > 1e-6  # batch statistics matter here
    v = {n: torch.randn_like(p) for n, p in params.items()}
    hv = F.hvp(batched, params, v)
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, 320, 32):
        sub = F.ModelLoss(model, x[i:i + 32], y[i:i + 32], per_sample_loss(data.classes), batch=None)
        for n, h in F.hvp(sub, params, v).items():
            expected[n] += h / 10
    for n in params:
        torch.testing.assert_close(hv[n], expected[n], rtol=1e-9, atol=1e-11)


def test_batching_does_not_change_a_model_without_batch_norm():
    data = grawa_sim.data.datasets.load("digits", torch.float64)
    torch.manual_seed(0)
    model = models.build("mlp", data.input_shape, data.outputs, 16).double()
    params = {n: p.detach() for n, p in model.named_parameters()}
    a = F.model_loss(model, data, batch=32)(params)
    b = F.model_loss(model, data, batch=None)(params)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
