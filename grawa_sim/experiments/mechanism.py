"""Where do the algorithms end up on a landscape with a sharp and a wide basin of equal depth?

R independent runs of M workers each train together as one stacked ensemble of R*M workers
(`GroupedAxis`: every collective reduces within a run's group of M), with the library's own
engine and round code on `two_basins`'s landscape. Each run's workers start scattered around
the ridge between the basins: x_i(0) = ridge + spread * N(0, I), independently for every worker
and run (DP starts all M workers at the run's mean start, as DP keeps one model). Local steps
are SGD on minibatch gradients grad F(x) + noise (variance sigma^2 / B per coordinate).

At the end, the basin of each run's evaluated model and of its center is the basin that
gradient descent from that point ends in (`two_basins.flow_to_basin`). The fraction of runs
whose model ends in the wide basin carries a Wilson 95 % interval (grawa_sim.core.stats.proportion).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from grawa_sim import algorithms
from grawa_sim.algorithms import Hyper
from grawa_sim.config import Config, digest, resolve
from grawa_sim.core.collectives import GroupedAxis
from grawa_sim.core.stats import ALPHA, fisher, proportion
from grawa_sim.data.two_basins import Point, basins, flow_to_basin, landscape
from grawa_sim.engine.ensemble import VmapEngine
from grawa_sim.models.losses import per_sample_loss
from grawa_sim.results.storage import cached_csv

METHODS = algorithms.COMPARED


@dataclass(frozen=True)
class Setup:
    """One algorithm's ensemble of ``runs`` runs; ``tau`` and ``pull`` are shared by the pulling methods
    (LocalSGD always averages fully, pull 1; DP communicates every step); ``prox`` is the algorithm's default."""

    algorithm: str = "mgrawa"
    workers: int = 4
    runs: int = 200
    steps: int = 400
    tau: int = 8
    pull: float = 0.5
    lr: float = 0.05
    batch_size: int = 4
    sigma: float = 1.0  # per-sample gradient noise
    spread: float = 0.5  # scatter of the starting points around the ridge
    dim: int = 2
    seed: int = 0
    weighting: str = "inverse_norm"  # GRAWA's weights; "uniform": its twin (w_i = 1/M, the rest unchanged)


@dataclass
class Outcome:
    """Final points ([R, d]) and their basins (True: wide), plus the path of run ``shown`` ([steps + 1, M, d]
    for its workers, [steps + 1, d] for its center): the first run whose workers start in both basins."""

    setup: Setup
    evaluated: torch.Tensor
    center: torch.Tensor
    workers: torch.Tensor  # [R, M, d]
    evaluated_wide: torch.Tensor
    center_wide: torch.Tensor
    workers_wide: torch.Tensor  # [R, M]
    path: torch.Tensor
    center_path: torch.Tensor
    shown: int = 0


def _hyper(setup: Setup) -> tuple[Hyper, float]:
    cfg = resolve(Config(algorithm=setup.algorithm, workers=setup.workers, dataset="two_basins", model="point",
                         steps=1000, momentum=0.0, weight_decay=0.0))  # only the algorithm's defaults are read
    kind = algorithms.get(setup.algorithm)
    pull = {"localsgd": 1.0}.get(setup.algorithm, setup.pull)  # the study's design: LocalSGD averages fully
    tau = 1 if kind.communicates_every_step else setup.tau
    hyper = dataclasses.replace(kind.hyper_type.from_config(cfg), pull=pull, tau=tau)
    if hasattr(hyper, "weighting"):
        hyper = dataclasses.replace(hyper, weighting=setup.weighting)
    elif setup.weighting != "inverse_norm":
        raise ValueError(f"weighting: only MGRAWA and LGRAWA have weights (got {setup.weighting!r} for "
                         f"{setup.algorithm})")
    return hyper, cfg.prox


def simulate(setup: Setup) -> Outcome:
    """Train the R runs of ``setup`` together (float64, CPU; seeded by ``setup.seed``)."""
    shape = landscape(dim=setup.dim)
    where = basins(shape)
    r, m, d = setup.runs, setup.workers, setup.dim
    axis = GroupedAxis(m, r)
    hyper, prox = _hyper(setup)
    algorithm = algorithms.build(setup.algorithm, hyper)
    gen = torch.Generator().manual_seed(setup.seed)
    starts = where.ridge + setup.spread * torch.randn(r, m, d, generator=gen, dtype=torch.float64)
    if algorithm.communicates_every_step:  # DP keeps one model: every worker starts at the run's mean start
        starts = starts.mean(dim=1, keepdim=True).expand(r, m, d)
    model = Point(shape, where.ridge.clone()).double()
    engine = VmapEngine(model, algorithm, axis, per_sample_loss(0, "value"), setup.lr, 0.0, 0.0, prox, hyper.tau)
    engine.start_from({"x": starts.reshape(r * m, d)},
                      center={"x": starts.mean(dim=1, keepdim=True).expand(r, m, d).reshape(r * m, d)})
    zeros = torch.zeros(r * m, setup.batch_size, dtype=torch.float64)

    def noise() -> torch.Tensor:
        return setup.sigma * torch.randn(r * m, setup.batch_size, d, generator=gen, dtype=torch.float64)

    def center() -> torch.Tensor:
        if algorithm.communicates_every_step:  # DP's center is its model
            return engine.params["x"]
        return algorithm.center(engine.state)["x"].expand(r * m, d)

    start_wide = flow_to_basin(shape, starts.reshape(r * m, d)).reshape(r, m).sum(dim=1)
    split = torch.nonzero((start_wide > 0) & (start_wide < m)).flatten()
    shown = int(split[0]) if len(split) else 0  # the run drawn: the first whose workers start in both basins
    rows = slice(shown * m, (shown + 1) * m)
    path, center_path = [engine.params["x"][rows].clone()], [center()[shown * m].clone()]
    for step in range(1, setup.steps + 1):
        engine.local_step(noise(), zeros)
        if not algorithm.communicates_every_step and step % hyper.tau == 0:
            engine.communicate((noise(), zeros) if algorithm.needs_probe else None)
        path.append(engine.params["x"][rows].clone())
        center_path.append(center()[shown * m].clone())
    evaluated = algorithm.evaluated(engine.params, engine.state, axis)["x"].expand(r * m, d)[::m]
    final_center = center()[::m]
    workers = engine.params["x"].reshape(r, m, d)
    return Outcome(setup, evaluated, final_center, workers, flow_to_basin(shape, evaluated),
                   flow_to_basin(shape, final_center), flow_to_basin(shape, workers.reshape(r * m, d)).reshape(r, m),
                   torch.stack(path), torch.stack(center_path), shown)


def fractions(outcome: Outcome) -> dict:
    """One table row: the share of runs whose evaluated model / center ends in the wide basin (Wilson
    95 % interval), and the share of all workers that do."""
    s = outcome.setup
    row = {"algorithm": s.algorithm, "tau": s.tau, "pull": s.pull, "runs": s.runs, "workers": s.workers}
    for what, wide in (("model", outcome.evaluated_wide), ("center", outcome.center_wide),
                       ("worker", outcome.workers_wide.flatten())):
        share = proportion(int(wide.sum()), wide.numel())
        row.update({f"{what}_wide": share.fraction, f"{what}_low": share.low, f"{what}_high": share.high})
    return row


def versus(table: pd.DataFrame, reference: str, what: str = "model") -> pd.DataFrame:
    """Each row of `study`'s table against the ``reference`` algorithm's row at the same tau and pull (or its
    only row): the difference in the wide share of ``what`` and Fisher's exact test (``significant``: p < 0.05)."""
    ref = table[table["algorithm"] == reference]
    rows = []
    for _, row in table[table["algorithm"] != reference].iterrows():
        match = ref[(ref["tau"] == row["tau"]) & (ref["pull"] == row["pull"])]
        other = (match if len(match) else ref).iloc[0]
        k_a, k_b = round(row[f"{what}_wide"] * row["runs"]), round(other[f"{what}_wide"] * other["runs"])
        p = fisher(k_a, int(row["runs"]), k_b, int(other["runs"]))
        rows.append({"algorithm": row["algorithm"], "tau": row["tau"], "pull": row["pull"],
                     f"{what}_wide": row[f"{what}_wide"], f"{reference}_wide": other[f"{what}_wide"],
                     "difference": row[f"{what}_wide"] - other[f"{what}_wide"], "p": p, "significant": p < ALPHA})
    return pd.DataFrame(rows)


def setup_key(setup: Setup) -> str:
    """A stable file name for a setup's cached table row (``weighting`` counts only when it is not the default,
    so the keys of setups cached before the field existed are unchanged)."""
    fields = dataclasses.asdict(setup)
    if fields["weighting"] == "inverse_norm":
        del fields["weighting"]
    twin = "" if setup.weighting == "inverse_norm" else f"-{setup.weighting}"
    return f"{setup.algorithm}{twin}-tau{setup.tau}-pull{setup.pull:g}-{digest(fields)}"


def study(methods: tuple[str, ...] = METHODS, taus: tuple[int, ...] = (8,), pulls: tuple[float, ...] = (0.5,),
          base: Setup = Setup(), progress: bool = False, cache: str | os.PathLike | None = None
          ) -> tuple[pd.DataFrame, dict[tuple, Outcome]]:
    """Every method at every (tau, pull): the table of `fractions` and the outcomes by (method, tau, pull).
    DP runs once (no tau, no pull); LocalSGD once per tau (its pull is 1). With ``cache``, each setup's row
    is kept in ``cache/<setup key>.csv`` and reused (an interrupted study resumes); the outcomes (final
    points and paths) are returned only for the setups computed in this call."""
    from tqdm.auto import tqdm

    grid = []
    for method in methods:
        every_step = algorithms.get(method).communicates_every_step
        for tau in (taus[:1] if every_step else taus):
            for pull in (pulls[:1] if every_step or method == "localsgd" else pulls):
                grid.append(dataclasses.replace(base, algorithm=method, tau=tau, pull=pull))
    outcomes, rows = {}, []
    for setup in tqdm(grid, desc="two basins", disable=not progress):

        def compute(setup: Setup = setup) -> pd.DataFrame:
            outcomes[(setup.algorithm, setup.tau, setup.pull)] = outcome = simulate(setup)
            return pd.DataFrame([fractions(outcome)])

        rows.append(cached_csv(None if cache is None else Path(cache) / f"{setup_key(setup)}.csv", compute))
    return pd.concat(rows, ignore_index=True), outcomes


__all__ = ["METHODS", "Outcome", "Setup", "fractions", "setup_key", "simulate", "study", "versus"]
