"""Hessian spectrum from Hessian-vector products: power iteration, Hutchinson's trace, Lanczos.

Each algorithm runs on a `Batched` operator (M models, vectors [M, n]), so the same
code measures one model (the public single-model functions) or every worker of a
stacked run in one vmapped Hessian-vector product per iteration (the ``stacked_*``
functions). Random vectors are drawn from ``torch.Generator().manual_seed(seed)`` in
float64 and are the same for every model, so model i of a stacked call gets the numbers
a single-model call with the same seed gives (up to vmap's floating-point rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from grawa_sim.flatness.core import Batched, LossClosure, Params, single


def _gaussian(seed: int, n: int, count: int | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Seeded float64 normal draws [n] or [count, n] (drawn on the CPU, then moved: same numbers everywhere)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n if count is None else (count, n), generator=g, dtype=torch.float64).to(device)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise inner products [M] of [M, n] tensors, accumulated in float64."""
    return (a.double() * b.double()).sum(-1)


# --- power iteration ----------------------------------------------------------------------
def stacked_power_iteration(op: Batched, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                            init: torch.Tensor | None = None, shift: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Power iteration on A_i = H_i - s_i I for every model at once: (values [M], converged [M], iterations [M]).

    v <- A v / ||A v||;  mu_k = v_k^T A v_k (the Rayleigh quotient, signed); the returned value is
    mu + s, an eigenvalue of H. It converges to the eigenvalue of A of largest *magnitude* (the
    dominant one), which can be the most negative eigenvalue of H. Model i stops (its value and
    vector frozen) at the first k >= 2 with |mu_k - mu_{k-1}| < tol * |mu_k| (``tol=0``: never),
    or when A v = 0; the others go on until all stop or ``iters`` products were taken.
    ``init`` ([n] or [M, n]) replaces the seeded Gaussian start; ``shift`` is s ([M], default 0).
    """
    values, converged, done_at, _ = _power(op, iters, tol, seed, init, shift)
    return values, converged, done_at


def _power(op: Batched, iters: int, tol: float, seed: int, init: torch.Tensor | None,
           shift: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`stacked_power_iteration` plus the relative residual ||A v - mu v|| / |mu| of each final vector."""
    if iters < 1:
        raise ValueError(f"iters: must be >= 1 (got {iters})")
    m, n = op.models, op.size
    s = torch.zeros(m, dtype=torch.float64, device=op.device) if shift is None else shift.double().to(op.device)
    v = (_gaussian(seed, n) if init is None else init.double()).to(op.device).expand(m, n)
    v = (v / v.norm(dim=-1, keepdim=True)).to(op.dtype)
    values = torch.full((m,), float("nan"), dtype=torch.float64, device=op.device)
    active = torch.ones(m, dtype=torch.bool, device=op.device)
    done_at = torch.full((m,), iters, dtype=torch.long, device=op.device)
    converged = torch.zeros(m, dtype=torch.bool, device=op.device)
    residual = torch.full((m,), float("inf"), dtype=torch.float64, device=op.device)
    for k in range(1, iters + 1):
        av = op.hvp(v).double() - s[:, None] * v.double()
        mu = _dot(v, av)
        res = (av - mu[:, None] * v.double()).norm(dim=-1) / mu.abs().clamp_min(1e-300)
        residual = torch.where(active, res, residual)
        stop = active & (mu - values).abs().lt(tol * mu.abs())  # NaN at k = 1, tol = 0: never
        norm = av.norm(dim=-1)
        null = active & (norm == 0)  # A v = 0: v is an eigenvector of eigenvalue s
        stop |= null
        values = torch.where(active, mu, values)
        update = active & ~null
        v = torch.where(update[:, None], (av / norm.clamp_min(1e-300)[:, None]).to(op.dtype), v)
        converged |= stop
        done_at = torch.where(stop, k, done_at)
        active &= ~stop
        if not active.any():
            break
    return values + s, converged, done_at, residual


RESIDUAL = 0.1  # an end found by power iteration must satisfy ||H v - d v|| <= RESIDUAL |d|


@dataclass(frozen=True)
class Extremes:
    """The largest and smallest (algebraic) Hessian eigenvalues of M models, with convergence flags."""

    lambda_max: torch.Tensor
    lambda_min: torch.Tensor
    max_converged: torch.Tensor
    min_converged: torch.Tensor
    hvps: torch.Tensor  # Hessian-vector products taken per model


def stacked_extreme_eigenvalues(op: Batched, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                                init: torch.Tensor | None = None) -> Extremes:
    """lambda_max and lambda_min of every model by power iteration on shifted operators.

    1. Power iteration on H finds the dominant eigenvalue d (largest |lambda|), an end of the
       spectrum: lambda_max when d > 0, lambda_min when d < 0.
    2. On H - d I every eigenvalue lambda - d has the sign opposite to d's end, and the dominant
       one is the other end e (e - d = the largest |lambda - d|).
    3. Where step 1 did not end at an eigenvector (relative residual ||H v - d v|| / |d| above
       ``RESIDUAL``, as when lambda_max = -lambda_min and v keeps both eigenvectors; d is then only
       a Rayleigh quotient inside the spectrum), step 2 still ends at the end e farther from d;
       iterating on H - e I gives the other end.
    lambda_max = max of the two ends, lambda_min = min; each pass takes at most ``iters`` products.
    """
    d, conv_d, it_d, res_d = _power(op, iters, tol, seed, init, None)
    e, conv_e, it_e = stacked_power_iteration(op, iters, tol, seed, init, shift=d)
    first, conv_first, hvps = d, conv_d, it_d + it_e
    redo = ~(conv_d & (res_d <= RESIDUAL))
    if bool(redo.any()):
        f, conv_f, it_f = stacked_power_iteration(op, iters, tol, seed, init, shift=e)
        first = torch.where(redo, f, d)
        conv_first = torch.where(redo, conv_f, conv_d)
        hvps = hvps + torch.where(redo, it_f, 0)
    top = first >= e
    return Extremes(lambda_max=torch.where(top, first, e), lambda_min=torch.where(top, e, first),
                    max_converged=torch.where(top, conv_first, conv_e),
                    min_converged=torch.where(top, conv_e, conv_first), hvps=hvps)


def stacked_top_eigenvalue(op: Batched, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                           init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """lambda_max, the largest algebraic Hessian eigenvalue, of every model: (values [M], converged [M],
    Hessian-vector products [M]). See `stacked_extreme_eigenvalues`; `stacked_power_iteration` gives
    the dominant (largest-magnitude) eigenvalue instead, as PyHessian does."""
    ext = stacked_extreme_eigenvalues(op, iters, tol, seed, init)
    return ext.lambda_max, ext.max_converged, ext.hvps


def top_eigenvalue(loss_fn: LossClosure, params: Params, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                   method: str = "reverse") -> tuple[float, bool]:
    """(lambda_max, converged): the largest algebraic Hessian eigenvalue of ``loss_fn`` at ``params``.

    Power iteration from a seeded Gaussian start, stopped when the relative change of the
    Rayleigh quotient falls to ``tol`` or after ``iters`` products per pass; a second pass on the
    shifted Hessian H - d I turns a dominant negative eigenvalue d into the largest one (see
    `stacked_extreme_eigenvalues`). `extreme_eigenvalues` also gives lambda_min.
    """
    values, converged, _ = stacked_top_eigenvalue(single(loss_fn, params, method), iters, tol, seed)
    return float(values[0]), bool(converged[0])


def extreme_eigenvalues(loss_fn: LossClosure, params: Params, iters: int = 100, tol: float = 1e-4, seed: int = 0,
                        method: str = "reverse") -> tuple[float, float]:
    """(lambda_max, lambda_min) of the Hessian of ``loss_fn`` at ``params`` (see `stacked_extreme_eigenvalues`)."""
    ext = stacked_extreme_eigenvalues(single(loss_fn, params, method), iters, tol, seed)
    return float(ext.lambda_max[0]), float(ext.lambda_min[0])


# --- Hutchinson ---------------------------------------------------------------------------
def rademacher(seed: int, samples: int, n: int) -> torch.Tensor:
    """[samples, n] independent +-1 entries (float64) from ``Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (samples, n), generator=g, dtype=torch.float64) * 2 - 1


def stacked_hessian_trace(op: Batched, samples: int = 100, seed: int = 0,
                          probes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson's estimate of tr(H) for every model: (estimates [M], standard errors [M]).

    tr(H) = E[z^T H z] for z with independent Rademacher (+-1) entries; with S probes
    estimate = (1/S) sum_s z_s^T H z_s and standard error = std_s(z_s^T H z_s) / sqrt(S)
    (sample std, ddof 1; NaN for S = 1). ``probes`` [S, n] replaces the seeded draw.
    """
    z = (rademacher(seed, samples, op.size) if probes is None else probes.double()).to(op.device)
    if z.shape[0] < 1:
        raise ValueError(f"samples: must be >= 1 (got {z.shape[0]})")
    quad = torch.stack([_dot(zs.expand(op.models, -1), op.hvp(zs.expand(op.models, -1))) for zs in z])
    se = quad.std(0) / math.sqrt(z.shape[0]) if z.shape[0] > 1 else torch.full_like(quad[0], float("nan"))
    return quad.mean(0), se


def hessian_trace(loss_fn: LossClosure, params: Params, samples: int = 100, seed: int = 0,
                  method: str = "reverse") -> tuple[float, float]:
    """(estimate, standard_error) of the Hessian trace by Hutchinson with Rademacher probes.

    tr(H) ~ (1/S) sum_s z_s^T H z_s, z_s in {-1, +1}^n; standard error std/sqrt(S).
    Not the same quantity as `Spectrum.ritz_sum` (the sum of Lanczos Ritz values).
    """
    est, se = stacked_hessian_trace(single(loss_fn, params, method), samples, seed)
    return float(est[0]), float(se[0])


# --- Lanczos ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spectrum:
    """Lanczos Ritz values (descending), averaged over random starts as the reference code does.

    - ``ritz``: all Ritz values, [steps] (or [M, steps] for a stacked call);
    - ``top``: the top-k of them (largest algebraic first);
    - ``ritz_sum``: the sum of all Ritz values = mean over starts of trace(T) = sum_j alpha_j.
      The GRAWA authors call this sum "trace"; it is *not* the Hessian trace (see
      `hessian_trace`): it is the trace of H restricted to the Krylov subspace.
    """

    ritz: torch.Tensor
    top: torch.Tensor
    ritz_sum: torch.Tensor

    @property
    def ritz_max(self) -> torch.Tensor:
        return self.ritz[..., 0]


def _project_out(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w - Q Q^T w per model, twice ("twice is enough"); basis [j, M, n], w [M, n]."""
    for _ in range(2):
        w = w - torch.einsum("jm,jmn->mn", torch.einsum("jmn,mn->jm", basis, w), basis)
    return w


def _lanczos_once(op: Batched, steps: int, start: torch.Tensor, seed: int) -> torch.Tensor:
    """Ritz values [M, steps] (descending) of one Lanczos run with full reorthogonalisation.

    q_1 = start/||start||;  w = H q_j - sum_{i<=j} (q_i^T H q_j) q_i (all basis vectors,
    twice);  alpha_j = q_j^T H q_j, beta_j = ||w||, q_{j+1} = w / beta_j.
    When beta_j ~ 0 (an invariant subspace is exhausted) the run continues from a fresh
    seeded random vector orthogonal to the basis with beta_j = 0: T stays the projection
    of H onto an orthonormal basis, so its eigenvalues remain Ritz values of H.
    """
    m, n = op.models, op.size
    kw = {"dtype": torch.float64, "device": op.device}
    basis = torch.zeros(steps, m, n, **kw)
    alpha = torch.zeros(m, steps, **kw)
    beta = torch.zeros(m, max(steps - 1, 0), **kw)
    q = start.expand(m, n) / start.norm()
    scale = torch.zeros(m, **kw)
    for j in range(steps):
        basis[j] = q
        w = op.hvp(q.to(op.dtype)).double()
        alpha[:, j] = _dot(q, w)
        scale = torch.maximum(scale, w.norm(dim=-1))
        if j == steps - 1:
            break
        w = _project_out(w, basis[: j + 1])
        b = w.norm(dim=-1)
        broken = b <= 1e-10 * scale.clamp_min(1e-300)
        if broken.any():
            fresh = _project_out(_gaussian(seed * 1_000_003 + j + 1, n, device=op.device).expand(m, n),
                                 basis[: j + 1])
            fresh = fresh / fresh.norm(dim=-1, keepdim=True)
            q = torch.where(broken[:, None], fresh, w / b.clamp_min(1e-300)[:, None])
            beta[:, j] = torch.where(broken, 0.0, b)
        else:
            q, beta[:, j] = w / b[:, None], b
    tri = torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    return torch.linalg.eigvalsh(tri).flip(-1)


def stacked_lanczos_spectrum(op: Batched, k: int = 10, seed: int = 0, steps: int = 100,
                             starts: int = 1) -> Spectrum:
    """Lanczos on every model at once; `Spectrum` fields with a leading model dim M.

    ``steps`` (capped at n) Hessian-vector products per start; ``starts`` seeded random
    starts (the reference code: 100 steps, 3 starts) whose sorted Ritz values are averaged.
    """
    if k < 1 or steps < 1 or starts < 1:
        raise ValueError(f"lanczos: k, steps and starts must be >= 1 (got {k}, {steps}, {starts})")
    steps = min(steps, op.size)
    inits = _gaussian(seed, op.size, starts, op.device)
    ritz = torch.stack([_lanczos_once(op, steps, inits[s], seed + 7919 * s) for s in range(starts)]).mean(0)
    return Spectrum(ritz=ritz, top=ritz[:, : min(k, steps)], ritz_sum=ritz.sum(-1))


def lanczos_spectrum(loss_fn: LossClosure, params: Params, k: int = 10, seed: int = 0, steps: int = 100,
                     starts: int = 1, method: str = "reverse") -> Spectrum:
    """Top-k Hessian eigenvalues (Ritz values) of ``loss_fn`` at ``params`` by Lanczos.

    Lanczos with full reorthogonalisation (float64 basis) builds the tridiagonal
    T = Q^T H Q over ``steps`` Krylov vectors; its eigenvalues, the Ritz values, converge
    to the extreme eigenvalues of H first (largest algebraic here, unlike power iteration).
    Returns `Spectrum` (``top``: top-k, ``ritz``: all, ``ritz_sum``: their sum, which the
    GRAWA authors call "trace" and which is not `hessian_trace`).
    """
    spec = stacked_lanczos_spectrum(single(loss_fn, params, method), k, seed, steps, starts)
    return Spectrum(ritz=spec.ritz[0], top=spec.top[0], ritz_sum=spec.ritz_sum[0])
