"""The prepared GPU check runs end to end on the CPU with tiny sizes; errors and caps land in the report."""

from __future__ import annotations

import json

import pytest
import torch

from grawa_sim.bench import gpu as bench_gpu
from grawa_sim.cli.main import main


def test_check_on_cpu_writes_the_report(tmp_path):
    out = tmp_path / "gpu.json"
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        report = bench_gpu.check("cpu", models=("nosuchmodel", "mlp"), workers=(2,), total_cap=15, hard_cap=None,
                                 repeats=2, flatness_models=("mlp",), flatness_workers=2, flatness_iters=3,
                                 flatness_train_steps=4, out=out, log=f)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    bad, mlp = report["training"]
    assert (mlp["model"], mlp["workers"]) == ("mlp", 2)
    for name in ("vmap", "loop"):
        assert mlp[name]["steps_per_s"] > 0 and mlp[name]["repeats"] >= 1 and mlp[name]["steps"] >= 1
    assert mlp["vmap_over_loop"] == pytest.approx(mlp["vmap_steps_per_s"] / mlp["loop_steps_per_s"], rel=0.02, abs=0.01)
    assert "memory_note" in mlp  # peak memory is a CUDA counter
    assert "error" in bad and bad["model"] == "nosuchmodel"  # recorded, not fatal
    (flat,) = report["flatness"]
    if "error" not in flat and "skipped" not in flat:
        assert len(flat["ours_vmap_lambda_max"]) == 2 and flat["ours_vmap_s_per_worker"] > 0
        if "pyhessian_note" not in flat:
            assert flat["lambda_agreement_pct"] < 1e-2
    text = log.read_text()
    assert "vmap/loop" in text and "nosuchmodel" in text


def test_measure_caps_a_slow_contender():
    calls = {"fast": 0, "slow": 0}

    def fast(n):
        calls["fast"] += n

    def slow(n):
        import time

        time.sleep(0.2 * n)
        calls["slow"] += n

    out = bench_gpu.measure({"fast": fast, "slow": slow}, torch.device("cpu"), budget=0.5, repeats=3)
    assert out["slow"]["steps"] == 1 and out["slow"]["repeats"] == 1 and "note" in out["slow"]
    assert out["fast"]["repeats"] >= 1 and out["fast"]["steps_per_s"] > out["slow"]["steps_per_s"]


def test_cells_run_goals_first():
    order = bench_gpu.training_order(("mlp", "resnet20"), (8, 64, 256))
    assert order[:4] == [("mlp", 8), ("mlp", 64), ("resnet20", 8), ("resnet20", 64)]
    assert order[4:] == [("mlp", 256), ("resnet20", 256)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_without_cuda_is_a_one_line_error(capsys, tmp_path):
    assert main(["bench", "--gpu", "--out", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: gpu:") and "CUDA" in err[0]
    assert not (tmp_path / "g.json").exists()
