"""Figure helpers shared by the notebooks and `python -m grawa_sim reproduce`."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from grawa_sim import algorithms

STYLES = {method: style for kind in algorithms.classes().values() for method, style in kind.styles().items()}
COLORS = {method: style.color for method, style in STYLES.items()}
LINESTYLES = {method: style.linestyle for method, style in STYLES.items()}
LABELS = {method: style.label for method, style in STYLES.items()}
BAND = "line: mean over seeds; band: 95 % t-interval of the mean; thin lines: single seeds"
ONE_SEED = "one seed per algorithm: no interval over seeds"


def curves(histories: pd.DataFrame, metric: str = "test_acc", x: str = "step", ax=None, title: str | None = None,
           legend: bool = True):
    """One line per algorithm: the mean over seeds, a band for the 95 % t-interval of the mean, and a
    thin line per seed (so a collapsed seed shows instead of being averaged away).

    Seeds are aligned on the evaluation index (their x values may differ slightly, e.g. sim_time).
    """
    from grawa_sim.core.stats import interval

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for algorithm, group in histories.groupby("algorithm", sort=False):
        group = group.assign(_row=group.groupby("run").cumcount())
        color, style = COLORS.get(algorithm), LINESTYLES.get(algorithm, "-")
        rows = group.groupby("_row")
        xs = rows[x].mean()
        ivs = [interval(v) for _, v in rows[metric]]
        mean = [iv.mean for iv in ivs]
        ax.plot(xs, mean, label=LABELS.get(algorithm, algorithm), color=color, ls=style, lw=1.8)
        if group["seed"].nunique() > 1:
            low, high = np.array([iv.low for iv in ivs]), np.array([iv.high for iv in ivs])
            if metric.endswith("_acc"):  # an accuracy lies in [0, 1]; so does the band drawn for it
                low, high = low.clip(0, 1), high.clip(0, 1)
            ax.fill_between(xs, low, high, color=color, alpha=0.15, lw=0)
            for _, one in group.groupby("run"):
                ax.plot(one[x], one[metric], color=color, ls=style, lw=0.5, alpha=0.45)
    ax.set_xlabel({"step": "local steps per worker", "sim_time": "simulated seconds"}.get(x, x))
    ax.set_ylabel({"test_acc": "test accuracy", "train_loss": "train loss"}.get(metric, metric.replace("_", " ")))
    if title:
        ax.set_title(title)
    if metric.endswith("_acc"):
        ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()
    return ax


def caption(histories: pd.DataFrame) -> str:
    """What the lines and bands of `curves` are: `BAND` when some algorithm has several seeds, else `ONE_SEED`."""
    several = len(histories) and histories.groupby("algorithm")["seed"].nunique().max() > 1
    return BAND if several else ONE_SEED


def figure_legend(fig, ax, histories: pd.DataFrame, columns: int = 7) -> None:
    """One legend for the whole figure (the handles of ``ax``), below the panels, with the `caption`."""
    handles, labels = ax.get_legend_handles_labels()
    rows = max(1, -(-len(labels) // columns))
    fig.legend(handles, labels, loc="upper center", ncol=-(-len(labels) // rows), bbox_to_anchor=(0.5, -0.02),
               frameon=False)
    fig.text(0.5, -0.04 - 0.055 * rows, caption(histories), ha="center", va="top", fontsize=8, color="0.3")


def shared_legend(fig, axes, **where) -> None:
    """One legend for the whole figure from every panel's handles (each label once), above the panels
    unless ``where`` says otherwise."""
    entries: dict = {}
    for ax in np.ravel(axes):
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    where = {"loc": "upper center", "bbox_to_anchor": (0.5, 1.04), "fontsize": 8, **where}
    fig.legend(list(entries.values()), list(entries), ncol=len(entries), **where)


def inline(path: str | Path):
    """The saved PNG at ``path`` as a notebook display object (the last expression of a cell shows it)."""
    from IPython.display import Image

    return Image(filename=str(path))


def save(fig, path: str | Path) -> Path:
    """Save a figure as PNG and, beside it, PDF (each written to a temporary name, then renamed)."""
    from grawa_sim.core.folders import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path, path.with_suffix(".pdf")):
        kind = target.suffix[1:]
        stamp = {"CreationDate": None} if kind == "pdf" else {}  # the same figure gives the same file
        write_atomic(target, lambda tmp, kind=kind, stamp=stamp: fig.savefig(tmp, format=kind, dpi=120,
                                                                             bbox_inches="tight", metadata=stamp))
    return path


def comparison_figure(histories: pd.DataFrame, path: str | Path, title: str) -> Path:
    """Test accuracy and train loss of the evaluated model against local steps, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    curves(histories, "test_acc", ax=left, title=title, legend=False)
    curves(histories, "train_loss", ax=right, title="train loss (evaluated model)", legend=False)
    right.set_yscale("log")
    figure_legend(fig, left, histories)
    out = save(fig, path)
    plt.close(fig)
    return out


def panels_figure(histories: pd.DataFrame, labels: pd.Series, path: str | Path, x: str = "step",
                  marker: float | None = None, marker_label: str | None = None, metric: str = "test_acc") -> Path:
    """``metric`` (default test accuracy) against ``x``, one panel per distinct label (in order of
    appearance), a dotted vertical line at ``marker`` (named ``marker_label`` in the legend)."""
    names = list(dict.fromkeys(labels))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), sharey=True)
    panels = list(axes) if len(names) > 1 else [axes]
    for ax, name in zip(panels, names):
        curves(histories[labels == name], metric, x=x, ax=ax, title=name, legend=False)
        if marker is not None:
            ax.axvline(marker, color="k", lw=0.8, ls=":", label=marker_label)
    figure_legend(fig, panels[0], histories)
    out = save(fig, path)
    plt.close(fig)
    return out


def paper_figure(histories: pd.DataFrame, path: str | Path) -> Path:
    """The paper's setting: test error against simulated time, one panel per number of workers M
    (``histories`` with a ``test_error`` column, as `experiments.paper.with_method` gives)."""
    return panels_figure(histories, "M = " + histories["workers"].astype(str), path, x="sim_time",
                         metric="test_error")


def anchor_figure(singles: pd.DataFrame, ensemble: pd.DataFrame, path: str | Path, reference: float) -> Path:
    """Left: single-worker test accuracy per model next to the published one; right: the CNN with M
    workers per algorithm, ``reference`` (the published one-worker CNN accuracy) dotted."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 3]})
    x = range(len(singles))
    left.bar([i - 0.2 for i in x], singles["test_acc_mean"], 0.4, yerr=singles["test_acc_std"].fillna(0),
             label="grawa-sim (mean, std over seeds)", color="tab:blue")
    left.bar([i + 0.2 for i in x], singles["published"], 0.4, label="published (MNIST-1D)", color="tab:gray")
    left.set_xticks(list(x), list(singles.index))
    left.set_ylabel("test accuracy")
    left.set_title("MNIST-1D, one worker")
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    names = list(ensemble.index)
    right.bar(range(len(names)), ensemble["test_acc_mean"], yerr=ensemble["test_acc_std"].fillna(0),
              color=[COLORS.get(n, "tab:blue") for n in names])
    right.set_xticks(range(len(names)), [LABELS.get(n, n) for n in names])
    right.axhline(reference, color="k", lw=0.8, ls=":", label=f"published CNN, one worker ({reference:.2f})")
    if "cnn" in singles.index:
        ours = float(singles.loc["cnn", "test_acc_mean"])
        right.axhline(ours, color="tab:blue", lw=0.8, ls="--", label=f"our CNN, one worker ({ours:.3f})")
    right.set_ylim(0.0, 1.0)
    right.set_title("MNIST-1D, 1-D CNN, M = 8 workers")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="y")
    out = save(fig, path)
    plt.close(fig)
    return out


def budget_latency_figure(accuracy: pd.DataFrame, times: pd.DataFrame, latencies: dict[str, float],
                          path: str | Path, level: float = 0.9) -> Path:
    """One column per straggler mode: top, test accuracy at the long budget (filled) and the short one
    (hollow) against the latency α; bottom, the simulated seconds to ``level`` of the best accuracy (runs
    that never got there are left out and counted in the table). Mean ± 95 % interval over seeds."""
    settings = list(dict.fromkeys(accuracy.index.get_level_values("setting")))
    modes = list(dict.fromkeys(s.split(", ", 1)[1] for s in settings))
    budgets = sorted(set(accuracy.index.get_level_values("budget")))
    methods = list(dict.fromkeys(accuracy.index.get_level_values("method")))
    fig, axes = plt.subplots(2, len(modes), figsize=(4.6 * len(modes), 7.2), squeeze=False, sharex=True)
    for col, mode in enumerate(modes):
        top, bottom = axes[0][col], axes[1][col]
        clocks = [s.split(", ", 1)[0] for s in settings if s.split(", ", 1)[1] == mode]
        alphas = np.array([latencies[c] for c in clocks])
        for method in methods:
            color, style = COLORS.get(method), LINESTYLES.get(method, "-")
            for budget, filled in ((budgets[-1], True), (budgets[0], False)):
                rows = accuracy.xs((method, budget), level=("method", "budget")).reindex(
                    [f"{c}, {mode}" for c in clocks])
                top.errorbar(alphas, rows["test_acc_mean_finished"], yerr=rows["test_acc_ci95_finished"],
                             color=color, ls=style if filled else ":", marker="o", ms=4, capsize=2,
                             mfc=color if filled else "white",
                             label=LABELS.get(method, method) if filled else None)
            t = times.xs((method, level), level=("method", "level")).reindex([f"{c}, {mode}" for c in clocks])
            bottom.errorbar(alphas, t["time_mean"], yerr=t["time_ci95"], color=color, ls=style, marker="o", ms=4,
                            capsize=2)
        top.set_title(f"stragglers: {mode}")
        bottom.set_xscale("log")
        bottom.set_xlabel("latency α (s)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test accuracy at {budgets[-1]:g} s (filled), {budgets[0]:g} s (hollow)")
    axes[1][0].set_ylabel(f"simulated s to {level:.0%} of the best")
    shared_legend(fig, axes[0], loc="upper center", bbox_to_anchor=(0.5, 1.0))
    fig.text(0.5, -0.01, "bars: 95 % t-intervals over seeds", ha="center", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out = save(fig, path)
    plt.close(fig)
    return out
