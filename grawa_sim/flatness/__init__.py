"""Flatness toolkit: Hessian spectrum and trace, epsilon-sharpness and loss landscapes.

Every metric takes a loss closure ``loss_fn(params) -> scalar`` over a parameter dict
(a model on a fixed batch: `model_loss`; or any objective) and the parameters. The
``stacked_*`` variants and `measure_workers` measure all M workers of a stacked
parameter dict at once, one ``torch.vmap`` call per Hessian-vector product.

    >>> from grawa_sim import flatness
    >>> loss_fn = flatness.model_loss(model, data)            # train-mode BN, 320 fixed samples
    >>> flatness.top_eigenvalue(loss_fn, params)              # (lambda, converged)
    >>> flatness.hessian_trace(loss_fn, params)               # (estimate, standard error)
    >>> flatness.lanczos_spectrum(loss_fn, params, k=5).top   # top-5 Ritz values
    >>> run_flatness.measure_run("runs/mg")                   # -> runs/mg/flatness.csv (grawa_sim.results.run_flatness)
"""

from grawa_sim.flatness.core import Batched, Layout, hessian_matrix, hvp
from grawa_sim.flatness.landscape import interpolate, landscape_1d, landscape_2d, random_direction
from grawa_sim.flatness.measure import (
    METRICS,
    ModelLoss,
    Settings,
    measure,
    measure_tensors,
    measure_workers,
    model_loss,
    probe_indices,
    stacked_measure,
    summary_columns,
)
from grawa_sim.flatness.sharpness import epsilon_sharpness, stacked_epsilon_sharpness
from grawa_sim.flatness.spectrum import (
    Extremes,
    Spectrum,
    extreme_eigenvalues,
    hessian_trace,
    lanczos_spectrum,
    rademacher,
    stacked_extreme_eigenvalues,
    stacked_hessian_trace,
    stacked_lanczos_spectrum,
    stacked_power_iteration,
    stacked_top_eigenvalue,
    top_eigenvalue,
)

__all__ = [
    "METRICS", "Batched", "Extremes", "extreme_eigenvalues", "stacked_extreme_eigenvalues",
    "stacked_power_iteration", "Layout", "ModelLoss", "Settings", "Spectrum", "epsilon_sharpness",
    "hessian_matrix", "hessian_trace", "hvp", "interpolate", "landscape_1d", "landscape_2d", "lanczos_spectrum",
    "measure", "measure_tensors", "measure_workers", "model_loss",
    "probe_indices", "rademacher", "random_direction", "stacked_epsilon_sharpness", "stacked_hessian_trace",
    "stacked_lanczos_spectrum", "stacked_measure", "stacked_top_eigenvalue", "summary_columns", "top_eigenvalue",
]
