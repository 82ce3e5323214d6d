"""Loss closures over M stacked models, seen as functions of one flat vector per model.

Every flatness metric is written once, over a *batch* of M models: vectors are flat
tensors [M, n] (n = number of parameters of one model). `Batched` evaluates the
loss, its gradient and Hessian-vector products of all M models either in one
``torch.vmap`` call (``execution="vmap"``) or one model at a time (``"unrolled"``, the
reference the vmapped results are tested against; with M = 1 it is the plain
single-model call). ``"auto"`` (the default) picks for the loss's model
(`grawa_sim.models.execution.choose_execution` with ``second_order``: unrolled for any
convolution on the CPU, where vmapped double backward through convolutions is slow, else
vmap); the same three values as ``Config.execution``.

Hessian-vector products, H v = d/dt grad L(x + t v) at t = 0:

- ``"forward"``: forward-over-reverse, ``torch.func.jvp(torch.func.grad(L), (x,), (v,))``;
  recomputes the forward and backward pass with dual numbers on every product.
- ``"reverse"``: double backward. The gradient g(x) is built once with
  ``create_graph=True`` and every product is one backward through it,
  ``autograd.grad(g, x, grad_outputs=v, retain_graph=True)`` (the graph is reused).
  With M models the losses are summed: model i's loss depends only on row i, so the
  Hessian of the sum is block diagonal and one backward gives every H_i v_i.
- ``"auto"``: ``"forward"``, falling back to ``"reverse"`` when an operation has no
  forward-mode (or no vmap) support. The default of the standalone `hvp`.

The iterative metrics (power iteration, Hutchinson, Lanczos) default to ``"reverse"``:
they take many products at the same point, and reusing the gradient graph made a
product about 2x cheaper than ``"forward"`` on this project's models on CPU
(`python -m grawa_sim.bench.flatness`); both give the same numbers to rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad, grad_and_value, jvp

from grawa_sim.core.collectives import Params
from grawa_sim.models.execution import EXECUTIONS, choose_execution

LossClosure = Callable[..., torch.Tensor]  # loss_fn(params) -> scalar, or loss_fn(params, aux) -> scalar
HVP_METHODS = ("auto", "forward", "reverse")
_FALLBACK_ERRORS = (RuntimeError, NotImplementedError)


class Layout:
    """Names and shapes of one model's parameters; dict <-> flat vector (any leading dims)."""

    def __init__(self, params: Params, lead: int = 0):
        self.names = list(params)
        self.shapes = [tuple(p.shape[lead:]) for p in params.values()]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.size = sum(self.sizes)

    def flat(self, params: Params, lead: int = 0) -> torch.Tensor:
        """[*lead_dims, n]: the parameters of each model concatenated in name order."""
        tensors = [params[n] for n in self.names]
        if not tensors:
            raise ValueError("params: empty parameter dict (got {})")
        head = tensors[0].shape[:lead]
        return torch.cat([t.reshape(*head, -1) for t in tensors], dim=-1)

    def unflat(self, vec: torch.Tensor) -> Params:
        """Views of ``vec`` [..., n] as a parameter dict with shapes [..., *shape]."""
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = vec[..., start : start + size].reshape(*vec.shape[:-1], *shape)
            start += size
        return out


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: must be one of {', '.join(allowed)} (got {value!r})")


class Batched:
    """M models sharing one loss closure: loss, gradient and H v on flat vectors [M, n].

    ``stacked`` holds the M parameter sets (leading dim M); ``aux`` (optional, leading
    dim M, e.g. batch-norm buffers) is passed per model as ``loss_fn(params, aux_i)``.
    ``execution``: ``"vmap"``, ``"unrolled"`` or ``"auto"``, which picks for the loss's model
    (``loss_fn.model``, as a `ModelLoss` has; vmap for a closure without one) on the
    parameters' device; ``self.execution`` is the one picked.
    """

    def __init__(self, loss_fn: LossClosure, stacked: Params, aux: Params | None = None,
                 execution: str = "auto", method: str = "reverse"):
        _check("execution", execution, EXECUTIONS)
        _check("method", method, HVP_METHODS)
        self.layout = Layout(stacked, lead=1)
        self.x0 = self.layout.flat({n: p.detach() for n, p in stacked.items()}, lead=1)
        self.models, self.size = self.x0.shape
        self.dtype, self.device = self.x0.dtype, self.x0.device
        model = getattr(loss_fn, "model", None)
        execution = choose_execution(model if isinstance(model, torch.nn.Module) else None, execution, self.device,
                                     second_order=True)
        self.loss_fn, self.aux, self.execution, self.method = loss_fn, aux, execution, method
        self._reverse_graph: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- one model, flat -------------------------------------------------------------------
    def _f(self, x: torch.Tensor, aux: Params | None) -> torch.Tensor:
        params = self.layout.unflat(x)
        return self.loss_fn(params) if aux is None else self.loss_fn(params, aux)

    def _hvp_forward_one(self, x: torch.Tensor, v: torch.Tensor, aux: Params | None) -> torch.Tensor:
        return jvp(lambda y: grad(self._f)(y, aux), (x,), (v,))[1]

    def _map(self, fn: Callable, *batched: torch.Tensor):
        """fn(*row_i, aux_i) for every model i: one vmapped call, or one call per model (results stacked)."""
        if self.execution == "vmap":
            in_dims = (*([0] * len(batched)), None if self.aux is None else 0)
            return torch.vmap(fn, in_dims=in_dims)(*batched, self.aux)
        outs = []
        for i in range(self.models):
            aux = None if self.aux is None else {k: b[i] for k, b in self.aux.items()}
            outs.append(fn(*(t[i] for t in batched), aux))
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*outs))
        return torch.stack(outs)

    # --- public batched primitives ---------------------------------------------------------
    @torch.no_grad()
    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Losses [M] at x [M, n] (default: the models' own parameters)."""
        return self._map(self._f, self.x0 if x is None else x)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses [M], gradients [M, n]) at x [M, n]."""
        g, v = self._map(lambda y, a: grad_and_value(self._f)(y, a), x)
        return v.detach(), g.detach()

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H_i v_i for every model i at its own parameters; v [M, n] -> [M, n]."""
        v = v.to(self.dtype)
        if self.method in ("auto", "forward"):
            try:
                return self._map(self._hvp_forward_one, self.x0, v).detach()
            except _FALLBACK_ERRORS:
                if self.method == "forward":
                    raise
                self.method = "reverse"  # no forward-mode (or vmap) rule for some operation
        return self._hvp_reverse(v)

    def _hvp_reverse(self, v: torch.Tensor) -> torch.Tensor:
        if self._reverse_graph is None:
            leaves = self.x0.clone().requires_grad_()
            with torch.enable_grad():
                losses = self._map(self._f, leaves)
                (g,) = torch.autograd.grad(losses.sum(), leaves, create_graph=True)
            self._reverse_graph = (leaves, g)
        leaves, g = self._reverse_graph
        if not g.requires_grad:  # the loss is linear in x: H = 0
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(g, leaves, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()


def single(loss_fn: LossClosure, params: Params, method: str = "reverse") -> Batched:
    """One model as a batch of one, evaluated without vmap (the plain, one-by-one path)."""
    return Batched(loss_fn, {n: p.detach().unsqueeze(0) for n, p in params.items()}, None, "unrolled", method)


def hvp(loss_fn: LossClosure, params: Params, v: Params, method: str = "auto") -> Params:
    """Hessian-vector product H v of ``loss_fn`` at ``params``; H = d^2 L / d params^2.

    ``method="auto"`` uses forward-over-reverse ``jvp(grad(loss_fn))`` and falls back to
    double backward (``torch.autograd.grad`` with ``create_graph=True``) where an
    operation lacks forward-mode support; ``"forward"`` / ``"reverse"`` force one.
    """
    _check("method", method, HVP_METHODS)
    if method in ("auto", "forward"):
        try:
            return dict(zip(params, jvp(grad(loss_fn), (params,), (v,))[1].values()))
        except _FALLBACK_ERRORS:
            if method == "forward":
                raise
    leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), create_graph=True)
    pairs = [(g, v[n]) for g, n in zip(grads, leaves) if g.requires_grad]
    if not pairs:
        return {n: torch.zeros_like(p) for n, p in params.items()}
    hv = torch.autograd.grad([g for g, _ in pairs], list(leaves.values()),
                             grad_outputs=[u for _, u in pairs], allow_unused=True, materialize_grads=True)
    return {n: h.detach() for n, h in zip(leaves, hv)}


def hessian_matrix(loss_fn: LossClosure, params: Params) -> torch.Tensor:
    """The dense Hessian [n, n] over all parameters flattened in name order (small models only)."""
    layout = Layout(params)
    x = layout.flat({n: p.detach() for n, p in params.items()})
    return torch.func.hessian(lambda y: loss_fn(layout.unflat(y)))(x)
