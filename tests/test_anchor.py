"""The MNIST-1D anchor command in quick mode: it runs, reports next to the published numbers, and resumes."""

from __future__ import annotations

import pandas as pd

import grawa_sim.results.sweep  # noqa: F401  (binds sweep's log stream at collection, see test_cli.py)
from grawa_sim.algorithms import COMPARED
from grawa_sim.cli.main import main
from grawa_sim.experiments.anchor import SINGLE_MODELS


def test_anchor_quick_reports_and_resumes(tmp_path, capsys):
    out = tmp_path / "anchor"
    args = ["anchor", "--quick", "--out", str(out), "--figures", str(tmp_path / "fig"), "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "published" in captured.out and "CNN target >= 0.93" in captured.out
    singles = pd.read_csv(out / "single" / "anchor.csv", index_col=0)
    assert list(singles.index) == list(SINGLE_MODELS)
    assert list(singles["published"].iloc[:3]) == [0.32, 0.68, 0.94] and singles["published"].isna().iloc[3]
    assert singles["test_acc_mean"].between(0, 1).all()
    ensemble = pd.read_csv(out / "ensemble" / "anchor.csv", index_col=0)
    assert sorted(ensemble.index) == sorted([*COMPARED, "mgrawa+uniform", "lgrawa+uniform"])  # GRAWA's twins
    assert ensemble.loc["localsgd", "diff_vs_ref"] == 0 and "p_holm" in ensemble  # paired against LocalSGD
    assert (tmp_path / "fig" / "anchor_mnist1d.png").stat().st_size > 0
    assert (tmp_path / "fig" / "anchor_ensemble.csv").is_file() and (tmp_path / "fig" / "anchor_single.csv").is_file()
    assert main(args) == 0
    assert captured.err.count("running") == 4 + 8
    assert capsys.readouterr().err.count("done before, reused") == 4 + 8


def test_anchor_rejects_bad_seeds(capsys):
    assert main(["anchor", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: seeds: must be >= 1")
