"""Learning-rate schedules: lr(t) = lr_0 * warmup(t) * decay(t), t in steps or simulated seconds.

- warmup(t) = min(1, (t + u) / T_w) for a warm-up of T_w > 0 (u: one step in the unit, so the
  first step runs at lr_0 * u / T_w rather than 0); 1 without warm-up.
- constant: decay(t) = 1.
- step:     decay(t) = f ** #{t_k in lr_decay_at : t >= t_k}  (f = lr_decay_factor).
- cosine:   decay(t) = (1 + cos(pi * s)) / 2 with s = clip((t - T_w) / (T - T_w), 0, 1), where the
  horizon T is ``steps`` (unit steps) or ``time_budget`` (unit seconds).
- inverse:  decay(t) = 1 / (1 + t / t0) (t0 = lr_t0): lr_t ~ lr * t0 / t, the O(1/t) step size of SGD
  on strongly convex objectives.

Per worker (``lr_spread`` s > 1): worker i of M trains at lr(t) * s^(i/(M-1) - 1/2), so the largest lr is
s times the smallest and their geometric mean is lr(t).
"""

from __future__ import annotations

import math

from grawa_sim.config import Config


def lr_at(cfg: Config, t: float) -> float:
    """The learning rate of the step that starts at time ``t`` of a validated ``cfg`` (runner.validate
    fills ``step_time``, which the seconds unit needs)."""
    unit = 1.0 if cfg.lr_decay_unit == "steps" else cfg.step_time
    warm = min(1.0, (t + unit) / cfg.warmup) if cfg.warmup > 0 else 1.0
    if cfg.lr_schedule == "step":
        decay = cfg.lr_decay_factor ** sum(t >= at for at in cfg.lr_decay_at)
    elif cfg.lr_schedule == "cosine":
        horizon = cfg.steps if cfg.lr_decay_unit == "steps" else cfg.time_budget
        span = horizon - cfg.warmup
        s = min(1.0, max(0.0, (t - cfg.warmup) / span)) if span > 0 else 1.0
        decay = 0.5 * (1.0 + math.cos(math.pi * s))
    elif cfg.lr_schedule == "inverse":
        decay = 1.0 / (1.0 + t / cfg.lr_t0)
    else:
        decay = 1.0
    return cfg.lr * warm * decay


def worker_factors(cfg: Config) -> list[float] | None:
    """Each worker's lr factor s^(i/(M-1) - 1/2) for ``lr_spread`` s; None when every worker runs at lr."""
    spread, m = cfg.lr_spread, cfg.workers
    if spread is None or spread == 1 or m < 2:
        return None
    return [spread ** (i / (m - 1) - 0.5) for i in range(m)]

