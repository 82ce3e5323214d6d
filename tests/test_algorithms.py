"""The registry: every algorithm describes itself completely, and no round changes its input state."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from grawa_sim import algorithms
from grawa_sim.algorithms.base import Algorithm, Hyper, Reference, Style
from grawa_sim.config import ALGORITHMS, Config, resolve
from grawa_sim.core.collectives import Collective, StackedAxis


def _same(a, b) -> bool:
    """Deep equality of states: dataclasses, dicts, lists, tensors (exact), numbers."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def test_the_config_lists_exactly_the_registered_algorithms():
    assert ALGORITHMS == algorithms.names() == tuple(algorithms.REGISTERED)
    assert set(algorithms.COMPARED) <= set(ALGORITHMS)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_describes_itself(name):
    kind = algorithms.get(name)
    assert issubclass(kind, Algorithm) and kind.name == name
    assert isinstance(kind.style, Style) and kind.style.label and kind.style.color
    assert issubclass(kind.hyper_type, Hyper) and issubclass(kind.reference, Reference)
    assert "Collectives" in (kind.__doc__ or "")
    costs = kind.collectives(1000, 3)
    assert costs and all(isinstance(c, Collective) for c in costs)
    resolved = resolve(Config(algorithm=name, steps=64))
    expected_tau = 1 if kind.communicates_every_step else kind.default_tau
    assert (resolved.tau, resolved.pull, resolved.prox) == (expected_tau, kind.default_pull, kind.default_prox)
    for field in kind.hyper_type.extra_fields():  # each declared field is a Config field, resolved to a value
        assert getattr(resolved, field) is not None


def test_styles_are_distinct():
    styles = {m: s for kind in algorithms.classes().values() for m, s in kind.styles().items()}
    assert len({(s.color, str(s.linestyle)) for s in styles.values()}) == len(styles)
    assert len({s.label for s in styles.values()}) == len(styles)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_no_hook_changes_the_state_it_is_given(name):
    torch.manual_seed(0)
    m = 3
    params = {"w": torch.randn(m, 4, 2, dtype=torch.float64), "b": torch.randn(m, 2, dtype=torch.float64)}
    axis = StackedAxis(m)
    algo = algorithms.build(name, Hyper(pull=0.5, prox=0.1, tau=4))
    state = algo.init({n: p[:1].clone() for n, p in params.items()}, axis)
    for step in range(3):  # a few observed losses first, so LSGD's window is not empty
        given, before = state, copy.deepcopy(state)
        state = algo.observe_losses(given, torch.rand(m, dtype=torch.float64) + step)
        assert _same(given, before), "observe_losses changed its input state"
    before, inputs = copy.deepcopy(state), copy.deepcopy(params)
    if algo.communicates_every_step:
        algo.reduce_grads(params, axis)
    else:
        probe = {n: torch.rand_like(p) for n, p in params.items()}
        new_params, _, _ = algo.round(params, state, axis, probe)
        assert not _same(new_params, inputs)  # the round did something
    assert _same(state, before), "the round changed its input state"
    assert _same(params, inputs), "the round changed its input parameters"


def test_observe_losses_returns_a_new_state_for_lsgd():
    algo = algorithms.build("lsgd", Hyper(pull=0.5, prox=0.0, tau=4))
    state = algo.init({"w": torch.zeros(1, 2)}, StackedAxis(2))
    before = copy.deepcopy(state)
    new = algo.observe_losses(state, torch.tensor([1.0, 2.0]))
    assert _same(state, before)
    assert new.seen.tolist() == [1, 1]


def test_unknown_name_lists_every_registered_algorithm():
    with pytest.raises(ValueError, match="algorithm: must be one of " + ", ".join(ALGORITHMS)):
        algorithms.get("nope")
