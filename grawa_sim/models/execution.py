"""How the forward passes of M stacked models run: the one meaning of ``execution``.

``vmap``: all models in one ``torch.vmap`` call; ``unrolled``: one call per model (per worker slice);
``auto``: `choose_execution` picks per model and device. The stacked training engine
(`grawa_sim.engine.ensemble`, ``Config.execution``) and the flatness toolkit (`grawa_sim.flatness.Batched`,
``measure_workers``, ``flatness --execution``) take the same three values. (Not to be confused with the
*backend*: ``Config.backend = "loop"`` is the per-worker reference trainer, another engine altogether.)
"""

from __future__ import annotations

import torch
from torch import nn

from grawa_sim.config import EXECUTIONS, ConfigError
from grawa_sim.models.registry import has_conv, has_conv2d


def check_execution(execution: str) -> None:
    """A one-line ConfigError unless ``execution`` is one of EXECUTIONS (auto, vmap, unrolled)."""
    if execution not in EXECUTIONS:
        raise ConfigError(f"execution: must be one of {', '.join(EXECUTIONS)} (got {execution!r})")


def choose_execution(model: nn.Module | None, execution: str, device: torch.device | str,
                     second_order: bool = False) -> str:
    """``execution`` as run: "vmap" or "unrolled". "auto": vmap, except on the CPU for 2-D convolutions,
    where vmap's grouped convolutions lose to a per-worker loop (0.29x at M = 64 on a 2-core CPU), and,
    with ``second_order`` (Hessian-vector products: the flatness toolkit), for any convolution, whose
    vmapped double backward is slow there (the 1-D CNN: 0.76x PyHessian vmapped, 1.14x unrolled). 1-D
    convs and MLPs train faster under vmap here (`python -m grawa_sim bench`). ``model=None`` (a loss
    with no model to look at): vmap."""
    check_execution(execution)
    if execution != "auto":
        return execution
    slow = model is not None and (has_conv(model) if second_order else has_conv2d(model))
    return "unrolled" if slow and torch.device(device).type == "cpu" else "vmap"
