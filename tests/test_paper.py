"""reproduce --paper: the paper's CIFAR setting, smoke-tested in quick mode on a synthetic CIFAR-10 folder."""

from __future__ import annotations

import pandas as pd
import pytest

from grawa_sim.cli.main import main
from grawa_sim.data import cifar
from grawa_sim.experiments import paper


def test_the_paper_grid_gives_every_method_the_same_budget():
    configs = paper.paper_configs("cifar10", data_dir="/nowhere")
    methods = {(c.algorithm, c.sam) for c in configs}
    assert ("dp", True) in methods and len(methods) == len(paper.COMPARED) + 1
    assert {c.workers for c in configs} == set(paper.WORKERS)
    assert len(configs) == len(methods) * len(paper.WORKERS) * paper.SEEDS
    assert {c.time_budget for c in configs} == {paper.BUDGET}
    assert {(c.model, c.batch_size, c.lr, c.momentum, c.weight_decay) for c in configs} == {
        ("resnet20", 128, 0.1, 0.9, 1e-4)}


def test_methods_separate_dp_from_dp_with_sam_and_tables_are_per_m():
    rows = [{"run": f"{a}{s}{m}{seed}", "algorithm": a, "sam": s, "workers": m, "seed": seed, "step": 10,
             "test_acc": 0.5 + 0.1 * s + 0.01 * seed + 0.001 * m, "test_loss": 1.0, "spread": 0.0}
            for a, s in (("dp", False), ("dp", True), ("mgrawa", False)) for m in (4, 8) for seed in range(3)]
    table = paper.paper_summary(pd.DataFrame(rows))
    assert list(table.index.get_level_values("workers").unique()) == [4, 8]
    assert table.loc[(4, "dp+sam"), "p_vs_best"] == 1.0  # the best of M = 4 is compared with itself
    assert table.loc[(8, "dp+sam"), "test_acc_mean"] == pytest.approx(0.5 + 0.1 + 0.01 * 1 + 0.001 * 8)  # mean seed 1
    assert paper.with_method(pd.DataFrame(rows))["test_error"].between(0, 1).all()


def test_reproduce_paper_quick_on_synthetic_cifar(tmp_path, capsys):
    root = tmp_path / "data"
    cifar.synthetic(root, "cifar10", train=128, test=32)
    code = main(["reproduce", "--paper", "cifar10", "--quick", "--data-dir", str(root), "--out", str(tmp_path / "out"),
                 "--figures", str(tmp_path / "figures"), "--no-progress"])
    assert code == 0
    assert (tmp_path / "figures" / "paper_cifar10.png").stat().st_size > 0
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary["algorithm"]) == {*paper.COMPARED, "dp+sam"}
    assert (summary["workers"] == 2).all()
    assert "dp+sam" in capsys.readouterr().out


def test_reproduce_paper_without_data_is_one_line(tmp_path, capsys):
    code = main(["reproduce", "--paper", "cifar10", "--quick", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out"), "--figures", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cifar" in err.lower()
