"""`models.batched`: the stacked forward written out by hand computes torch.vmap's numbers, bit for bit."""

from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

import grawa_sim.engine.ensemble as ensemble
from grawa_sim import Config, run
from grawa_sim.models.batched import batched
from grawa_sim.models.registry import build
from grawa_sim.models.stateless import stateless

KNOWN = ["logistic", "mlp", "cnn", "cnn_bn", "resnet1d"]


def _stacked(model: nn.Module, m: int, dtype: torch.dtype, transposed: bool) -> tuple[dict, dict]:
    """Workers that differ (the model's tensors plus noise); ``transposed``: 2-D weights kept in their
    gradient's layout, as the training engine keeps them."""
    g = torch.Generator().manual_seed(1)
    params = {}
    for n, p in model.named_parameters():
        t = p.detach().to(dtype) + 0.1 * torch.randn(m, *p.shape, generator=g, dtype=dtype)
        if transposed and t.ndim == 3:
            t = t.transpose(1, 2).contiguous().transpose(1, 2)
        params[n] = t
    buffers = {n: b.detach().unsqueeze(0).repeat(m, *[1] * b.ndim).to(b.dtype if b.dtype == torch.long else dtype)
               for n, b in model.named_buffers()}
    return params, buffers


def _pass(forward, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
    leaves = {n: p.clone().requires_grad_() for n, p in params.items()}
    running = {n: b.clone() for n, b in buffers.items()}
    out = forward(leaves, running, x)
    m, b = y.shape
    loss = torch.nn.functional.cross_entropy(out.reshape(m * b, -1), y.reshape(-1), reduction="none")
    grads = torch.autograd.grad(loss.view(m, b).mean(1).sum(), list(leaves.values()))
    return out.detach(), grads, running


@pytest.mark.parametrize("name", KNOWN)
@pytest.mark.parametrize("workers,batch,dtype,transposed", [(1, 5, torch.float32, False),
                                                             (3, 7, torch.float32, True),
                                                             (4, 16, torch.float64, False)])
def test_outputs_gradients_running_statistics_and_layouts_equal_vmap_bitwise(name, workers, batch, dtype,
                                                                              transposed):
    torch.manual_seed(0)
    model = build(name, (40,), 10)
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, workers, dtype, transposed)
    x = torch.randn(workers, batch, 40, generator=torch.Generator().manual_seed(2), dtype=dtype)
    y = torch.randint(0, 10, (workers, batch), generator=torch.Generator().manual_seed(3))
    by_hand = batched(meta)
    assert by_hand is not None
    (out_a, grads_a, run_a), (out_b, grads_b, run_b) = (
        _pass(f, params, buffers, x, y) for f in (torch.vmap(stateless(meta), randomness="different"), by_hand))
    assert torch.equal(out_a, out_b) and out_a.stride() == out_b.stride()
    for a, b in zip(grads_a, grads_b):
        assert torch.equal(a, b) and a.stride() == b.stride()
    assert all(torch.equal(run_a[n], run_b[n]) for n in run_a)
    if name == "cnn_bn":  # the running statistics did move, in place in the stacked buffers
        assert not torch.equal(run_b["features.1.running_mean"], buffers["features.1.running_mean"])
        assert run_b["features.1.num_batches_tracked"].tolist() == [1] * workers
    if name == "resnet1d":
        assert not torch.equal(run_b["blocks.2.bn2.running_var"], buffers["blocks.2.bn2.running_var"])


def test_residual_blocks_with_identity_and_projected_shortcuts_equal_vmap_bitwise():
    from grawa_sim.models.deep import BasicBlock

    torch.manual_seed(0)
    model = build("resnet1d", (40,), 10, width=8)
    model.blocks[1] = BasicBlock(4, 8, 2, shortcut="B", dims=1)  # a 1x1 convolution and batch norm
    model.blocks[2] = BasicBlock(8, 8, 1, dims=1)  # the identity
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, 3, torch.float64, True)
    x = torch.randn(3, 5, 40, dtype=torch.float64)
    y = torch.randint(0, 10, (3, 5))
    (out_a, grads_a, run_a), (out_b, grads_b, run_b) = (
        _pass(f, params, buffers, x, y) for f in (torch.vmap(stateless(meta)), batched(meta)))
    assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert all(torch.equal(run_a[n], run_b[n]) for n in run_a)
    assert "blocks.1.project.1.running_mean" in run_b


def test_strided_running_statistics_take_the_update_contiguous_ones_take():
    """Buffers that are views with gaps (every other row of a larger tensor) get the running statistics
    that contiguous buffers get under vmap. (torch.vmap itself leaves such strided buffers unchanged, on
    torch 2.13; the engine's buffers are always contiguous, so the two never meet there.)"""
    torch.manual_seed(0)
    model = build("cnn_bn", (40,), 10)
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, 3, torch.float32, False)
    x = torch.randn(3, 6, 40)
    y = torch.randint(0, 10, (3, 6))
    _, _, reference = _pass(torch.vmap(stateless(meta)), params, buffers, x, y)
    wide = {n: b.repeat_interleave(2, dim=0) for n, b in buffers.items()}
    strided = {n: w[::2] for n, w in wide.items()}
    assert not strided["features.1.running_mean"].is_contiguous()
    by_hand = batched(meta)
    _pass(lambda p, b, xs: by_hand(p, strided, xs), params, buffers, x, y)
    assert all(torch.equal(wide[n][::2], reference[n]) for n in reference)
    assert all(torch.equal(wide[n][1::2], buffers[n]) for n in buffers)  # the rows in the gaps untouched
    assert not torch.equal(reference["features.1.running_var"], buffers["features.1.running_var"])


def test_images_through_the_mlp_equal_vmap_bitwise():
    torch.manual_seed(0)
    model = build("mlp", (3, 4, 4), 10)
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, 2, torch.float32, False)
    x = torch.randn(2, 6, 3, 4, 4)
    y = torch.randint(0, 10, (2, 6))
    (out_a, grads_a, _), (out_b, grads_b, _) = (
        _pass(f, params, buffers, x, y) for f in (torch.vmap(stateless(meta)), batched(meta)))
    assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_models_it_does_not_know_are_left_to_vmap():
    assert batched(build("resnet20", (3, 8, 8), 10)) is None  # 2-D convolutions
    assert batched(nn.Sequential(nn.Linear(4, 4), nn.Tanh())) is None  # not one of the registry's models
    mlp = build("mlp", (40,), 10)
    mlp.net[1] = nn.Tanh()
    assert batched(mlp) is None
    cnn = build("cnn", (40,), 10)
    cnn.head = nn.Sequential(nn.Linear(125, 10), nn.Tanh())  # an unknown head, not only unknown features
    assert batched(cnn) is None
    logistic = build("logistic", (40,), 10)
    logistic.linear = nn.Identity()
    assert batched(logistic) is None
    frozen = build("cnn_bn", (40,), 10).eval()  # eval-mode batch norm: not written out
    assert batched(frozen) is None
    for change in ({"momentum": None}, {"track_running_stats": False}):
        bn = build("cnn_bn", (40,), 10)
        for key, value in change.items():
            setattr(bn.features[1], key, value)
        assert batched(bn) is None, change
    assert batched(build("cnn_bn", (40,), 10)) is not None


def test_subclasses_parametrizations_and_hooks_are_left_to_vmap():
    class Wider(nn.Linear):
        pass

    mlp = build("mlp", (40,), 10)
    mlp.net[4] = Wider(100, 10)
    assert batched(mlp) is None
    resnet = build("resnet1d", (40,), 10)
    resnet.blocks[0].bn2 = nn.BatchNorm1d(16, momentum=None)  # a block with a layer it does not write out
    assert batched(resnet) is None
    mlp = build("mlp", (40,), 10)
    torch.nn.utils.parametrizations.weight_norm(mlp.net[0])
    assert batched(mlp) is None
    mlp = build("mlp", (40,), 10)
    handle = mlp.net[2].register_forward_hook(lambda module, args, out: out * 2)
    assert batched(mlp) is None
    handle.remove()
    assert batched(mlp) is not None
    handle = mlp.register_forward_pre_hook(lambda module, args: None)
    assert batched(mlp) is None
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: out)
    try:
        assert batched(mlp) is None
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["mlp", "cnn_bn"])
def test_one_sample_batches_strided_inputs_and_unscaled_batch_norm_equal_vmap_bitwise(name):
    torch.manual_seed(0)
    model = build(name, (40,), 10)
    if name == "cnn_bn":  # batch norm without its affine weight and bias
        for i in (1, 4, 7):
            model.features[i] = nn.BatchNorm1d(25, affine=False)
    meta = copy.deepcopy(model).to("meta")
    params, buffers = _stacked(model, 2, torch.float32, False)
    y = torch.randint(0, 10, (2, 3))
    for x in (torch.randn(2, 1, 40), torch.randn(3, 2, 40).transpose(0, 1), torch.randn(2, 3, 80)[..., ::2]):
        assert x.shape[2] == 40
        yy = y[:, : x.shape[1]]
        (out_a, grads_a, run_a), (out_b, grads_b, run_b) = (
            _pass(f, params, buffers, x, yy) for f in (torch.vmap(stateless(meta)), batched(meta)))
        assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
        assert all(torch.equal(run_a[n], run_b[n]) for n in run_a)


def test_the_engine_writes_out_a_known_model_and_keeps_vmap_for_the_rest(monkeypatch):
    made = []

    def spy(module):
        made.append(batched(module))
        return made[-1]

    monkeypatch.setattr(ensemble, "batched", spy)
    assert ensemble.StackedModel(build("mlp", (40,), 10), "vmap")._all_workers is made[0] is not None
    deep = ensemble.StackedModel(build("resnet20", (3, 8, 8), 10), "vmap")
    assert made[1] is None and callable(deep._all_workers)
    ensemble.StackedModel(build("mlp", (40,), 10), "vmap", by_hand=False)
    assert len(made) == 2  # the reference never asks


TINY = Config(algorithm="mgrawa", workers=3, steps=24, tau=8, dataset="digits", model="mlp", batch_size=8,
              eval_every=8)


@pytest.mark.parametrize("changes", [{}, {"algorithm": "dp", "sam": True, "workers": 1, "tau": None},
                                     {"model": "cnn_bn", "algorithm": "lgrawa", "steps": 16},
                                     {"model": "resnet1d", "algorithm": "dp", "workers": 1, "steps": 16, "tau": None},
                                     {"model": "cnn", "schedule": "async", "speeds": (1.0, 1.5, 2.0),
                                      "straggler_prob": 0.2, "lr_spread": 4.0}])
def test_whole_runs_equal_the_vmapped_engine_bitwise(monkeypatch, changes):
    cfg = dataclasses.replace(TINY, **changes)
    written = run(cfg, progress=False)
    monkeypatch.setattr(ensemble, "batched", lambda module: None)
    vmapped = run(cfg, progress=False)
    cols = [c for c in written.history.columns if c != "wall_time"]
    pd.testing.assert_frame_equal(written.history[cols], vmapped.history[cols], check_exact=True)
    for name in written.workers:
        assert torch.equal(written.workers[name], vmapped.workers[name]), name
