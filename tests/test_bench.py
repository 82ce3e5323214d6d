"""The benchmark harness runs and reports side-by-side ratios (speed itself is never asserted)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from grawa_sim.bench import training as bench


def test_backends_rows_for_vector_and_image_models():
    out = io.StringIO()
    rows = bench.backends(("mlp", "resnet20"), (2,), budget=0.01, repeats=1, out=out)
    assert [r["model"] for r in rows] == ["mlp", "resnet20"]
    assert [json.loads(line)["model"] for line in out.getvalue().splitlines()] == ["mlp", "resnet20"]
    for r in rows:
        assert r["vmap_steps_per_s"] > 0 and r["loop_steps_per_s"] > 0
        ratio = r["vmap_steps_per_s"] / r["loop_steps_per_s"]
        assert abs(r["vmap_over_loop"] - ratio) < 0.02 * ratio + 0.01
    assert [r["auto"] for r in rows] == ["vmap", "unrolled"]  # 2-D convolutions on the CPU run unrolled
    assert rows[0]["vmap_over_plain_MB"] > 0 and "vmap_over_plain_MB" not in rows[1]  # plain PyTorch: MNIST-1D only


def test_step_costs_and_batched_runs_report_their_ratios():
    out = io.StringIO()
    rows = bench.step_costs(workers=(2,), repeats=1, out=out)
    assert [(r["what"], r.get("algorithm")) for r in rows] == [("step", None), ("round", "mgrawa"), ("round", "lgrawa")]
    step = rows[0]
    ratio = step["single_MB_steps_per_s"] / step["stacked_steps_per_s"]
    assert abs(step["stacked_over_single"] - ratio) < 0.02 * ratio + 0.01
    ratio = step["plain_MB_steps_per_s"] / step["stacked_steps_per_s"]
    assert abs(step["stacked_over_plain"] - ratio) < 0.02 * ratio + 0.01
    assert all(r["round_over_steps"] > 0 for r in rows[1:])
    assert len(out.getvalue().splitlines()) == 3
    batched = bench.batched_runs(("mlp",), seeds=2, steps=8, repeats=1, out=io.StringIO())
    assert batched[0]["runs"] == 2 and batched[0]["batched_s"] > 0
    assert abs(batched[0]["batched_speedup"] - batched[0]["one_by_one_s"] / batched[0]["batched_s"]) < 0.05


def test_memory_reports_the_peak_of_each_worker_count_and_their_slope():
    out = io.StringIO()
    row = bench.memory(("mlp",), workers=(4, 12), steps=2, out=out)[0]
    assert row["workers"] == [4, 12] and all(k > 100_000 for k in row["peak_kib"])  # a torch process: > 100 MiB
    assert row["kib_per_worker"] == round((row["peak_kib"][1] - row["peak_kib"][0]) / 8, 1)
    assert json.loads(out.getvalue())["model"] == "mlp"


def test_parallel_sweeps_times_four_ways_and_their_speedups():
    out = io.StringIO()
    row = bench.parallel_sweeps(seeds=2, steps=32, repeats=1, algorithms_=("dp", "localsgd"), workers=2, out=out)
    assert row["runs"] == 4 and row["steps"] == 32
    ways = ("jobs2", "jobs1_batched", "jobs2_batched")
    assert all(row[f"{k}_s"] > 0 for k in ("jobs1", *ways))
    for k in ways:
        assert abs(row[f"{k}_speedup"] - row["jobs1_s"] / row[f"{k}_s"]) < 0.02 * row[f"{k}_speedup"] + 0.01
    assert json.loads(out.getvalue()) == row


def test_calibration_fit_recovers_the_clocks_alpha_and_beta():
    """Timings made by the clock's own α-β formula (engine/clock.py) give back its α and β."""
    from grawa_sim.bench.calibrate import fit_alpha_beta
    from grawa_sim.core.collectives import Collective
    from grawa_sim.engine.clock import collective_time

    alpha, bandwidth = 2e-4, 5e8
    rows = [{"processes": m, "bytes": 4 * v,
             "seconds": collective_time(Collective("all_reduce", v), m, bandwidth, alpha)}
            for m in (2, 4, 8) for v in (1_000, 10_000, 100_000, 1_000_000)]
    fit = fit_alpha_beta(rows)
    assert fit["alpha_s"] == pytest.approx(alpha, rel=1e-9)
    assert fit["bandwidth_bytes_per_s"] == pytest.approx(bandwidth, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["median_relative_error"] < 1e-9
    with pytest.raises(ValueError, match="^rows: "):
        fit_alpha_beta(rows[:1])


def test_calibrate_times_gloo_all_reduce_and_fits(capsys):
    from grawa_sim.bench.calibrate import calibrate

    result = calibrate(processes=(2,), sizes=(1_000, 100_000), repeats=3)
    assert [(r["processes"], r["bytes"]) for r in result["rows"]] == [(2, 4_000), (2, 400_000)]
    assert all(r["seconds"] > 0 for r in result["rows"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and '"fit"' in lines[-1]


def test_the_plain_baseline_trains_the_runs_own_model_from_the_same_start():
    from grawa_sim import Config
    from grawa_sim.bench.plain import PlainTrainer, plain_run
    from grawa_sim.engine.problem import model_and_data

    for model in ("mlp", "cnn"):
        ours, _ = model_and_data(Config(algorithm="dp", workers=1, model=model, seed=3))
        theirs = PlainTrainer(model, 32, seed=3).model
        assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    rows = plain_run("mlp", batch_size=64, steps=60, eval_every=30)
    assert [r["step"] for r in rows] == [0, 30, 60]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and 0 < rows[-1]["test_acc"] <= 1


def test_end_to_end_and_the_step_profile_report_consistent_ratios():
    from grawa_sim.bench import baselines

    out = io.StringIO()
    rows = baselines.end_to_end((("mlp", 2, 40), ("mlp", 1, 8)), eval_every=20, repeats=1, out=out)
    assert [(r["workers"], r["plain_batch"]) for r in rows] == [(2, 64), (1, 100)]
    for r in rows:
        assert r["run_over_plain"] == pytest.approx(r["run_s"] / r["plain_s"], rel=0.05)
        assert r["run_vmap_over_plain"] == pytest.approx(r["run_vmap_s"] / r["plain_s"], rel=0.05)
    assert rows[0]["run_over_engine_m1"] > 0 and "run_over_engine_m1" not in rows[1]
    assert len(out.getvalue().splitlines()) == 2
    row = baselines.step_profile("mlp", 2, steps=40, eval_every=20, repeats=1, out=io.StringIO())
    for side, count in (("run", 9), ("plain", 6)):
        parts = {k: v for k, v in row.items() if k.startswith(f"{side}_") and k.endswith("_ms")}
        assert len(parts) == count, parts  # the parts and the rest (python_other)
        assert sum(parts.values()) == pytest.approx(row[f"{side}_ms_per_step"], abs=1e-3)
        assert parts[f"{side}_forward_backward_ms"] > 0 and parts[f"{side}_evaluation_ms"] > 0
    assert row["run_round_ms"] > 0 and row["run_clock_ms"] > 0  # 40 steps of tau = 32: one round
    from grawa_sim.engine.clock import Clock
    from grawa_sim.engine.ensemble import VmapEngine

    assert Clock.ticks.__qualname__ == "Clock.ticks" and VmapEngine.local_step.__qualname__ == "VmapEngine.local_step"


def test_the_forward_backward_floor_times_both_passes_and_reports_their_ratio():
    from grawa_sim.bench import baselines

    for model in ("mlp", "cnn"):  # at M = 1 both contenders compute the same gradients (rounding apart)
        passes = baselines._passes(model, 1, 6, calls=1)
        ours, theirs = passes["stacked"](), passes["plain"]()
        assert len(ours) == len(theirs) and all(o.shape[0] == 1 for o in ours)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a[0], b, rtol=1e-5, atol=1e-6)
    rows = baselines.forward_backward((("mlp", 2), ("cnn", 3)), batch_size=4, calls=2, repeats=1, out=io.StringIO())
    assert [(r["model"], r["workers"]) for r in rows] == [("mlp", 2), ("cnn", 3)]
    for r in rows:
        assert r["stacked_ms"] > 0 and r["plain_MB_ms"] > 0
        assert r["stacked_over_plain"] == pytest.approx(r["stacked_ms"] / r["plain_MB_ms"], rel=0.01)


def test_the_vmap_only_contender_turns_the_written_out_forward_off_and_back_on():
    from grawa_sim.bench.baselines import vmap_only
    from grawa_sim.engine import ensemble
    from grawa_sim.models.registry import build

    with vmap_only():
        assert ensemble.batched(build("mlp", (40,), 10)) is None
    assert ensemble.batched(build("mlp", (40,), 10)) is not None


def test_compiled_steps_count_their_graphs_and_stay_within_float32_rounding():
    """torch.compile of the stacked forward (aot_eager here: no C++ build in the test) trains the same numbers."""
    from grawa_sim.bench.compiled import compile_steps

    row = compile_steps(("mlp",), workers=2, steps=28, chunks=2, backend="aot_eager", out=io.StringIO())[0]
    assert row["graphs"] >= 1 and row["first_step_s"] > 0
    assert row["param_gap_20_steps"] <= 1e-6
    assert row["compiled_over_eager"] == pytest.approx(row["compiled_ms_per_step"] / row["eager_ms_per_step"],
                                                       rel=0.01, abs=0.002)


def test_contention_times_a_run_alone_and_beside_its_twin():
    from grawa_sim.bench.contention import contention

    row = contention("mlp", workers=2, steps=40, threads=(1,), repeats=1, out=io.StringIO())[0]
    assert row["threads"] == 1 and row["alone_s"] > 0 and row["paired_s"] > 0
    assert row["slowdown"] == pytest.approx(row["paired_s"] / row["alone_s"], rel=0.02, abs=0.01)


def test_contention_passes_the_passive_wait_policy_to_the_child_alone(monkeypatch):
    from grawa_sim.bench import contention as bench

    seen = []
    monkeypatch.setattr(bench.subprocess, "Popen", lambda args, env, **kw: seen.append(env))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for setting in (bench.PASSIVE, 3, None):
        bench._start("mlp", 2, 4, setting)
    passive, three, default = seen
    assert passive["OMP_WAIT_POLICY"] == "PASSIVE" and "OMP_NUM_THREADS" not in passive
    assert three["OMP_NUM_THREADS"] == "3" and "OMP_WAIT_POLICY" not in three
    assert "OMP_NUM_THREADS" not in default and "OMP_WAIT_POLICY" not in default
    with pytest.raises(ValueError, match="^threads: "):
        bench._start("mlp", 2, 4, "spin")
