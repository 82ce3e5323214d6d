"""Hand-computed checks of the round rules stated in docs/algorithms.md (LocalSGD to LGRAWA).

Every expected number below is derived from those rules by hand (small M, tiny
parameters, float64), not from the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from grawa_sim.algorithms import Hyper, build
from grawa_sim.algorithms.base import lerp
from grawa_sim.algorithms.easgd import easgd_round
from grawa_sim.algorithms.grawa import (
    GrawaHyper,
    grawa_weights,
    layer_norms,
    model_scores,
    smooth_scores,
    weighted_center,
)
from grawa_sim.algorithms.localsgd import localsgd_round
from grawa_sim.algorithms.lsgd import lsgd_round, running_loss
from grawa_sim.core.collectives import StackedAxis

F64 = torch.float64
B = 0.9**8  # MGRAWA step 3: b = 0.9^8


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def close(actual, expected, **kw):
    """assert_close for tensors or dicts of tensors (expected given as nested lists)."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected)
        for name in expected:
            close(actual[name], expected[name], **kw)
        return
    expected = expected if isinstance(expected, torch.Tensor) else t(expected)
    assert_close(actual, expected, rtol=kw.get("rtol", 1e-12), atol=kw.get("atol", 1e-12))


def hyper(pull: float, **kw) -> Hyper:
    """Round hyper-parameters; GRAWA's own fields (grawa_norm, grawa_smoothing) select its class."""
    return (GrawaHyper if kw else Hyper)(pull=pull, prox=0.0, tau=4, **kw)


def initial_point(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A common initial point of shape [1, ...] (the values do not matter for one GRAWA round)."""
    return {n: torch.zeros_like(x[:1]) for n, x in params.items()}


# ---------------------------------------------------------------- grawa_weights (MGRAWA step 4)


def test_weights_model_level_inverse_proportional():
    # 1/n = 1, 1/2, 1/4; sum 7/4 -> w = (4, 2, 1) / 7
    w = grawa_weights(t([1.0, 2.0, 4.0]))
    close(w, [4 / 7, 2 / 7, 1 / 7])
    close(w.sum(), 1.0)
    close(w * t([1.0, 2.0, 4.0]), [4 / 7] * 3)  # w_i * n_i is the same for every worker


def test_weights_explicit_axis_gives_same_result():
    w = grawa_weights(t([3.0, 6.0]), StackedAxis(2))
    close(w, [2 / 3, 1 / 3])


def test_weights_layer_level_per_column():
    # column 0: n = 1, 2, 4 -> (4, 2, 1)/7;  column 1: n = 2, 2, 4 -> 1/n = .5, .5, .25 -> (.4, .4, .2)
    scores = t([[1.0, 2.0], [2.0, 2.0], [4.0, 4.0]])
    w = grawa_weights(scores)
    assert w.shape == (3, 2)
    close(w, [[4 / 7, 0.4], [2 / 7, 0.4], [1 / 7, 0.2]])
    close(w.sum(dim=0), [1.0, 1.0])


def test_weights_single_zero_takes_all():
    w = grawa_weights(t([0.0, 1.0, 2.0]))
    close(w, [1.0, 0.0, 0.0])
    assert torch.isfinite(w).all()


def test_weights_two_zeros_share_equally():
    w = grawa_weights(t([0.0, 3.0, 0.0]))
    close(w, [0.5, 0.0, 0.5])
    assert torch.isfinite(w).all()


def test_weights_all_zero_uniform():
    close(grawa_weights(t([0.0, 0.0, 0.0, 0.0])), [0.25] * 4)


def test_weights_subnormal_score_takes_all():
    # 1/5e-324 overflows to inf: treated like an exact zero, no NaN
    w = grawa_weights(t([5e-324, 1.0]))
    close(w, [1.0, 0.0])


def test_weights_layer_level_zero_only_in_its_column():
    # column 0 has a zero on worker 0 -> (1, 0); column 1 equal scores -> (.5, .5)
    w = grawa_weights(t([[0.0, 1.0], [2.0, 1.0]]))
    close(w, [[1.0, 0.5], [0.0, 0.5]])
    assert torch.isfinite(w).all()


def test_weights_float32_zero_no_nan():
    w = grawa_weights(torch.tensor([0.0, 2.0], dtype=torch.float32))
    assert_close(w, torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize(
    "scores",
    [
        torch.tensor(1.0, dtype=F64),  # 0-d
        torch.ones(2, 2, 2, dtype=F64),  # 3-d
        t([1.0, -1.0]),  # negative
        t([[1.0, 2.0], [-0.5, 1.0]]),  # negative, layer level
        t([1.0, float("nan")]),  # NaN
    ],
)
def test_weights_bad_input_raises(scores):
    with pytest.raises(ValueError):
        grawa_weights(scores)


def test_weights_tiny_positive_scores_still_sum_to_one():
    # 1/1e-308 = 1e308 is finite but 2e308 overflows; by the rule w = (1/2, 1/2)
    w = grawa_weights(t([1e-308, 1e-308]))
    close(w, [0.5, 0.5])


# ---------------------------------------------------------------- scores and helpers (MGRAWA steps 2, 3)


def test_layer_norms_and_model_scores():
    grads = {"w": t([[3.0, 4.0], [0.0, 0.0]]), "b": t([[-2.0], [1.0]])}
    norms = layer_norms(grads)
    close(norms, [[5.0, 2.0], [0.0, 1.0]])
    close(model_scores(norms, "layer_sum"), [7.0, 1.0])
    close(model_scores(norms, "global"), [math.sqrt(29.0), 1.0])


def test_layer_norms_multidim_layer_is_one_norm():
    # a [M, 2, 2] "conv" weight counts as ONE layer: its Frobenius norm
    g = {"k": t([[[1.0, 2.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 3.0]]])}
    close(layer_norms(g), [[5.0], [3.0]])


def test_layer_norms_scalar_parameter_per_worker():
    # a parameter that is a scalar per worker (stacked shape [M]) is one layer, norm = |x|
    close(layer_norms({"s": t([-3.0, 2.0])}), [[3.0], [2.0]])


def test_smooth_scores_first_round_and_second():
    n1, n2 = t([6.0, 12.0]), t([12.0, 3.0])
    g1, s1 = smooth_scores(torch.zeros(2, dtype=F64), n1, 1)
    close(g1, (1 - B) * n1)
    assert torch.equal(s1, n1)  # bias correction undoes the zero start exactly
    g2, s2 = smooth_scores(g1, n2, 2)
    close(g2, B * (1 - B) * n1 + (1 - B) * n2)
    close(s2, (B * n1 + n2) / (1 + B))  # (b(1-b) n1 + (1-b) n2) / (1 - b^2)


def test_weighted_center_model_and_layer_weights():
    params = {"w": t([[7.0, 0.0], [0.0, 7.0]]), "b": t([[1.0], [5.0]])}
    c = weighted_center(params, t([0.75, 0.25]), StackedAxis(2))
    close(c, {"w": [[5.25, 1.75]], "b": [[2.0]]})
    c = weighted_center(params, t([[0.75, 0.5], [0.25, 0.5]]), StackedAxis(2))
    close(c, {"w": [[5.25, 1.75]], "b": [[3.0]]})


def test_lerp():
    out = lerp({"w": t([[0.0, 4.0], [8.0, 0.0]])}, {"w": t([[4.0, 4.0]])}, 0.25)
    close(out, {"w": [[1.0, 4.0], [7.0, 1.0]]})


# ---------------------------------------------------------------- MGRAWA

# M = 3 workers, layers "w" [M, 2] and "b" [M, 1]
PARAMS3 = {"w": t([[7.0, 0.0], [0.0, 7.0], [0.0, 0.0]]), "b": t([[0.0], [7.0], [14.0]])}
# per-layer norms: worker 0: ||(3,4)|| = 5, |1| = 1 -> 6;  worker 1: 6 + 6 = 12;  worker 2: 20 + 4 = 24
GRADS3 = {"w": t([[3.0, 4.0], [0.0, 6.0], [0.0, 20.0]]), "b": t([[1.0], [-6.0], [4.0]])}


def _clone(p):
    return {n: x.clone() for n, x in p.items()}


@pytest.mark.parametrize("smoothing", [True, False])
def test_mgrawa_round_layer_sum(smoothing):
    algo = build("mgrawa", hyper(0.5, grawa_smoothing=smoothing))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS3), axis)
    params, state, info = algo.round(_clone(PARAMS3), state, axis, GRADS3)
    # scores 6, 12, 24 (first smoothed score == raw score) -> w = (4, 2, 1)/7
    close(info.scores, [6.0, 12.0, 24.0])
    close(info.weights, [4 / 7, 2 / 7, 1 / 7])
    # x_C: w = 4/7*(7,0) + 2/7*(0,7) = (4, 2);  b = 2/7*7 + 1/7*14 = 4
    close(state.center, {"w": [[4.0, 2.0]], "b": [[4.0]]})
    assert algo.center(state) is state.center
    # x_i <- 0.5 x_i + 0.5 x_C
    close(params, {"w": [[5.5, 1.0], [2.0, 4.5], [2.0, 1.0]], "b": [[2.0], [5.5], [9.0]]})
    assert state.rounds == 1


def test_mgrawa_round_global_norm():
    algo = build("mgrawa", hyper(1.0, grawa_norm="global"))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS3), axis)
    params, state, info = algo.round(_clone(PARAMS3), state, axis, GRADS3)
    # global norms: sqrt(9+16+1), sqrt(36+36), sqrt(400+16)
    n = [math.sqrt(26.0), math.sqrt(72.0), math.sqrt(416.0)]
    close(info.scores, n)
    inv = [1 / v for v in n]
    w = [v / sum(inv) for v in inv]
    close(info.weights, w)
    center_w = [7 * w[0], 7 * w[1]]
    center_b = 7 * w[1] + 14 * w[2]
    close(state.center, {"w": [center_w], "b": [[center_b]]})
    # lambda = 1: every worker becomes x_C
    close(params, {"w": [center_w] * 3, "b": [[center_b]] * 3})
    # and it differs from the layer-sum weights (4, 2, 1)/7
    assert abs(w[0] - 4 / 7) > 1e-3


def test_mgrawa_zero_probe_gradient_takes_all_weight():
    algo = build("mgrawa", hyper(0.5))
    axis = StackedAxis(3)
    grads = _clone(GRADS3)
    grads["w"][1] = 0.0
    grads["b"][1] = 0.0
    state = algo.init(initial_point(PARAMS3), axis)
    params, state, info = algo.round(_clone(PARAMS3), state, axis, grads)
    close(info.weights, [0.0, 1.0, 0.0])
    close(state.center, {"w": [[0.0, 7.0]], "b": [[7.0]]})
    close(params, {"w": [[3.5, 3.5], [0.0, 7.0], [0.0, 3.5]], "b": [[3.5], [7.0], [10.5]]})
    for x in params.values():
        assert torch.isfinite(x).all()


def test_mgrawa_pull_zero_leaves_workers():
    algo = build("mgrawa", hyper(0.0))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS3), axis)
    params, state, _ = algo.round(_clone(PARAMS3), state, axis, GRADS3)
    close(params, PARAMS3)
    close(state.center, {"w": [[4.0, 2.0]], "b": [[4.0]]})


def test_mgrawa_init_center_is_initial_point():
    algo = build("mgrawa", hyper(0.5))
    p0 = {"w": t([[1.0, 2.0]]), "b": t([[3.0]])}
    state = algo.init(p0, StackedAxis(3))
    close(algo.center(state), {"w": [[1.0, 2.0]], "b": [[3.0]]})
    assert state.rounds == 0


def _grads_with_scores(a: float, b: float, c: float) -> dict[str, torch.Tensor]:
    """Layer-sum scores a, b, c (all of it in the first entry of "w")."""
    return {"w": t([[a, 0.0], [b, 0.0], [c, 0.0]]), "b": t([[0.0], [0.0], [0.0]])}


def test_mgrawa_smoothing_three_rounds():
    algo = build("mgrawa", hyper(0.5))
    axis = StackedAxis(3)
    n1, n2, n3 = t([6.0, 12.0, 24.0]), t([12.0, 6.0, 6.0]), t([2.0, 2.0, 2.0])
    params = _clone(PARAMS3)
    state = algo.init(initial_point(params), axis)

    params, state, info = algo.round(params, state, axis, _grads_with_scores(*n1.tolist()))
    close(info.scores, n1)
    close(state.average, (1 - B) * n1)

    before = _clone(params)
    params, state, info = algo.round(params, state, axis, _grads_with_scores(*n2.tolist()))
    s2 = (B * n1 + n2) / (1 + B)  # (b(1-b) n1 + (1-b) n2) / (1 - b^2)
    close(info.scores, s2)
    close(state.average, B * (1 - B) * n1 + (1 - B) * n2)
    w2 = (1 / s2) / (1 / s2).sum()
    close(info.weights, w2)
    center = {n: (w2.view(-1, *[1] * (x.ndim - 1)) * x).sum(0, keepdim=True) for n, x in before.items()}
    close(state.center, center)
    close(params, {n: 0.5 * before[n] + 0.5 * center[n] for n in before})
    assert state.rounds == 2

    params, state, info = algo.round(params, state, axis, _grads_with_scores(*n3.tolist()))
    s3 = (B**2 * n1 + B * n2 + n3) / (1 + B + B**2)
    close(info.scores, s3)
    close(info.weights, (1 / s3) / (1 / s3).sum())
    assert state.rounds == 3
    assert info.scores[0].item() != pytest.approx(2.0)  # not the raw round-3 score
    # numerically b = 0.43046721: worker 0's round-2 score is (0.43046721*6 + 12)/1.43046721 = 10.194...
    assert s2[0].item() == pytest.approx((0.43046721 * 6 + 12) / 1.43046721, rel=1e-8)


def test_mgrawa_no_smoothing_uses_raw_scores():
    algo = build("mgrawa", hyper(0.5, grawa_smoothing=False))
    axis = StackedAxis(3)
    params = _clone(PARAMS3)
    state = algo.init(initial_point(params), axis)
    params, state, _ = algo.round(params, state, axis, _grads_with_scores(6.0, 12.0, 24.0))
    params, state, info = algo.round(params, state, axis, _grads_with_scores(12.0, 6.0, 6.0))
    close(info.scores, [12.0, 6.0, 6.0])
    # 1/n = 1/12, 1/6, 1/6 -> (1, 2, 2)/5
    close(info.weights, [0.2, 0.4, 0.4])


def test_mgrawa_uniform_weights_and_full_pull_equals_localsgd():
    # GRAWA with uniform weights and lambda = 1 gives LocalSGD's numbers
    algo = build("mgrawa", hyper(1.0))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS3), axis)
    params, _, info = algo.round(_clone(PARAMS3), state, axis, _grads_with_scores(5.0, 5.0, 5.0))
    close(info.weights, [1 / 3] * 3)
    expected, _ = localsgd_round(_clone(PARAMS3), 1.0, axis)
    close(params, expected)
    close(params, {"w": [[7 / 3, 7 / 3]] * 3, "b": [[7.0]] * 3})


# ---------------------------------------------------------------- LGRAWA

PARAMS_L = {"w": t([[7.0, 0.0], [0.0, 7.0], [0.0, 0.0]]), "b": t([[0.0], [4.0], [8.0]])}
# layer "w" norms 5, 10, 20 -> (4, 2, 1)/7;  layer "b" norms 2, 2, 1 -> 1/n = .5, .5, 1 -> (.25, .25, .5)
GRADS_L = {"w": t([[3.0, 4.0], [6.0, 8.0], [12.0, 16.0]]), "b": t([[-2.0], [2.0], [1.0]])}


def test_lgrawa_round_per_layer():
    algo = build("lgrawa", hyper(0.25))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS_L), axis)
    assert state.average.shape == (3, 2)
    params, state, info = algo.round(_clone(PARAMS_L), state, axis, GRADS_L)
    close(info.scores, [[5.0, 2.0], [10.0, 2.0], [20.0, 1.0]])
    close(info.weights, [[4 / 7, 0.25], [2 / 7, 0.25], [1 / 7, 0.5]])
    # x_C^w = 4/7 (7, 0) + 2/7 (0, 7) = (4, 2);  x_C^b = .25*0 + .25*4 + .5*8 = 5
    close(state.center, {"w": [[4.0, 2.0]], "b": [[5.0]]})
    # x_i <- 0.75 x_i + 0.25 x_C
    close(params, {"w": [[6.25, 0.5], [1.0, 5.75], [1.0, 0.5]], "b": [[1.25], [4.25], [7.25]]})
    close(state.average, (1 - B) * t([[5.0, 2.0], [10.0, 2.0], [20.0, 1.0]]))


def test_lgrawa_zero_norm_only_affects_its_layer():
    algo = build("lgrawa", hyper(1.0))
    axis = StackedAxis(3)
    grads = _clone(GRADS_L)
    grads["b"][2] = 0.0
    state = algo.init(initial_point(PARAMS_L), axis)
    params, state, info = algo.round(_clone(PARAMS_L), state, axis, grads)
    close(info.weights, [[4 / 7, 0.0], [2 / 7, 0.0], [1 / 7, 1.0]])
    close(state.center, {"w": [[4.0, 2.0]], "b": [[8.0]]})
    close(params, {"w": [[4.0, 2.0]] * 3, "b": [[8.0]] * 3})


def test_lgrawa_smoothing_second_round():
    algo = build("lgrawa", hyper(0.5))
    axis = StackedAxis(3)
    params = _clone(PARAMS_L)
    state = algo.init(initial_point(params), axis)
    params, state, _ = algo.round(params, state, axis, GRADS_L)
    n1 = t([[5.0, 2.0], [10.0, 2.0], [20.0, 1.0]])
    grads2 = {"w": 2 * GRADS_L["w"].flip(0), "b": t([[1.0], [1.0], [1.0]])}  # norms w: 40, 20, 10; b: 1, 1, 1
    n2 = t([[40.0, 1.0], [20.0, 1.0], [10.0, 1.0]])
    _, state, info = algo.round(params, state, axis, grads2)
    s2 = (B * n1 + n2) / (1 + B)
    close(info.scores, s2)
    close(info.weights, (1 / s2) / (1 / s2).sum(0, keepdim=True))


def test_lgrawa_probe_grads_matched_by_name():
    algo = build("lgrawa", hyper(1.0, grawa_smoothing=False))
    axis = StackedAxis(3)
    state = algo.init(initial_point(PARAMS_L), axis)
    reordered = {"b": GRADS_L["b"], "w": GRADS_L["w"]}  # same gradients, other key order
    _, state, _ = algo.round(_clone(PARAMS_L), state, axis, reordered)
    close(state.center, {"w": [[4.0, 2.0]], "b": [[5.0]]})


# ---------------------------------------------------------------- EASGD


def test_easgd_round_two_workers():
    # beta = 0.5, M = 2 -> alpha = 0.25;  x~ = (2, 2)
    params = {"w": t([[4.0, 0.0], [0.0, 8.0]])}
    center = {"w": t([[2.0, 2.0]])}
    new, new_center = easgd_round(params, center, 0.5, StackedAxis(2))
    # x_0 = (4, 0) - .25 (2, -2) = (3.5, 0.5);  x_1 = (0, 8) - .25 (-2, 6) = (0.5, 6.5)
    close(new, {"w": [[3.5, 0.5], [0.5, 6.5]]})
    # x~ = .5 (2, 2) + .5 mean_j x_j = .5 (2, 2) + .5 (2, 4) = (2, 3)  (pre-round mean)
    close(new_center, {"w": [[2.0, 3.0]]})
    close(params, {"w": [[4.0, 0.0], [0.0, 8.0]]})  # inputs untouched
    close(center, {"w": [[2.0, 2.0]]})


def test_easgd_alpha_is_beta_over_m():
    # M = 3, beta = 0.6 -> alpha = 0.2;  x~ = 0: x_i <- 0.8 x_i;  x~ <- 0.6 * mean = 0.6 * 4 = 2.4
    params = {"w": t([[5.0], [10.0], [-3.0]])}
    new, new_center = easgd_round(params, {"w": t([[0.0]])}, 0.6, StackedAxis(3))
    close(new, {"w": [[4.0], [8.0], [-2.4]]})
    close(new_center, {"w": [[2.4]]})


def test_easgd_class_two_rounds_and_evaluated():
    algo = build("easgd", hyper(0.5))
    axis = StackedAxis(2)
    state = algo.init({"w": t([[2.0, 2.0]])}, axis)
    close(state.center, {"w": [[2.0, 2.0]]})  # x~ starts at the initial point
    params, state, _ = algo.round({"w": t([[4.0, 0.0], [0.0, 8.0]])}, state, axis, None)
    close(params, {"w": [[3.5, 0.5], [0.5, 6.5]]})
    close(state.center, {"w": [[2.0, 3.0]]})
    # round 2 from x = (3.5, .5), (.5, 6.5), x~ = (2, 3):
    # x_0 = (3.5, .5) - .25 (1.5, -2.5) = (3.125, 1.125);  x_1 = (.5, 6.5) - .25 (-1.5, 3.5) = (.875, 5.625)
    # x~ = .5 (2, 3) + .5 (2, 3.5) = (2, 3.25)
    params, state, _ = algo.round(params, state, axis, None)
    close(params, {"w": [[3.125, 1.125], [0.875, 5.625]]})
    close(state.center, {"w": [[2.0, 3.25]]})
    close(algo.evaluated(params, state, axis), {"w": [[2.0, 3.25]]})  # evaluated on x~


# ---------------------------------------------------------------- LSGD


def _observe(algo, state, rows):
    for row in rows:
        state = algo.observe_losses(state, t(row))
    return state


def test_lsgd_running_loss_fewer_than_four():
    algo = build("lsgd", hyper(0.5))
    state = algo.init({"w": t([[0.0]])}, StackedAxis(2))
    state = _observe(algo, state, [[1.0, 5.0]])
    close(running_loss(state), [1.0, 5.0])
    state = _observe(algo, state, [[3.0, 1.0]])
    close(running_loss(state), [2.0, 3.0])  # mean of the 2 seen, not of 4 (zeros not counted)


def test_lsgd_window_drops_older_losses():
    algo = build("lsgd", hyper(1.0))
    axis = StackedAxis(2)
    params = {"w": t([[1.0], [2.0]])}
    state = algo.init({"w": t([[0.0]])}, axis)
    state = _observe(algo, state, [[100.0, 0.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    close(running_loss(state), [25.75, 1.5])
    _, _, info = algo.round(_clone(params), state, axis, None)
    assert info.leader == 1
    state = _observe(algo, state, [[1.0, 2.0]])  # 100 and 0 drop out of the window
    close(running_loss(state), [1.0, 2.0])
    _, _, info = algo.round(_clone(params), state, axis, None)
    assert info.leader == 0  # full history would give 20.8 vs 1.6 -> leader 1
    state = _observe(algo, state, [[9.0, 2.0], [9.0, 2.0]])  # last 4: (1, 1, 9, 9) vs (2, 2, 2, 2)
    close(running_loss(state), [5.0, 2.0])


def test_lsgd_tie_goes_to_lowest_index():
    algo = build("lsgd", hyper(0.5))
    axis = StackedAxis(3)
    state = algo.init({"w": t([[0.0]])}, axis)
    state = _observe(algo, state, [[3.0, 1.0, 2.0], [3.0, 3.0, 2.0]])  # means 3, 2, 2
    close(running_loss(state), [3.0, 2.0, 2.0])
    _, _, info = algo.round({"w": t([[0.0], [1.0], [2.0]])}, state, axis, None)
    assert info.leader == 1
    _, _, leader = lsgd_round({"w": t([[0.0], [1.0], [2.0]])}, t([4.0, 4.0, 4.0]), 0.5, axis)
    assert leader == 0


def test_lsgd_round_pull_toward_leader():
    params = {"w": t([[0.0, 0.0], [2.0, 4.0], [6.0, 8.0]]), "b": t([[2.0], [0.0], [-2.0]])}
    new, leader_params, leader = lsgd_round(params, t([3.0, 1.0, 2.0]), 0.5, StackedAxis(3))
    assert leader == 1
    close(leader_params, {"w": [[2.0, 4.0]], "b": [[0.0]]})
    close(new, {"w": [[1.0, 2.0], [2.0, 4.0], [4.0, 6.0]], "b": [[1.0], [0.0], [-1.0]]})


def test_lsgd_class_round_sets_center_to_leader():
    algo = build("lsgd", hyper(0.25))
    axis = StackedAxis(3)
    state = algo.init({"w": t([[9.0]])}, axis)
    close(algo.center(state), {"w": [[9.0]]})  # initial point before round 1
    state = _observe(algo, state, [[2.0, 3.0, 1.0]])
    params, state, info = algo.round({"w": t([[0.0], [4.0], [8.0]])}, state, axis, None)
    assert info.leader == 2
    close(algo.center(state), {"w": [[8.0]]})
    close(params, {"w": [[2.0], [5.0], [8.0]]})  # 0.75 x_i + 0.25 * 8


# ---------------------------------------------------------------- LocalSGD


def test_localsgd_round_average_and_pull():
    axis = StackedAxis(3)
    params = {"w": t([[0.0, 3.0], [3.0, 6.0], [6.0, 0.0]]), "b": t([[1.0], [2.0], [6.0]])}
    new, avg = localsgd_round(params, 1.0, axis)
    close(avg, {"w": [[3.0, 3.0]], "b": [[3.0]]})
    close(new, {"w": [[3.0, 3.0]] * 3, "b": [[3.0]] * 3})
    new, avg = localsgd_round(params, 0.5, axis)
    close(new, {"w": [[1.5, 3.0], [3.0, 4.5], [4.5, 1.5]], "b": [[2.0], [2.5], [4.5]]})
    new, _ = localsgd_round(params, 0.0, axis)
    close(new, params)


def test_localsgd_class_round_and_evaluated():
    algo = build("localsgd", hyper(1.0))
    axis = StackedAxis(2)
    state = algo.init({"w": t([[5.0]])}, axis)
    close(algo.center(state), {"w": [[5.0]]})
    params, state, _ = algo.round({"w": t([[1.0], [3.0]])}, state, axis, None)
    close(params, {"w": [[2.0], [2.0]]})
    close(state.center, {"w": [[2.0]]})
    close(algo.evaluated({"w": t([[1.0], [5.0]])}, state, axis), {"w": [[3.0]]})


def test_build_unknown_name_raises():
    with pytest.raises(ValueError):
        build("nope", hyper(0.5))


def test_weights_float32_subnormal_scores_keep_their_ratio():
    # 1e-40 and 2e-40 are sub-normal in float32 (stored to ~1e-5 relative): the weights still follow 1/n
    scores = torch.tensor([1e-40, 2e-40, 1.0], dtype=torch.float32)
    w = grawa_weights(scores)
    assert w.dtype == torch.float32
    stored = scores.double()
    expected = (1 / stored) / (1 / stored).sum()
    assert_close(w, expected.float(), atol=1e-7, rtol=1e-6)
    assert_close(w, torch.tensor([2 / 3, 1 / 3, 0.0]), atol=1e-4, rtol=1e-4)


def test_weights_infinite_score_is_a_divergence_error():
    from grawa_sim.algorithms.grawa import DivergenceError

    with pytest.raises(DivergenceError, match="diverged"):
        grawa_weights(t([1.0, float("inf")]))
