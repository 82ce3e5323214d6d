"""`models.stateless`: the engine's cheap stand-in for ``torch.func.functional_call`` computes the same numbers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call

from grawa_sim.models.registry import build
from grawa_sim.models.stateless import stateless


def _stacked(model: torch.nn.Module, m: int, seed: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    params = {n: p.detach() + 0.1 * torch.randn(m, *p.shape, generator=g) for n, p in model.named_parameters()}
    buffers = {n: b.detach().unsqueeze(0).repeat(m, *[1] * b.ndim) for n, b in model.named_buffers()}
    return params, buffers


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn", "resnet1d"])
def test_vmapped_outputs_gradients_and_running_statistics_equal_functional_call_bitwise(name):
    torch.manual_seed(0)
    model = build(name, (40,), 10)
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, 3, seed=1)
    x = torch.randn(3, 8, 40, generator=torch.Generator().manual_seed(2))
    results = []
    for forward in (lambda p, b, xs: functional_call(meta, (p, b), (xs,)), stateless(meta)):
        leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
        running = {n: b.clone() for n, b in buffers.items()}
        out = torch.vmap(forward, randomness="different")(leaves, running, x)
        grads = torch.autograd.grad(out.square().sum(), list(leaves.values()))
        results.append((out.detach(), grads, running))
    (out_a, grads_a, run_a), (out_b, grads_b, run_b) = results
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert all(torch.equal(run_a[n], run_b[n]) for n in run_a)  # batch norm's in-place updates land the same
    if name == "cnn_bn":
        assert not torch.equal(run_b["features.1.running_mean"], buffers["features.1.running_mean"])


def test_the_modules_own_tensors_are_back_after_a_call_and_after_an_error():
    model = build("mlp", (40,), 10)
    own = {n: p for n, p in model.named_parameters()}
    forward = stateless(model)
    zeros = {n: torch.zeros_like(p) for n, p in own.items()}
    assert torch.equal(forward(zeros, {}, torch.ones(2, 40)), torch.zeros(2, 10))
    assert all(p is own[n] for n, p in model.named_parameters())
    with pytest.raises(RuntimeError):
        forward(zeros, {}, torch.ones(2, 41))  # a shape error inside the forward pass
    assert all(p is own[n] for n, p in model.named_parameters())
    with pytest.raises(KeyError):
        forward({"net.9.weight": torch.zeros(1)}, {}, torch.ones(2, 40))
