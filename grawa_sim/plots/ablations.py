"""Figures of the ablation studies: scalability in M (notebook 06) and fewer communications (notebook 07).

Every panel draws one line per algorithm: the mean over seeds with error bars for the 95 % t-interval
(`algorithm_lines`); the tables come from grawa_sim.experiments.scalability / communication.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grawa_sim.plots.runs import COLORS, LABELS, LINESTYLES, save, shared_legend

ERRORBARS = "points: mean over seeds; error bars: 95 % t-interval of the mean"
WORKERS_LABEL = "M (workers)"


def algorithm_lines(ax, table: pd.DataFrame, x: str, mean: str, ci: str | None = None, log2_x: bool = True,
                    label_suffix: str = "", **style) -> None:
    """One line per ``algorithm`` of the flat ``table``: ``mean`` against ``x`` with ``ci`` (a 95 %
    half-width) as error bars; a log2 x axis with a tick at every value when ``log2_x``."""
    for name, group in table.groupby("algorithm", sort=False):
        group = group.sort_values(x)
        err = None if ci is None else group[ci].fillna(0).to_numpy()
        ax.errorbar(group[x], group[mean], yerr=err, capsize=3, marker="o", ms=4, color=COLORS.get(name, "k"),
                    ls=style.get("ls", LINESTYLES.get(name, "-")), label=LABELS.get(name, name) + label_suffix,
                    alpha=style.get("alpha", 1.0))
    if log2_x:
        values = sorted(table[x].dropna().unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.grid(alpha=0.3)


def _finish(fig, axes, path: str | Path, note: str = ERRORBARS, top: float = 1.08) -> Path:
    """One legend above the panels ``axes`` (each label once, at height ``top`` of the figure), ``note``
    below them; saved as PNG and PDF."""
    shared_legend(fig, axes, bbox_to_anchor=(0.5, top))
    fig.text(0.5, -0.04, note, ha="center", fontsize=8, color="0.3")
    out = save(fig, path)
    plt.close(fig)
    return out


def _panels(frame: pd.DataFrame, column: str):
    return [(name, frame[frame[column] == name]) for name in dict.fromkeys(frame[column])]


def accuracy_figure(accuracy: pd.DataFrame, path: str | Path) -> Path:
    """Final test accuracy against M, one panel per regime (`scalability.accuracy`)."""
    flat = accuracy.reset_index()
    regimes = _panels(flat, "regime")
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.2 * len(regimes), 3.8), sharey=True, squeeze=False)
    for ax, (regime, part) in zip(axes[0], regimes):
        algorithm_lines(ax, part, "workers", "test_acc_mean", "test_acc_ci95")
        ax.set_title(regime)
        ax.set_xlabel(WORKERS_LABEL)
    axes[0][0].set_ylabel("final test accuracy")
    return _finish(fig, axes, path)


def time_figure(times: pd.DataFrame, path: str | Path, target: float) -> Path:
    """Per regime (columns): simulated seconds to ``target`` test accuracy against M (top) and the speed-up
    over the smallest M with the ideal line M / M_min (bottom) (`scalability.time_to_target`)."""
    flat = times.reset_index()
    regimes = _panels(flat, "regime")
    fig, axes = plt.subplots(2, len(regimes), figsize=(5.2 * len(regimes), 7.2), squeeze=False,
                             gridspec_kw={"wspace": 0.3})
    for column, (regime, part) in enumerate(regimes):
        top, bottom = axes[0][column], axes[1][column]
        algorithm_lines(top, part[part["defined"]], "workers", "mean", "ci95")
        top.set_yscale("log")
        top.set_title(f"{regime}: time to test accuracy {target:g}")
        top.set_ylabel("simulated seconds")
        algorithm_lines(bottom, part[part["speedup"].notna()], "workers", "speedup")
        ideal = part.drop_duplicates("workers").sort_values("workers")
        bottom.plot(ideal["workers"], ideal["ideal"], color="k", lw=0.8, ls=":", label="ideal (M / M_min)")
        bottom.set_yscale("log", base=2)
        bottom.set_ylabel("speed-up over the smallest M")
        for ax in (top, bottom):
            ax.set_xlabel(WORKERS_LABEL)
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(ideal["workers"]), [str(m) for m in ideal["workers"]])
    return _finish(fig, axes, path, ERRORBARS + "; only settings where every seed reached the target; "
                                                "speed-up: ratio of the mean times", top=1.03)


def cost_figure(comm: pd.DataFrame, entropy: pd.DataFrame, path: str | Path) -> Path:
    """Bytes sent over the whole run against M, one panel per regime (`scalability.comm_bytes`), and the
    entropy of GRAWA's weights as a share of its maximum log M against M (`scalability.entropy_summary`)."""
    flat, ent = comm.reset_index(), entropy.reset_index()
    regimes = _panels(flat, "regime")
    fig, axes = plt.subplots(1, len(regimes) + 1, figsize=(5.2 * (len(regimes) + 1), 3.8), squeeze=False,
                             gridspec_kw={"wspace": 0.3})
    for ax, (regime, part) in zip(axes[0], regimes):
        algorithm_lines(ax, part, "workers", "comm_bytes_mean")
        ax.set_yscale("log")
        ax.set_title(f"{regime}: bytes sent (all workers)")
        ax.set_xlabel(WORKERS_LABEL)
    ax = axes[0][-1]
    for (regime, part), ls in zip(_panels(ent, "regime"), ("-", "--", ":")):
        algorithm_lines(ax, part, "workers", "ratio_mean", "ratio_ci95", ls=ls, label_suffix=f" ({regime})")
    ax.axhline(1.0, color="k", lw=0.8, ls=":", label="H = log M (equal weights)")
    ax.set_title("entropy of GRAWA's weights (mean over rounds)")
    ax.set_xlabel(WORKERS_LABEL)
    ax.set_ylabel("H / log M, H = −Σ w log w")
    ax.legend(fontsize=7)
    return _finish(fig, axes[0][:-1], path)


def _reference_band(ax, reference: pd.DataFrame) -> None:
    """A horizontal line (mean) and band (95 % interval) per reference algorithm (an interval table)."""
    for name, row in reference.iterrows():
        color = COLORS.get(name, "k")
        ax.axhline(row["test_acc_mean"], color=color, lw=1.2, ls=LINESTYLES.get(name, "-"),
                   label=f"{LABELS.get(name, name)} (every step)")
        if not np.isnan(row["test_acc_ci95"]):
            ax.axhspan(row["test_acc_low"], row["test_acc_high"], color=color, alpha=0.12, lw=0)


def tau_figure(accuracy: pd.DataFrame, reference: pd.DataFrame, costs: pd.DataFrame, path: str | Path,
               target: float, steps: int) -> Path:
    """Final test accuracy against τ with the reference band (`communication.accuracy`,
    `communication.reference_accuracy`), and the rounds and bytes to ``target`` test accuracy against τ
    (`communication.cost_to_target`; the reference's cost dotted)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), squeeze=False, gridspec_kw={"wspace": 0.3})
    acc, rounds, sent = axes[0]
    algorithm_lines(acc, accuracy.reset_index(), "tau", "test_acc_mean", "test_acc_ci95")
    _reference_band(acc, reference)
    acc.set_ylabel(f"test accuracy after {steps} local steps")
    flat = costs.reset_index()
    periodic, every = flat[flat["tau"].notna() & flat["defined"]], flat[flat["tau"].isna() & flat["defined"]]
    for ax, mean, ci, ylabel in ((rounds, "rounds_mean", "rounds_ci95", f"rounds to test accuracy {target:g}"),
                                 (sent, "bytes_mean", "bytes_ci95", f"bytes sent to test accuracy {target:g}")):
        algorithm_lines(ax, periodic, "tau", mean, ci)
        for name, row in every.set_index("algorithm").iterrows():
            ax.axhline(row[mean], color=COLORS.get(name, "k"), lw=1.0, ls=":",
                       label=f"{LABELS.get(name, name)} (every step)")
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
    for ax in axes[0]:
        ax.set_xlabel("τ (local steps between rounds)")
        if len(accuracy):
            values = sorted(accuracy.reset_index()["tau"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [f"{v:g}" for v in values])
    return _finish(fig, axes, path, ERRORBARS + "; rounds and bytes: only settings where every seed reached "
                                                "the target; band: the reference's 95 % interval")


def pull_figure(accuracy: pd.DataFrame, reference: pd.DataFrame, path: str | Path, steps: int) -> Path:
    """Final test accuracy against the pull λ at each algorithm's reference τ, with the reference band."""
    fig, axes = plt.subplots(1, 1, figsize=(6, 3.8), squeeze=False)
    ax = axes[0][0]
    algorithm_lines(ax, accuracy.reset_index(), "pull", "test_acc_mean", "test_acc_ci95", log2_x=False)
    _reference_band(ax, reference)
    ax.set_xlabel("λ (pull of a round; each algorithm at its reference τ)")
    ax.set_ylabel(f"test accuracy after {steps} local steps")
    return _finish(fig, axes, path, ERRORBARS + "; band: the reference's 95 % interval")
