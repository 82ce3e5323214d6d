"""Flatness across methods trained to convergence: the runs, their flatness tables, the declared family.

Every method (DP, DP+SAM, LocalSGD, EASGD, LSGD, MGRAWA, LGRAWA) and GRAWA's uniform twin train the
comparison's setting (MNIST-1D, M = 8, B = 32, each algorithm's reference tau / lambda / p) on the 1-D CNN
and the batch-norm CNN under a cosine lr, lr_t = lr (1 + cos(pi t / T)) / 2, which reaches 0 at
T = ``STEPS``: each run ends where its lr has settled it. Then three models per run are measured
(`measure`): the uniform average of the workers, the algorithm's own center, and the average of the first
half of the workers (what the reference's flatness script measures): lambda_max, Hutchinson's trace, the
sum of Lanczos Ritz values (the authors' "trace") and epsilon-sharpness.

The declared family (`contrasts`), per net and measure (lambda_max and Hutchinson's trace of the average):
GRAWA - its twin (does the weighting find flatter optima?), GRAWA - DP and GRAWA - LocalSGD for both GRAWA
variants, paired by seed, Holm over every net, measure and contrast. The same family serves the matched
train-loss setting (`grawa_sim.experiments.flatness_matched`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd
from scipy import stats as sps

from grawa_sim import algorithms
from grawa_sim.config import Config, digest
from grawa_sim.core import stats
from grawa_sim.core.processes import process_pool
from grawa_sim.engine.problem import validate
from grawa_sim.experiments import protocol
from grawa_sim.experiments.presets import comparison_configs, method_name, with_twins
from grawa_sim.flatness import Settings
from grawa_sim.results.run_flatness import measure_tensors
from grawa_sim.results.storage import load_config, load_history, load_params, write_csv_atomic
from grawa_sim.results.sweep import run_key

METHODS = tuple((a, sam) for a in algorithms.COMPARED for sam in (False, True)
                if not sam or algorithms.get(a).takes_sam)  # dp, dp+sam, localsgd, ... in that order
NETS = ("cnn", "cnn_bn")
METRICS = ("loss", "lambda_max", "trace", "lanczos", "eps_sharpness")
SEEDS = 8
STEPS = 1500  # the cosine horizon: the lr is 0 at the end, where the train loss is still falling slowly
MEASURES = ("lambda_max", "trace")
CONTRASTS = tuple((g, other) for g in ("mgrawa", "lgrawa") for other in (f"{g}+uniform", "dp", "localsgd"))
# light enough for three models of 128 runs: power iteration, 30 Hutchinson probes, 40-step Lanczos from one
# start (its Ritz sum is smaller than the reference code's 100-step one), 5 ascent steps for epsilon-sharpness
SETTINGS = Settings(power_iters=60, power_tol=1e-3, trace_samples=30, lanczos_steps=40, lanczos_starts=1,
                    eps_steps=5)
QUICK_SETTINGS = Settings(power_iters=5, trace_samples=2, lanczos_steps=4, lanczos_starts=1, eps_steps=2)


def table_name(settings: Settings, half: bool = False) -> str:
    """The cache file of a run's flatness rows under ``settings`` (other settings, another file; with the
    ``half`` row, another file)."""
    return f"flatness-study-{digest(dataclasses.asdict(settings), 8)}{'-half' if half else ''}.csv"

# The authors' table (DenseNet-121 on CIFAR-100, 8 workers, 3 seeds): mean top eigenvalue / Ritz sum
PUBLISHED = pd.DataFrame({"lambda_max": [33.9, 28.5, 9.5, 10.8, 10.9, 13.3],
                          "ritz_sum": [436.0, 634.0, 194.0, 195.0, 165.0, 177.0]},
                         index=pd.Index(["dp", "dp+sam", "easgd", "lsgd", "mgrawa", "lgrawa"], name="method"))


def on_nets(quick: bool, seeds: int, nets: tuple[str, ...] = NETS, **change) -> list[Config]:
    """Every method of METHODS and GRAWA's uniform twin on every net in the comparison's setting, ``seeds``
    seeds, with ``change`` applied (quick: the comparison's 64 steps and one seed, whatever ``change``
    says of steps and eval_every). One twin serves both GRAWA variants: with uniform weights MGRAWA and
    LGRAWA are the same rule (tested bitwise in tests/test_control.py)."""
    base = comparison_configs(quick, seeds=seeds, twins=False)
    if quick:
        change = {k: v for k, v in change.items() if k not in ("steps", "eval_every")}
    out = []
    for net in nets:
        for algorithm, sam in METHODS:
            out += [dataclasses.replace(c, model=net, sam=sam, **change) for c in base if c.algorithm == algorithm]
    return [twin for c in out for twin in (with_twins([c]) if c.algorithm == "mgrawa" else [c])]


def configs(quick: bool, seeds: int = SEEDS, steps: int = STEPS, nets: tuple[str, ...] = NETS) -> list[Config]:
    """Every method and GRAWA's twin on both nets, ``seeds`` seeds, cosine lr to 0 at ``steps``
    (quick: 64 steps, one seed)."""
    return on_nets(quick, seeds, nets, lr_schedule="cosine", steps=steps, eval_every=max(1, steps // 20))


def measure(configs_: list[Config], out: str | os.PathLike, settings: Settings = SETTINGS,
            progress=None, jobs: int = 1, half: bool = False) -> pd.DataFrame:
    """The flatness rows (uniform average and center; with ``half``, also the average of the first half of
    the workers, as the reference's script measures) of every finished run of ``configs_`` under
    ``out/runs``, with the run's method, net, seed, final accuracies, train loss, steps and simulated
    time; cached per run and settings in ``out/flatness-study/<run key>-flatness-study-<settings
    digest>.csv`` (computed when missing, by ``jobs`` processes of one torch thread each; ``progress``: a
    tqdm-like wrapper)."""
    resolved = [validate(cfg) for cfg in configs_]
    paths = [Path(out) / "flatness-study" / f"{run_key(cfg)}-{table_name(settings, half)}" for cfg in resolved]
    missing = list(dict.fromkeys((run_key(cfg), str(path)) for cfg, path in zip(resolved, paths)
                                 if not path.is_file()))
    todo = [(str(Path(out) / "runs" / key), path, settings, half) for key, path in missing]
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import as_completed

        with process_pool(min(jobs, len(todo))) as pool:
            futures = [pool.submit(_measure_run, *job) for job in todo]
            for future in progress(as_completed(futures), total=len(futures)) if progress else as_completed(futures):
                future.result()
    else:
        for job in progress(todo) if progress else todo:
            _measure_run(*job)
    rows = []
    for cfg, path in zip(resolved, paths):
        final = load_history(Path(out) / "runs" / run_key(cfg)).iloc[-1]
        rows.append(pd.read_csv(path).assign(
            method=method_name(cfg.algorithm, cfg.sam, cfg.weighting), net=cfg.model, seed=cfg.seed,
            test_acc=final["test_acc"], train_acc=final["train_acc"], gap=final["train_acc"] - final["test_acc"],
            train_loss=final["train_loss"], steps=final["step"], sim_time=final.get("sim_time", float("nan")),
            run=run_key(cfg)))
    return pd.concat(rows, ignore_index=True)


def _measure_run(run_dir: str, path: str, settings: Settings, half: bool = False) -> None:
    """Measure one finished run (average and center, and ``half``) and store its rows at ``path``."""
    table = measure_tensors(load_config(run_dir), load_params(run_dir), metrics=METRICS, settings=settings,
                            workers=False, half=half)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(table, Path(path))


def summary(table: pd.DataFrame, row: str = "average",
            values: tuple[str, ...] = ("lambda_max", "trace", "ritz_sum", "eps_sharpness", "test_acc", "gap",
                                       "train_loss")
            ) -> pd.DataFrame:
    """Per net and method, for the ``row`` model (average or center): mean and 95 % half-width of each value."""
    part = table[table["model"] == row]
    columns = []
    for v in values:
        d = stats.describe(part, ["net", "method"], v)
        columns.append(d[["mean", "ci95"]].rename(columns={"mean": v, "ci95": f"{v}_ci95"}))
    n = stats.describe(part, ["net", "method"], values[0])["n"]
    return pd.concat([n, *columns], axis=1)


def contrasts(table: pd.DataFrame, row: str = "average", measures: tuple[str, ...] = MEASURES,
              family: str = "flatness") -> pd.DataFrame:
    """The declared family on the ``row`` model (`protocol.compare_by` per measure, paired by seed), Holm over
    every net, measure and contrast (negative: the first method is flatter). One twin serves both GRAWA
    variants."""
    part = table[table["model"] == row]
    runs = part.assign(algorithm=part["method"], sam=False, weighting=None)
    twin = runs[runs["method"] == "mgrawa+uniform"]
    runs = pd.concat([runs, twin.assign(algorithm="lgrawa+uniform", run=twin["run"] + "-as-lgrawa-twin")])
    tables = [protocol.compare_by(runs, protocol.Family(family, "localsgd", CONTRASTS, measure,
                                                        higher_is_better=False), "net", classes=None)
              .assign(measure=measure) for measure in measures]
    out = pd.concat(tables, ignore_index=True).rename(columns={"setting": "net"})
    out["p_holm"] = stats.holm(out["p"].to_numpy(float))
    out["significant_holm"] = out["p_holm"] < stats.ALPHA
    return out


def ranking_agreement(summary_: pd.DataFrame, net: str) -> pd.DataFrame:
    """Spearman's rho between the published means and ours (the methods both tables have), per metric, with its
    exact permutation p and the critical |rho| at 0.05 for that many methods (`stats.spearman_exact`)."""
    ours = summary_.loc[net]
    common = [m for m in PUBLISHED.index if m in ours.index]
    out = []
    for metric in ("lambda_max", "ritz_sum"):
        test = stats.spearman_exact(PUBLISHED.loc[common, metric], ours.loc[common, metric])
        out.append({"net": net, "metric": metric, "methods": len(common), "spearman_rho": test.rho, "p": test.p,
                    "critical_rho": test.critical})
    return pd.DataFrame(out)


def correlation(table: pd.DataFrame, x: str = "lambda_max", y: str = "test_acc", row: str = "average") -> dict:
    """Spearman's rho (and p) between ``x`` and ``y`` over all runs, per net and pooled."""
    part = table[table["model"] == row]
    out = {}
    for name, group in [*part.groupby("net", sort=False), ("all", part)]:
        rho, p = sps.spearmanr(group[x], group[y])
        out[name] = (float(rho), float(p), len(group))
    return out


def average_params(out: str | os.PathLike, config: Config) -> tuple[dict, object]:
    """(the uniform average of the workers of a finished run, its resolved config)."""
    cfg = validate(config)
    params = load_params(Path(out) / "runs" / run_key(cfg))
    return {n: w.mean(0) for n, w in params["workers"].items()}, cfg

