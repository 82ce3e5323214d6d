"""The notebooks' figures: PNG and PDF, one legend, every axis labelled, the band named, GRAWA's two
variants told apart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from grawa_sim.experiments import presets as experiments
from grawa_sim.plots import runs as plots  # noqa: E402


def histories(seeds: int = 2, algorithms=("mgrawa", "lgrawa", "dp")) -> pd.DataFrame:
    """Three evaluations per run, two shard settings, the fields the figures read."""
    rows = []
    for partition, alpha in (("iid", None), ("dirichlet", 0.1)):
        for algorithm in algorithms:
            for seed in range(seeds):
                run = f"{algorithm}-{partition}-{seed}"
                for i, step in enumerate((0, 32, 64)):
                    rows.append(dict(run=run, algorithm=algorithm, seed=seed, partition=partition, alpha=alpha,
                                     schedule="sync", straggler_prob=0.1 * (partition != "iid"),
                                     step=step, sim_time=0.1 * i + 0.01 * seed, test_acc=0.1 + 0.2 * i + 0.01 * seed,
                                     train_loss=2.0 / (1 + i + seed)))
    return pd.DataFrame(rows)


@pytest.fixture
def saved(monkeypatch):
    """The figures the plot functions hand to `plots.save` (they close them afterwards)."""
    figures = []
    original = plots.save

    def keep(fig, path):
        figures.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plots, "save", keep)
    return figures


def draw(kind: str, frame: pd.DataFrame, path):
    if kind == "comparison":
        return plots.comparison_figure(frame, path, "MNIST-1D, MLP, M = 8, τ = 32")
    if kind == "time_budget":
        labels = frame["schedule"] + ", " + frame["straggler_prob"].map(lambda p: "stragglers" if p else "none")
        return plots.panels_figure(frame, labels, path, x="sim_time", marker=0.2,
                                   marker_label="budget (0.2 simulated s)")
    return plots.panels_figure(frame, experiments.partition_label(frame), path)


KINDS = ["comparison", "time_budget", "noniid"]


@pytest.mark.parametrize("kind", KINDS)
def test_figure_is_saved_as_png_and_pdf_with_one_legend_and_labelled_axes(kind, tmp_path, saved):
    path = draw(kind, histories(), tmp_path / f"{kind}.png")
    assert path.stat().st_size > 5_000 and path.with_suffix(".pdf").stat().st_size > 5_000
    (fig,) = saved
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes), "one legend per figure"
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), "every axis is labelled"
    texts = [t.get_text() for t in fig.texts]
    assert plots.BAND in texts and "95 % t-interval" in plots.BAND, "the band is named"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"MGRAWA", "LGRAWA", "DP"} <= set(legend)


def test_one_seed_says_there_is_no_band(tmp_path, saved):
    draw("comparison", histories(seeds=1), tmp_path / "one.png")
    texts = [t.get_text() for t in saved[0].texts]
    assert plots.ONE_SEED in texts and plots.BAND not in texts
    assert not saved[0].axes[0].collections, "no band is drawn from one seed"


def test_time_budget_marker_is_in_the_legend(tmp_path, saved):
    draw("time_budget", histories(), tmp_path / "budget.png")
    legend = [t.get_text() for t in saved[0].legends[0].get_texts()]
    assert "budget (0.2 simulated s)" in legend


def test_noniid_panels_write_alpha_as_alpha(tmp_path, saved):
    draw("noniid", histories(), tmp_path / "noniid.png")
    assert [ax.get_title() for ax in saved[0].axes] == ["IID", "Dirichlet α = 0.1"]


def test_mgrawa_and_lgrawa_differ_in_colour_and_line_style(tmp_path, saved):
    draw("comparison", histories(), tmp_path / "styles.png")
    lines = {line.get_label(): line for line in saved[0].axes[0].get_lines()}
    mg, lg = lines["MGRAWA"], lines["LGRAWA"]
    assert mcolors.to_rgb(mg.get_color()) != mcolors.to_rgb(lg.get_color())
    assert mg.get_linestyle() != lg.get_linestyle()


def test_inline_shows_the_saved_png(tmp_path):
    path = draw("comparison", histories(), tmp_path / "inline.png")
    image = plots.inline(path)
    assert image.data == path.read_bytes() and image.format == "png"


def test_accuracy_bands_stay_inside_zero_and_one(tmp_path, saved):
    """Two seeds far apart give a t-interval wider than [0, 1] (t = 12.7 on one degree of freedom):
    the drawn band and the axis stay within the range an accuracy can take."""
    frame = histories()
    frame.loc[frame["seed"] == 1, "test_acc"] = 0.95
    frame.loc[frame["seed"] == 0, "test_acc"] = 0.05
    draw("noniid", frame, tmp_path / "n.png")
    for ax in saved[-1].axes:
        if ax.get_ylabel() != "test accuracy":
            continue
        assert ax.get_ylim() == (0, 1)
        for band in ax.collections:
            ys = [v[1] for path in band.get_paths() for v in path.vertices]
            assert min(ys) >= 0 and max(ys) <= 1
