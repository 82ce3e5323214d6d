"""Resumable sweeps and atomic result files: grid, run_key, sweep (resume, interruption), save_result."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import grawa_sim.results.storage
import grawa_sim.results.sweep
from grawa_sim.config import Config, ConfigError
from grawa_sim.engine.problem import validate
from grawa_sim.engine.runner import run
from grawa_sim.results.storage import is_complete, load_config, load_history, save_result
from grawa_sim.results.sweep import grid, run_key, sweep

BASE = Config(dataset="digits", model="logistic", workers=2, steps=8, tau=4, batch_size=8, eval_every=4)
CONFIGS = [BASE, dataclasses.replace(BASE, algorithm="dp"), dataclasses.replace(BASE, seed=1)]


@pytest.fixture
def calls(monkeypatch):
    """Every config that grawa_sim.results.sweep.run is called with (the real run still runs)."""
    seen: list[Config] = []

    def counting(config, *args, **kwargs):
        seen.append(config)
        return run(config, *args, **kwargs)

    monkeypatch.setattr(grawa_sim.results.sweep, "run", counting)
    return seen


def run_dir(out: Path, config: Config) -> Path:
    return out / "runs" / run_key(validate(config))


def hidden_files(root: Path) -> list[Path]:
    """Anything left behind whose name starts with '.' (temporary directories and files)."""
    return [p for p in root.rglob("*") if any(part.startswith(".") for part in p.relative_to(root).parts)]


def quiet_sweep(configs, out):
    log = io.StringIO()
    return sweep(configs, out, progress=False, log=log), log.getvalue()


# ---------------------------------------------------------------- grid


def test_grid_is_the_cartesian_product():
    configs = grid(BASE, algorithm=["easgd", "mgrawa", "lsgd"], seed=[0, 1], tau=[2, 4])
    assert len(configs) == 3 * 2 * 2
    combos = [(c.algorithm, c.seed, c.tau) for c in configs]
    assert len(set(combos)) == 12
    assert set(combos) == {(a, s, t) for a in ("easgd", "mgrawa", "lsgd") for s in (0, 1) for t in (2, 4)}
    assert combos[:3] == [("easgd", 0, 2), ("easgd", 0, 4), ("easgd", 1, 2)]  # first axis varies slowest
    for c in configs:  # everything else comes from the base
        assert dataclasses.replace(c, algorithm=BASE.algorithm, seed=BASE.seed, tau=BASE.tau) == BASE


def test_grid_edge_cases():
    assert grid(BASE) == [BASE]
    assert grid(BASE, seed=[]) == []
    assert grid(BASE, seed=[5]) == [dataclasses.replace(BASE, seed=5)]


# ---------------------------------------------------------------- run_key


def test_run_key_is_stable_and_readable():
    a = validate(dataclasses.replace(BASE, algorithm="lgrawa", workers=3, seed=7))
    b = validate(Config(seed=7, workers=3, algorithm="lgrawa", dataset="digits", model="logistic", steps=8,
                       tau=4, batch_size=8, eval_every=4))
    copy = dataclasses.replace(b)  # another object with the same fields
    assert a == b == copy and copy is not a
    assert run_key(a) == run_key(b) == run_key(copy) == run_key(a)
    assert re.fullmatch(r"lgrawa-M3-s7-[0-9a-f]{10}", run_key(a)), run_key(a)
    # the per-algorithm defaults resolve to the same run as spelling them out
    assert run_key(validate(BASE)) == run_key(validate(dataclasses.replace(BASE, pull=0.5, prox=0.01)))


@pytest.mark.parametrize("change", [
    {"algorithm": "dp"}, {"seed": 1}, {"workers": 3}, {"tau": 2}, {"lr": 0.1}, {"pull": 0.25},
    {"weight_decay": 1e-3}, {"steps": 9}, {"backend": "loop"}, {"dtype": "float64"}, {"grawa_norm": "global"},
    {"grawa_smoothing": False}, {"eval_every": 2}, {"batch_size": 16}, {"momentum": 0.0},
], ids=lambda change: next(iter(change)))
def test_run_key_differs_between_configs(change):
    assert run_key(validate(BASE)) != run_key(validate(dataclasses.replace(BASE, **change)))


def test_run_key_leaves_out_unset_fields_so_new_optional_fields_keep_old_keys(monkeypatch):
    import grawa_sim.config as config_module

    cfg = validate(BASE)
    key = run_key(cfg)
    plain = config_module.to_dict
    # a later version of Config with one more optional field, left unset: the same run, the same key
    monkeypatch.setattr(config_module, "to_dict", lambda c: {**plain(c), "a_future_field": None})
    assert run_key(cfg) == key
    # set, it is part of the identity
    monkeypatch.setattr(config_module, "to_dict", lambda c: {**plain(c), "a_future_field": 0.5})
    assert run_key(cfg) != key
    monkeypatch.setattr(config_module, "to_dict", plain)
    assert run_key(cfg) != run_key(dataclasses.replace(cfg, eval_seconds=0.5))


def test_run_key_ignores_where_the_data_lives(tmp_path):
    cfg = validate(BASE)
    moved = dataclasses.replace(cfg, data_dir="/elsewhere")
    assert run_key(cfg) == run_key(moved)
    save_result(run(dataclasses.replace(BASE, steps=4), progress=False), tmp_path / "r")
    short = validate(dataclasses.replace(BASE, steps=4))
    assert is_complete(tmp_path / "r", short)
    assert is_complete(tmp_path / "r", dataclasses.replace(short, data_dir="/elsewhere"))
    assert not is_complete(tmp_path / "r", dataclasses.replace(short, seed=5))


def test_sweep_config_columns_do_not_clobber_history_columns():
    """sweep() tags each history row with the config fields: no name may be shared (e.g. lr vs lr_now)."""
    history = run(dataclasses.replace(BASE, steps=4), progress=False).history
    assert not set(history.columns) & {f.name for f in dataclasses.fields(Config)}


# ---------------------------------------------------------------- sweep


def test_sweep_writes_one_directory_per_run_and_results(tmp_path, calls):
    out = tmp_path / "sweep"
    histories, log = quiet_sweep(CONFIGS, out)

    assert calls == [validate(c) for c in CONFIGS]
    keys = [run_key(validate(c)) for c in CONFIGS]
    assert len(set(keys)) == 3
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(keys)
    for config, key in zip(CONFIGS, keys):
        d = out / "runs" / key
        assert (d / "history.csv").is_file() and (d / "config.json").is_file()
        assert load_config(d) == validate(config)
        assert is_complete(d, validate(config))
        assert key in log

    assert list(histories["run"].unique()) == keys
    assert set(histories["algorithm"]) == {"mgrawa", "dp"}
    assert {"step", "test_acc", "seed", "tau", "run"} <= set(histories.columns)

    results = pd.read_csv(out / "results.csv")
    assert list(results["run"]) == keys  # one final row per run, in config order
    assert (results["step"] == BASE.steps).all()
    for key, row in zip(keys, results.itertuples()):
        last = load_history(out / "runs" / key).iloc[-1]
        assert row.test_acc == pytest.approx(last["test_acc"])
        assert row.train_loss == pytest.approx(last["train_loss"])
    assert hidden_files(out) == []


def test_sweep_resumes_without_running_again(tmp_path, calls):
    out = tmp_path / "sweep"
    first, _ = quiet_sweep(CONFIGS[:2], out)
    results = pd.read_csv(out / "results.csv")
    assert len(calls) == 2

    calls.clear()
    again, log = quiet_sweep(CONFIGS[:2], out)
    assert calls == []
    assert log.count("reused") == 2
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)

    # a new config runs alone; the finished ones are read back
    more, log = quiet_sweep(CONFIGS, out)
    assert calls == [validate(CONFIGS[2])]
    assert log.count("reused") == 2
    pd.testing.assert_frame_equal(more.iloc[: len(first)], first)
    assert len(pd.read_csv(out / "results.csv")) == 3


def test_sweep_reruns_a_directory_holding_another_config(tmp_path, calls):
    """A run directory whose config.json does not match is not complete: the run is redone."""
    out = tmp_path / "sweep"
    quiet_sweep(CONFIGS[:1], out)
    d = run_dir(out, CONFIGS[0])
    stored = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**stored, "lr": 0.123}))
    assert not is_complete(d, validate(CONFIGS[0]))

    calls.clear()
    quiet_sweep(CONFIGS[:1], out)
    assert calls == [validate(CONFIGS[0])]
    assert is_complete(d, validate(CONFIGS[0]))


def test_sweep_validates_every_config_before_running(tmp_path, calls):
    with pytest.raises(ValueError, match=r"^momentum: "):
        quiet_sweep([BASE, dataclasses.replace(BASE, momentum=1.0)], tmp_path / "sweep")
    assert calls == []
    assert not (tmp_path / "sweep").exists()


def test_sweep_checks_shard_size_before_running(tmp_path, calls):
    bad = dataclasses.replace(BASE, batch_size=1000)  # digits: 1437 samples, 718 per worker
    with pytest.raises(ValueError, match=r"^batch_size: "):
        quiet_sweep([BASE, bad], tmp_path / "sweep")
    assert calls == []


def test_sweep_logs_to_the_current_stderr(tmp_path):
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        sweep(CONFIGS[:1], tmp_path / "sweep", progress=False)
    assert run_key(validate(CONFIGS[0])) in buffer.getvalue()


# ---------------------------------------------------------------- interruption


def test_interrupted_sweep_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    seen: list[Config] = []
    total = [0]

    def interrupt_second(config, *args, **kwargs):
        seen.append(config)
        total[0] += 1
        if total[0] == 2:  # the second call ever
            raise KeyboardInterrupt
        return run(config, *args, **kwargs)

    monkeypatch.setattr(grawa_sim.results.sweep, "run", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        quiet_sweep(CONFIGS, out)
    assert seen == [validate(c) for c in CONFIGS[:2]]

    assert is_complete(run_dir(out, CONFIGS[0]), validate(CONFIGS[0]))
    assert [p.name for p in (out / "runs").iterdir()] == [run_dir(out, CONFIGS[0]).name]
    assert not run_dir(out, CONFIGS[1]).exists()
    assert hidden_files(out) == []

    seen.clear()
    histories, log = quiet_sweep(CONFIGS, out)
    assert seen == [validate(c) for c in CONFIGS[1:]]
    assert log.count("reused") == 1
    assert list(histories["run"].unique()) == [run_key(validate(c)) for c in CONFIGS]
    assert all(is_complete(run_dir(out, c), validate(c)) for c in CONFIGS)
    assert len(pd.read_csv(out / "results.csv")) == 3
    assert hidden_files(out) == []


def test_interruption_while_saving_leaves_no_run_and_no_temp_files(tmp_path, calls, monkeypatch):
    """Interrupted at the move that puts the written folder in place: no run, nothing hidden; redone."""
    out = tmp_path / "sweep"
    real_rename = grawa_sim.results.storage.os.rename

    def interrupt(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(grawa_sim.results.storage.os, "rename", interrupt)
    with pytest.raises(KeyboardInterrupt):
        quiet_sweep(CONFIGS[:1], out)
    monkeypatch.setattr(grawa_sim.results.storage.os, "rename", real_rename)

    d = run_dir(out, CONFIGS[0])
    assert not d.exists()
    assert not is_complete(d, validate(CONFIGS[0]))
    assert hidden_files(out) == []

    calls.clear()
    quiet_sweep(CONFIGS[:1], out)
    assert calls == [validate(CONFIGS[0])]
    assert is_complete(d, validate(CONFIGS[0]))
    assert hidden_files(out) == []


# ---------------------------------------------------------------- save_result


@pytest.fixture(scope="module")
def two_results():
    return run(BASE, progress=False), run(dataclasses.replace(BASE, algorithm="dp", steps=4), progress=False)


def test_save_result_replaces_the_folder_whole(tmp_path, two_results):
    first, second = two_results
    out = tmp_path / "run"
    assert save_result(first, out) == out
    assert load_config(out) == validate(BASE)
    (out / "flatness.csv").write_text("model\nevaluated\n")  # measured on the first run

    with pytest.raises(ConfigError, match=r"^out: holds a run of another configuration"):
        save_result(second, out)
    assert is_complete(out, first.config)
    save_result(second, out, overwrite=True)
    assert load_config(out) == second.config
    assert is_complete(out, second.config)
    assert not is_complete(out, first.config)
    pd.testing.assert_frame_equal(load_history(out), pd.read_csv(io.StringIO(second.history.to_csv(index=False))))
    assert load_history(out)["step"].iloc[-1] == 4
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "params.pt", "weights.csv"]
    assert hidden_files(tmp_path) == []

    (out / "notes.txt").write_text("mine")  # never replaced: not only a run's files
    with pytest.raises(ConfigError, match=r"^out: holds files that are not a run's \(notes.txt\)"):
        save_result(first, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and is_complete(out, second.config)


def test_save_result_creates_parents(tmp_path, two_results):
    out = tmp_path / "a" / "b" / "run"
    save_result(two_results[0], out)
    assert is_complete(out, two_results[0].config)


def test_a_failed_write_leaves_the_earlier_run_whole(tmp_path, two_results, monkeypatch):
    first, second = two_results
    out = tmp_path / "run"
    save_result(first, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(28, "disk full")

    monkeypatch.setattr(grawa_sim.results.storage.torch, "save", full)
    with pytest.raises(OSError, match=r"^out: cannot write '.*run': disk full"):
        save_result(second, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert is_complete(out, first.config)
    assert hidden_files(tmp_path) == []


def test_save_result_refuses_a_regular_file(tmp_path, two_results):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(ConfigError, match=r"^out: exists and is not a directory"):
        save_result(two_results[0], target)
    assert target.read_text() == "x"
    assert hidden_files(tmp_path) == []


def test_is_complete_needs_both_files_and_the_same_config(tmp_path, two_results):
    first, _ = two_results
    out = tmp_path / "run"
    assert not is_complete(out, first.config)
    save_result(first, out)
    assert is_complete(out, first.config)
    assert not is_complete(out, dataclasses.replace(first.config, seed=1))
    (out / "history.csv").unlink()
    assert not is_complete(out, first.config)
    save_result(first, out)
    (out / "config.json").write_text("{not json")
    assert not is_complete(out, first.config)


def test_saved_params_round_trip(tmp_path):
    from grawa_sim.engine.runner import run
    from grawa_sim.results.storage import load_params

    result = run(BASE, progress=False)
    save_result(result, tmp_path / "r")
    params = load_params(tmp_path / "r")
    for part in ("workers", "buffers", "evaluated", "center"):
        expected = getattr(result, part)
        assert params[part].keys() == expected.keys()
        assert all(torch.equal(params[part][n], expected[n]) for n in expected)


JOB_BASE = dict(dataset="mnist1d", model="mlp", width=8, workers=2, steps=16, tau=4, eval_every=8, dtype="float64")


def _jobs_configs():
    from grawa_sim.results.sweep import grid

    return grid(Config(**JOB_BASE), algorithm=["localsgd", "mgrawa"], seed=[0, 1])


def test_jobs_compute_the_same_runs_as_one_process(tmp_path):
    serial = sweep(_jobs_configs(), tmp_path / "one", progress=False)
    parallel = sweep(_jobs_configs(), tmp_path / "two", progress=False, jobs=2)
    pd.testing.assert_frame_equal(serial.drop(columns="wall_time"), parallel.drop(columns="wall_time"))
    assert not any((tmp_path / "two" / "locks").iterdir())  # every lock released


def test_a_run_locked_by_a_live_process_is_waited_for_and_reused(tmp_path, monkeypatch):
    """Another sweep (a live pid in the lock) is computing the run: this one waits, then reuses what it stored."""
    import subprocess
    import threading

    from grawa_sim.engine.problem import validate
    from grawa_sim.results import sweep as sweep_module
    from grawa_sim.results.storage import save_result
    from grawa_sim.results.sweep import run_key

    cfg = validate(_jobs_configs()[0])
    result = sweep_module.run(cfg, progress=False)
    other = subprocess.Popen(["sleep", "30"])
    lock = tmp_path / "locks" / run_key(cfg)
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{other.pid}\n")

    def the_other_sweep_finishes():
        save_result(result, tmp_path / "runs" / run_key(cfg), overwrite=True)
        lock.unlink()

    timer = threading.Timer(1.0, the_other_sweep_finishes)
    timer.start()

    def no_training(*args, **kwargs):
        raise AssertionError("a run another process was computing was computed again")

    monkeypatch.setattr(sweep_module, "run", no_training)
    log = io.StringIO()
    try:
        histories = sweep([cfg], tmp_path, progress=False, log=log)
    finally:
        timer.cancel()
        other.kill()
        other.wait()
    assert "computed by another process, reused" in log.getvalue()
    pd.testing.assert_frame_equal(histories[result.history.columns], result.history, check_dtype=False)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    import subprocess

    from grawa_sim.engine.problem import validate
    from grawa_sim.results.sweep import run_key

    cfg = validate(_jobs_configs()[0])
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = tmp_path / "locks" / run_key(cfg)
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{gone.pid}\n")
    histories = sweep([cfg], tmp_path, progress=False)
    assert (histories["status"] == "finished").all() and not lock.exists()


def test_jobs_must_be_a_positive_integer(tmp_path):
    with pytest.raises(ValueError, match="^jobs: must be an integer >= 1"):
        sweep(_jobs_configs(), tmp_path, jobs=0)


def test_cli_sweep_jobs_flag(tmp_path, capsys):
    from grawa_sim.cli.main import main

    flags = ["sweep", "--algorithm", "localsgd,mgrawa", "--model", "mlp", "--width", "8", "--workers", "2",
             "--steps", "16", "--tau", "4", "--out", str(tmp_path / "s"), "--no-progress"]
    assert main([*flags, "--jobs", "0"]) == 2
    assert "jobs: must be an integer >= 1" in capsys.readouterr().err
    assert main([*flags, "--jobs", "2"]) == 0
    assert len(pd.read_csv(tmp_path / "s" / "results.csv")) == 2


# ---------------------------------------------------------------- batch_runs: many runs in one ensemble

BATCHED = [dataclasses.replace(BASE, dtype="float64", algorithm=a, seed=s, lr=lr)
           for a in ("mgrawa", "dp") for s, lr in ((0, 0.05), (1, 0.1), (2, 0.02))]


def test_batches_group_compatible_runs_in_first_seen_order():
    pending = list(enumerate([validate(c) for c in BATCHED], 1))
    assert [[i for i, _ in unit] for unit in grawa_sim.results.sweep.batches(pending, 2)] == [[1, 2], [3], [4, 5], [6]]
    assert [[i for i, _ in unit] for unit in grawa_sim.results.sweep.batches(pending, "auto")] == [[1, 2, 3], [4, 5, 6]]
    assert [len(unit) for unit in grawa_sim.results.sweep.batches(pending, 1)] == [1] * 6
    alone = [(7, validate(dataclasses.replace(BATCHED[0], schedule="async"))),
             (8, validate(dataclasses.replace(BATCHED[1], schedule="async")))]
    assert [len(unit) for unit in grawa_sim.results.sweep.batches(alone, "auto")] == [1, 1]


def test_a_batched_sweep_stores_what_one_run_at_a_time_stores(tmp_path, monkeypatch):
    used = []
    original = grawa_sim.results.sweep.run_many
    monkeypatch.setattr(grawa_sim.results.sweep, "run_many",
                        lambda cfgs, **kw: used.append(len(cfgs)) or original(cfgs, **kw))
    log = io.StringIO()
    batched = sweep(BATCHED, tmp_path / "b", progress=False, log=log, batch_runs="auto")
    assert used == [3, 3] and "one ensemble of 3 runs" in log.getvalue()
    alone = sweep(BATCHED, tmp_path / "a", progress=False, log=io.StringIO(), batch_runs=1)
    numeric = [c for c in alone.select_dtypes("number").columns if c != "wall_time"]
    assert (batched["run"] == alone["run"]).all()
    assert ((batched[numeric] - alone[numeric]).abs().fillna(0) <= 1e-10).all().all()
    again = sweep(BATCHED, tmp_path / "b", progress=False, log=io.StringIO(), batch_runs="auto")
    assert used == [3, 3]  # resumed: nothing computed again
    assert again["run"].equals(batched["run"])


def test_a_diverging_run_in_a_batch_is_stored_as_diverged_and_the_others_as_finished(tmp_path):
    """The batch is computed again run by run, so the finished run is the run alone, bit for bit."""
    base = dataclasses.replace(BATCHED[0], dtype="float32", steps=24, eval_every=8)  # lr 1e6: NaN by step 16
    configs = [dataclasses.replace(base, lr=lr, seed=s) for s, lr in ((0, 0.05), (1, 1e6))]
    histories = sweep(configs, tmp_path, progress=False, log=io.StringIO(), batch_runs=2)
    status = histories.groupby("seed")["status"].last()
    assert status[0] == "finished" and status[1] == "diverged"
    alone = run(configs[0], progress=False)
    finished = histories[histories["seed"] == 0].reset_index(drop=True)
    assert finished["test_loss"].equals(alone.history["test_loss"])


@pytest.mark.parametrize("algorithm", ["mgrawa", "easgd", "dp"])
def test_a_batched_runs_params_file_holds_only_its_own_tensors(tmp_path, algorithm):
    """A run of a batch of 4 stores its own rows, not the ensemble's: its params.pt equals the run alone's in
    size (to a few bytes) and content (the evaluated model and center were views into the R·M-worker tensors)."""
    from grawa_sim.results.storage import load_params

    base = dataclasses.replace(BASE, model="mlp", width=32, dtype="float64", algorithm=algorithm,
                               tau=None if algorithm == "dp" else 4)
    configs = [dataclasses.replace(base, seed=s) for s in range(4)]
    sweep(configs, tmp_path / "batched", progress=False, log=io.StringIO(), batch_runs=4)
    alone = tmp_path / "alone"
    save_result(run(configs[2], progress=False), alone)
    batched = run_dir(tmp_path / "batched", configs[2])
    size, expected = (batched / "params.pt").stat().st_size, (alone / "params.pt").stat().st_size
    assert abs(size - expected) <= 64, (size, expected)
    mine, reference = load_params(batched), load_params(alone)
    for part in ("workers", "buffers", "evaluated", "center"):
        assert mine[part].keys() == reference[part].keys()
        for name, tensor in reference[part].items():
            assert mine[part][name].shape == tensor.shape
            torch.testing.assert_close(mine[part][name], tensor, rtol=0, atol=1e-10)


@pytest.mark.parametrize("bad", [0, -1, "all", 1.5, True])
def test_bad_batch_runs_is_one_line(tmp_path, bad):
    with pytest.raises(ConfigError, match="^batch_runs: must be 'auto' or an integer >= 1"):
        sweep(BATCHED, tmp_path, batch_runs=bad)


def test_flatness_study_measures_in_processes_as_in_one(tmp_path):
    """study.measure with jobs = 2 (spawned processes, one thread each) gives the rows of jobs = 1, and
    caches one table per run that a second call reads instead of measuring again."""
    import shutil

    from grawa_sim.experiments import flatness_study as study

    configs = [dataclasses.replace(c, steps=32, eval_every=16) for c in study.configs(True, seeds=1)
               if c.algorithm in ("dp", "mgrawa") and c.model == "cnn" and c.weighting is None]
    assert len(configs) == 3  # dp, dp+sam, mgrawa
    sweep(configs, tmp_path / "one", progress=False, log=io.StringIO())
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    one = study.measure(configs, tmp_path / "one", study.QUICK_SETTINGS, jobs=1)
    two = study.measure(configs, tmp_path / "two", study.QUICK_SETTINGS, jobs=2)
    assert len(one) == len(configs) + 1  # the average of every run, and MGRAWA's center (DP has none of its own)
    pd.testing.assert_frame_equal(one, two, rtol=1e-4)
    assert len(list((tmp_path / "two" / "flatness-study").glob("*.csv"))) == len(configs)
    again = study.measure(configs, tmp_path / "two", study.QUICK_SETTINGS, jobs=2, progress=lambda x, **k: [])
    pd.testing.assert_frame_equal(again, two)  # read from the cache: nothing left to measure
