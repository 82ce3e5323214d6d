"""Tuning: the validation split, Optuna studies (resume, divergence, shared storage, seeds), the final
comparison's statistics and the `tune` command's one-line errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from scipy import stats as sps
from torch.func import functional_call

import grawa_sim
import grawa_sim.results.sweep  # noqa: F401 - bound to the collection-time stderr (see test_cli.py)
from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.cli.main import main
from grawa_sim.config import Config, ConfigError, ConfigWarning, resolve
from grawa_sim.data.datasets import TrainingStream, hold_out, load
from grawa_sim.engine import runner
from grawa_sim.engine.problem import model_and_data
from grawa_sim.experiments import tune as tuning
from grawa_sim.results.sweep import run_key

PROJECT = Path(__file__).resolve().parents[1]
TINY = Config(algorithm="dp", dataset="mnist1d", model="mlp", width=8, workers=2, batch_size=16, steps=16, eval_every=4,
              validation=0.2)
TINY_FLAGS = ["--model", "mlp", "--width", "8", "--workers", "2", "--batch-size", "16", "--steps", "16",
              "--eval-every", "4", "--validation", "0.2", "--seeds-per-trial", "1"]
ERROR_LINE = re.compile(r"error: (?P<field>\w+): .+ \(got .+\)")


def _url(tmp_path: Path, name: str = "tune.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _trials(url: str, method: str, prefix: str = "tune") -> list:
    return optuna.load_study(study_name=tuning.study_name(prefix, method), storage=url).trials


def _counted(trials: list) -> list:
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


# ---------------------------------------------------------------- the validation split


def _rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_validation_is_disjoint_from_the_training_set_and_keeps_the_test_set():
    data = load("mnist1d")
    held = hold_out(data, 0.2)
    n = len(data.y_train)
    assert len(held.y_val) == round(0.2 * n) and len(held.y_train) == n - len(held.y_val)
    assert not _rows(held.x_val) & _rows(held.x_train)
    assert _rows(held.x_val) | _rows(held.x_train) == _rows(data.x_train)  # nothing lost, nothing added
    assert torch.equal(held.x_test, data.x_test) and torch.equal(held.y_test, data.y_test)
    again = hold_out(data, 0.2)  # a fixed generator: the same held-out samples every time
    assert torch.equal(again.x_val, held.x_val)


def test_shards_and_batches_come_from_the_kept_training_samples_only():
    for seed in (0, 3):
        config = resolve(dataclasses.replace(TINY, seed=seed, steps=64))
        _, data = model_and_data(config)
        val = _rows(data.x_val)
        stream = TrainingStream(config, data)
        seen = set()
        for _ in range(40):  # 40 batches of 2 x 16: more than one pass over the 3200 kept samples' shards
            x, _ = stream.batch()
            seen |= _rows(x.flatten(0, 1))
        assert seen and not seen & val
        assert len(data.x_val) == 800 and _rows(data.x_val) == _rows(hold_out(load("mnist1d"), 0.2).x_val)


def test_val_acc_is_the_accuracy_of_the_evaluated_model_on_the_held_out_samples():
    result = grawa_sim.run(dataclasses.replace(TINY, algorithm="localsgd", tau=4), progress=False)
    model, data = model_and_data(result.config)
    with torch.no_grad():
        out = functional_call(model.eval(), result.evaluated, (data.x_val,))
    acc = float((out.argmax(-1) == data.y_val).double().mean())
    loss = float(torch.nn.functional.cross_entropy(out, data.y_val))
    assert result.final["val_acc"] == pytest.approx(acc, abs=1e-12)
    assert result.final["val_loss"] == pytest.approx(loss, rel=1e-5)


def test_validation_zero_keeps_the_run_keys():
    config = Config(algorithm="localsgd", steps=40, tau=8)
    identity = {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("data_dir", "device", "validation", "stop_at_target_acc") and v is not None}
    from grawa_sim.config import ENGINE_REVISION

    identity["revision"] = ENGINE_REVISION
    expected = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    assert run_key(config) == f"localsgd-M4-s0-{expected}"
    assert run_key(dataclasses.replace(config, validation=0)) == run_key(config)
    assert run_key(dataclasses.replace(config, validation=0.1)) != run_key(config)
    assert "val_acc" not in grawa_sim.run(dataclasses.replace(TINY, validation=0.0), progress=False).history


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.2"])
def test_bad_validation_is_a_one_line_error(value):
    with pytest.raises(ConfigError, match=r"^validation: .* \(got "):
        Config(validation=value)


# ---------------------------------------------------------------- search spaces and studies


def test_search_spaces_follow_the_registry():
    base = dataclasses.replace(TINY, steps=20)
    assert set(tuning.search_space("dp", base)) == {"lr"}
    assert set(tuning.search_space("dp+sam", base)) == {"lr", "sam_rho"}
    assert set(tuning.search_space("localsgd", base)) == {"lr", "tau", "pull"}
    assert set(tuning.search_space("diloco", base)) == {"lr", "tau"}  # no pull: its workers restart
    assert set(tuning.search_space("mgrawa", base)) == {"lr", "tau", "pull", "prox"}
    assert set(tuning.search_space("lsgd", base, fixed=("lr",))) == {"tau", "pull", "prox"}
    assert tuning.search_space("easgd", base)["tau"].choices == (1, 2, 4, 8, 16)  # at most steps


def test_intermediate_values_are_the_runs_validation_history(tmp_path):
    url = _url(tmp_path)
    tuning.tune(TINY, ["localsgd"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    for trial in _trials(url, "localsgd"):
        config = tuning.method_config(TINY, "localsgd", trial.params)
        history = grawa_sim.run(config, progress=False).history  # an independent rerun of the trial
        expected = {int(s): v for s, v in zip(history["step"], history["val_acc"]) if s > 0}
        assert trial.intermediate_values == pytest.approx(expected, abs=0)
        assert trial.value == history["val_acc"].iloc[-1]


def test_a_study_resumes_with_only_the_missing_trials(tmp_path, monkeypatch):
    url, log = _url(tmp_path), tmp_path / "log.txt"
    with open(log, "w") as f:
        tuning.tune(TINY, ["localsgd"], 2, url, log=f, seeds_per_trial=1)
    real_run, calls = runner.run, []

    def interrupted(config, **kwargs):  # the second trial of the next call is interrupted (Ctrl-C)
        calls.append(config)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(config, **kwargs)

    monkeypatch.setattr(runner, "run", interrupted)
    with pytest.raises(KeyboardInterrupt), open(log, "w") as f:
        tuning.tune(TINY, ["localsgd"], 5, url, log=f, seeds_per_trial=1)
    monkeypatch.setattr(runner, "run", real_run)
    trials = _trials(url, "localsgd")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(_counted(trials)) == 3 and len(failed) == 1
    with open(log, "w") as f:
        tuning.tune(TINY, ["localsgd"], 5, url, log=f, seeds_per_trial=1)
    ran = [line for line in log.read_text().splitlines() if "val_acc" in line or "pruned" in line]
    assert len(ran) == 2  # 5 asked, 3 counted before: two ran
    trials = _trials(url, "localsgd")
    retried = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # the interrupted trial again
    assert len(_counted(trials)) == 5
    with open(log, "w") as f:  # nothing missing: nothing runs
        tuning.tune(TINY, ["localsgd"], 5, url, log=f, seeds_per_trial=1)
    assert log.read_text() == ""


def test_a_trial_left_running_by_a_dead_process_is_retried(tmp_path):
    url = _url(tmp_path)
    tuning.tune(TINY, ["easgd"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    study = optuna.load_study(study_name="tune-easgd", storage=url)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = study.ask()
    params = {n: p.suggest(orphan, n) for n, p in tuning.search_space("easgd", TINY).items()}
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", dead.pid)
    tuning.tune(TINY, ["easgd"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    trials = _trials(url, "easgd")
    assert trials[orphan.number].state.name == "FAIL"
    assert len(_counted(trials)) == 2
    assert [t.params for t in trials if t.user_attrs.get("retry_of") == orphan.number] == [params]


def test_a_diverged_seed_is_scored_at_chance_with_its_reason(tmp_path):
    base = dataclasses.replace(TINY, lr=1e6)
    url = _url(tmp_path)
    table = tuning.tune(base, ["lsgd"], 1, url, fixed=("lr",), log=open(os.devnull, "w"), seeds_per_trial=1)
    (trial,) = _trials(url, "lsgd")
    assert trial.state.name == "COMPLETE" and table["state"].tolist() == ["complete"]
    assert trial.value == pytest.approx(0.1)  # MNIST-1D has 10 classes
    with pytest.raises(DivergenceError) as expected:  # the same run, outside the study
        grawa_sim.run(tuning.method_config(base, "lsgd", trial.params), progress=False)
    assert trial.user_attrs["diverged"] == [f"seed 0: {expected.value}"]
    assert "diverged at step" in trial.user_attrs["diverged"][0]


def test_a_trial_is_the_mean_over_its_seeds_and_a_diverged_seed_counts_at_chance(tmp_path, monkeypatch):
    url = _url(tmp_path)
    tuning.tune(TINY, ["localsgd"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=3)
    for trial in _trials(url, "localsgd"):
        config = tuning.method_config(TINY, "localsgd", trial.params)
        alone = [grawa_sim.run(dataclasses.replace(config, seed=k), progress=False).final["val_acc"] for k in range(3)]
        together = grawa_sim.run_many([dataclasses.replace(config, seed=k) for k in (1, 2)], progress=False)
        assert trial.user_attrs["seed_scores"] == [alone[0], *(r.final["val_acc"] for r in together)]
        assert trial.user_attrs["seed_scores"] == pytest.approx(alone, abs=0.02)  # an ensemble ~ runs alone
        assert trial.value == pytest.approx(np.mean(trial.user_attrs["seed_scores"]))
    real_run = runner.run

    def second_seed_diverges(config, **kwargs):
        if config.seed == 1:
            raise DivergenceError("diverged at step 3 (made up)")
        return real_run(config, **kwargs)

    monkeypatch.setattr(runner, "run", second_seed_diverges)
    scores, diverged = tuning._seed_scores([dataclasses.replace(TINY, seed=k) for k in range(2)])  # both alone
    assert scores[1] == pytest.approx(0.1) and diverged == ["seed 1: diverged at step 3 (made up)"]
    import grawa_sim.engine.run_many as run_many_module

    def ensemble_diverges(configs, **kwargs):  # the ensemble loses every run with its diverged one
        raise DivergenceError("diverged at step 2 (made up, in the ensemble)")

    monkeypatch.setattr(run_many_module, "run_many", ensemble_diverges)
    scores, diverged = tuning._seed_scores([dataclasses.replace(TINY, seed=k) for k in range(4)])
    assert scores[1] == pytest.approx(0.1) and diverged == ["seed 1: diverged at step 3 (made up)"]  # one by one
    assert scores[2:] == [real_run(dataclasses.replace(TINY, seed=k), progress=False).final["val_acc"] for k in (2, 3)]
    with pytest.raises(ConfigError, match=r"^seeds_per_trial: tune-localsgd scored each trial on 3 seed\(s\)"):
        tuning.tune(TINY, ["localsgd"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    with pytest.raises(ConfigError, match="^seeds_per_trial: must be an integer >= 1"):
        tuning.tune(TINY, ["localsgd"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=0)


def test_default_trials_are_eight_per_searched_hyperparameter():
    assert tuning.study_trials(None, {"lr": None, "tau": None}) == 16
    assert tuning.study_trials(5, {"lr": None}) == 5
    assert tuning.study_trials(None, {}) == 1 and tuning.study_trials(5, {}) == 1
    assert tuning._pruner_warmup(TINY) == 4  # a quarter of the 16 steps
    assert tuning._pruner_key(TINY, {"step": 12, "sim_time": 0.7}) == 12
    budgeted = dataclasses.replace(TINY, steps=10_000, time_budget=2.0, step_time=0.01)
    assert tuning._pruner_warmup(budgeted) == 5  # a quarter of the budget's 20 evaluation periods
    # trials of different τ evaluate at different steps just past the same simulated marks: one key per mark
    assert [tuning._pruner_key(budgeted, {"step": s, "sim_time": t}) for s, t in ((96, 0.3), (88, 0.304))] == [3, 3]
    assert tuning._pruner_key(dataclasses.replace(budgeted, eval_seconds=0.5), {"step": 0, "sim_time": 1.2}) == 2
    assert tuning.DEFAULT_METHODS[-1] == "mgrawa+uniform"
    twin = tuning.method_config(TINY, "mgrawa+uniform", {"lr": 0.1, "tau": 4})
    assert (twin.algorithm, twin.weighting, twin.lr) == ("mgrawa", "uniform", 0.1)
    assert set(tuning.search_space("mgrawa+uniform", TINY)) == set(tuning.search_space("mgrawa", TINY))


def test_the_same_seed_gives_the_same_trials(tmp_path):
    tables = [tuning.tune(TINY, ["mgrawa"], 3, _url(tmp_path, f"{i}.db"), seed=7, log=open(os.devnull, "w"),
                          seeds_per_trial=1) for i in range(2)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    other = tuning.tune(TINY, ["mgrawa"], 3, _url(tmp_path, "other.db"), seed=8, log=open(os.devnull, "w"),
                        seeds_per_trial=1)
    assert not np.allclose(other["lr"], tables[0]["lr"])
    assert len({tuple(r) for r in tables[0][["lr", "tau", "pull", "prox"]].to_numpy()}) == 3  # no repeats


def test_two_processes_share_one_study(tmp_path):
    url, trials = _url(tmp_path), 6
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    command = [sys.executable, "-m", "grawa_sim", "tune", "--algorithm", "localsgd", "--trials", str(trials),
               "--final-seeds", "0", "--storage", url, *TINY_FLAGS]
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = [len(re.findall(r"\[localsgd trial \d+\]", err)) for _, err in outputs]
    trials_seen = _trials(url, "localsgd")
    assert len(trials_seen) == trials and len(_counted(trials_seen)) == trials  # none surplus, none failed
    assert sum(ran) == trials
    assert len({t.number for t in trials_seen}) == trials
    assert len({tuple(sorted(t.params.items())) for t in trials_seen}) == trials


def test_tune_jobs_runs_processes_on_one_study_then_the_final_comparison(tmp_path):
    url, trials = _url(tmp_path), 4
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "GRAWA_RESULTS": str(tmp_path / "results")}
    command = [sys.executable, "-m", "grawa_sim", "tune", "--algorithm", "localsgd", "--trials", str(trials),
               "--final-seeds", "2", "--jobs", "2", "--storage", url, *TINY_FLAGS]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials_seen = _trials(url, "localsgd")
    assert len(trials_seen) == trials and len(_counted(trials_seen)) == trials
    assert len({tuple(sorted(t.params.items())) for t in trials_seen}) == trials
    assert len(re.findall(r"\[localsgd trial \d+\]", done.stderr)) == trials  # both processes report to stderr
    out = tuning.comparison_folder(tmp_path / "results", "tune", url, "sqlite:///elsewhere/tune.db")
    finals = pd.read_csv(out / "results.csv")  # keyed by the storage, which is not the default one
    assert len(finals) == 2 and "test_acc_mean" in done.stdout


def test_a_study_of_another_setting_is_refused(tmp_path):
    url = _url(tmp_path)
    tuning.tune(TINY, ["dp"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    with pytest.raises(ConfigError, match=r"^study: tune-dp was tuned on another setting \(steps: 16 there\)"):
        tuning.tune(dataclasses.replace(TINY, steps=24), ["dp"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    with pytest.raises(ConfigError, match=r"^study: tune-dp was tuned on another search space \(lr\)"):
        tuning.tune(TINY, ["dp"], 1, url, fixed=("lr",), log=open(os.devnull, "w"), seeds_per_trial=1)


# ---------------------------------------------------------------- best configs, final comparison, importances


def test_final_family_pairs_each_grawa_with_a_twin_dp_and_localsgd():
    family = tuning.final_family(["dp", "localsgd", "mgrawa", "lgrawa", "mgrawa+uniform"])
    assert family.reference == "localsgd"
    assert family.contrasts == (("mgrawa", "mgrawa+uniform"), ("mgrawa", "dp"), ("mgrawa", "localsgd"),
                                ("lgrawa", "mgrawa+uniform"), ("lgrawa", "dp"), ("lgrawa", "localsgd"))
    assert tuning.final_family(["easgd", "lgrawa", "lgrawa+uniform"]).contrasts == (("lgrawa", "lgrawa+uniform"),)
    assert tuning.final_family(["easgd", "lgrawa"]).reference == "easgd"


def test_final_comparison_is_paired_and_holm_corrected_against_scipy(tmp_path):
    url = _url(tmp_path)
    methods = ["dp", "localsgd", "mgrawa", "mgrawa+uniform"]
    tuning.tune(TINY, methods, 2, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    best = tuning.best_configs(TINY, methods, url)
    table_of_trials = tuning.trials_table(url, methods)
    for m, config in best.items():
        own = table_of_trials[table_of_trials["algorithm"] == m]
        top = own.loc[own["value"].idxmax()]
        assert config.lr == top["lr"] and config.algorithm == m.split("+")[0]
    out = tmp_path / "final"
    final = tuning.final_comparison(best, out, seeds=3, log=open(os.devnull, "w"))
    finals = pd.read_csv(out / "results.csv")
    assert sorted(finals["seed"].unique()) == [1000, 1001, 1002]  # fresh seeds, not the tuning seed 0
    name = finals["algorithm"] + np.where(finals["weighting"].eq("uniform"), "+uniform", "")
    acc = {m: finals[name == m].sort_values("seed")["test_acc"].to_numpy() for m in methods}
    assert list(final.methods.index) == methods
    for m in methods:
        assert final.methods.loc[m, "test_acc_mean"] == pytest.approx(acc[m].mean())
        low, high = sps.t.interval(0.95, len(acc[m]) - 1, loc=acc[m].mean(), scale=sps.sem(acc[m]))
        assert final.methods.loc[m, "test_acc_ci95"] == pytest.approx((high - low) / 2)
        assert (final.methods.loc[m, "finished"], final.methods.loc[m, "total"]) == (3, 3)
    contrasts = final.contrasts.set_index("contrast")
    assert list(contrasts.index) == ["mgrawa − mgrawa+uniform", "mgrawa − dp", "mgrawa − localsgd"]
    raw = []
    for other in ("mgrawa+uniform", "dp", "localsgd"):
        row = contrasts.loc[f"mgrawa − {other}"]
        assert row["difference"] == pytest.approx((acc["mgrawa"] - acc[other]).mean())
        if np.ptp(acc["mgrawa"] - acc[other]) > 0:
            assert row["p"] == pytest.approx(sps.ttest_rel(acc["mgrawa"], acc[other]).pvalue)
        raw.append(row["p"])
    order = np.argsort(raw)  # Holm by hand: sorted p times (m − rank), running maximum, capped at 1
    holm = np.minimum(1, np.maximum.accumulate([(3 - k) * raw[i] for k, i in enumerate(order)]))
    assert contrasts["p_holm"].to_numpy()[order] == pytest.approx(holm)
    importances = tuning.importances(url, methods)
    assert set(importances["algorithm"]) == set(methods)
    for m in methods:
        own = importances[importances["algorithm"] == m]
        assert set(own["param"]) == set(tuning.search_space(m, TINY))
        assert own["importance"].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize("argv, field", [
    (["--algorithm", "sgd"], "algorithm"),
    (["--algorithm", "dp", "--trials", "0"], "trials"),
    (["--algorithm", "dp", "--storage", "not-a-url"], "storage"),
    (["--algorithm", "dp", "--storage", "sqlite:////dev/null/tune.db"], "storage"),
    (["--algorithm", "dp", "--final-seeds", "1"], "final_seeds"),
    (["--algorithm", "dp", "--validation", "1.5"], "validation"),
    (["--algorithm", "dp", "--jobs", "0"], "jobs"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, field):
    assert main(["tune", "--quick", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    match = ERROR_LINE.fullmatch(lines[0])
    assert match and match["field"] == field, lines[0]


def test_quick_tune_writes_to_the_scratch_folder_only(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAWA_SCRATCH", str(tmp_path))
    monkeypatch.delenv("GRAWA_RESULTS", raising=False)
    assert main(["tune", "--quick", "--algorithm", "dp,mgrawa", "--trials", "2"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "results" / "tune" / "tune"
    assert (tmp_path / "results" / "tune.db").is_file()
    finals = pd.read_csv(folder / "results.csv")
    assert len(finals) == 4  # 2 methods x 2 fresh seeds
    assert "best_val_acc" in out and "test_acc_mean" in out and "declared family 'tuned'" in out
    methods = pd.read_csv(folder / "methods.csv", index_col=0)
    assert list(methods.index) == ["dp", "mgrawa"] and set(methods["total"]) == {2}
    dp = finals[finals["algorithm"] == "dp"]["test_acc"]
    assert methods.loc["dp", "test_acc_mean"] == pytest.approx(dp.mean())
    contrasts = pd.read_csv(folder / "contrasts.csv")
    assert contrasts["contrast"].tolist() == ["mgrawa − dp"]  # no twin, no LocalSGD tuned: one contrast
    mgrawa = finals[finals["algorithm"] == "mgrawa"].sort_values("seed")["test_acc"].to_numpy()
    assert contrasts["difference"].iloc[0] == pytest.approx((mgrawa - dp.to_numpy()[np.argsort(
        finals[finals["algorithm"] == "dp"]["seed"].to_numpy())]).mean())


# ---------------------------------------------------------------- storage faults, stale trials, small ones (issue 12)


def _read_only(path: Path):
    """Make the file ``path`` read-only, also for root (a read-only bind mount); returns the undo, or skips."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return lambda: path.chmod(0o644)
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode:
        pytest.skip("no bind mount here")
    if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode:
        subprocess.run(["umount", str(path)])
        pytest.skip("no read-only remount here")
    return lambda: subprocess.run(["umount", "-l", str(path)])  # lazily: the storage may still hold the file open


def test_a_read_only_study_file_is_one_line_exit_2_and_can_still_be_read(tmp_path, capsys):
    url = _url(tmp_path)
    tuning.tune(TINY, ["dp"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    undo = _read_only(tmp_path / "tune.db")
    try:
        argv = ["tune", "--algorithm", "dp", "--trials", "2", "--final-seeds", "0", "--storage", url, *TINY_FLAGS]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines() == [f"error: storage: cannot write the study {tmp_path / 'tune.db'}: "
                                            f"read-only (got {url!r})"], err
        assert tuning.summary(url, ["dp"]).loc["dp", "complete"] == 1  # reading needs no write
    finally:
        undo()
    assert len(_trials(url, "dp")) == 1  # nothing was written


def test_reading_a_study_that_does_not_exist_creates_nothing(tmp_path):
    url = _url(tmp_path / "none")
    for read in (tuning.trials_table, tuning.summary, tuning.importances):
        with pytest.raises(ConfigError, match=r"^study: no study tune-dp in the storage \(got "):
            read(url, ["dp"])
    with pytest.raises(ConfigError, match=r"^study: no study tune-dp in the storage"):
        tuning.best_configs(TINY, ["dp"], url)
    assert list(tmp_path.iterdir()) == []  # no empty database, no lock file, no folder


def _unchecked_trials(url: str) -> list[int]:
    """Two RUNNING trials whose processes cannot be checked: one without a pid, one on another host."""
    study = optuna.load_study(study_name="tune-dp", storage=url)
    numbers = []
    for attrs in ({}, {"host": "another-host", "pid": 1}):
        trial = study.ask()
        tuning.search_space("dp", TINY)["lr"].suggest(trial, "lr")
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        numbers.append(trial.number)
    return numbers


def test_running_trials_that_cannot_be_checked_are_reported_then_retired(tmp_path, capsys):
    url = _url(tmp_path)
    tuning.tune(TINY, ["dp"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    numbers = _unchecked_trials(url)
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        tuning.tune(TINY, ["dp"], 3, url, log=f, seeds_per_trial=1)  # default stale_after (24 h): they count as running
    lines = re.sub(r"RUNNING for \d+ s ", "RUNNING for AGE ", log.read_text()).splitlines()
    assert lines == [
        f"[dp trial {numbers[0]}] RUNNING for AGE with no pid recorded: its process cannot be checked from here; "
        f"it counts as running until stale_after (24.0 h) retires it",
        f"[dp trial {numbers[1]}] RUNNING for AGE with pid 1 on another-host: its process cannot be checked from "
        f"here; it counts as running until stale_after (24.0 h) retires it",
        "tune-dp: 1 of 3 trials finished; 2 RUNNING where their processes cannot be checked (retire them with a "
        "shorter --stale-after, or run tune again once they finish)"], lines
    assert len(_counted(_trials(url, "dp"))) == 1

    argv = ["tune", "--algorithm", "dp", "--trials", "3", "--final-seeds", "0", "--storage", url, *TINY_FLAGS]
    assert main([*argv, "--stale-after", "soon"]) == 2
    assert capsys.readouterr().err.strip() == ("error: stale_after: must be a duration such as 90s, 30m, 24h or 2d "
                                               "(got 'soon')")
    assert main([*argv, "--stale-after", "0s"]) == 0  # retired: failed and run again with their parameters
    err = capsys.readouterr().err
    assert "RUNNING" not in err and "trials finished" not in err, err
    trials = _trials(url, "dp")
    assert len(_counted(trials)) == 3
    for number in numbers:
        assert trials[number].state.name == "FAIL"
        assert re.match(r"retired after \d+ s RUNNING with ", trials[number].user_attrs["failed_because"])
        assert [t.params for t in trials if t.user_attrs.get("retry_of") == number] == [trials[number].params]


def test_a_trial_of_a_reused_pid_is_retried(tmp_path):
    """A RUNNING trial records its process's start time: a live process of the same pid that started at
    another time (a reused pid) is not its process."""
    from grawa_sim.core.folders import process_start

    url = _url(tmp_path)
    tuning.tune(TINY, ["dp"], 1, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    study = optuna.load_study(study_name="tune-dp", storage=url)
    trial = study.ask()
    tuning.search_space("dp", TINY)["lr"].suggest(trial, "lr")
    for key, value in (("host", socket.gethostname()), ("pid", os.getppid()),
                       ("started", process_start(os.getppid()) + 1)):
        trial.set_user_attr(key, value)
    tuning.tune(TINY, ["dp"], 2, url, log=open(os.devnull, "w"), seeds_per_trial=1)
    trials = _trials(url, "dp")
    assert trials[trial.number].state.name == "FAIL" and len(_counted(trials)) == 2


def test_nothing_left_to_search_warns_and_runs_one_trial(tmp_path, capsys):
    url = _url(tmp_path)
    with pytest.warns(ConfigWarning, match=r"^fixed: nothing left to search for dp \(every hyperparameter it takes "
                                           r"is fixed: lr\); its 3 trials would be the same run, so it gets one"):
        tuning.tune(TINY, ["dp", "localsgd"], 3, url, fixed=("lr",), log=open(os.devnull, "w"), seeds_per_trial=1)
    assert len(_counted(_trials(url, "dp"))) == 1 and len(_counted(_trials(url, "localsgd"))) == 3
    assert main(["tune", "--algorithm", "dp", "--trials", "3", "--final-seeds", "0", "--storage", url,
                 "--lr", str(TINY.lr), *TINY_FLAGS]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: fixed: nothing left to search for dp") and "trials finished" not in err
    assert len(_counted(_trials(url, "dp"))) == 1


def test_two_storages_with_the_same_study_name_keep_their_final_runs_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAWA_RESULTS", str(tmp_path / "results"))
    from grawa_sim.experiments import presets as experiments

    results = experiments.results_dir(False)
    default = f"sqlite:///{results / 'tune.db'}"
    assert tuning.comparison_folder(results, "s", default, default) == results / "tune" / "s"  # as before
    relative = f"sqlite:///{os.path.relpath(tmp_path / 'a.db')}"
    assert tuning.comparison_folder(results, "s", relative, default) == \
        tuning.comparison_folder(results, "s", _url(tmp_path, "a.db"), default)  # one file, however spelled
    folders = []
    for name in ("a.db", "b.db"):
        argv = ["tune", "--algorithm", "dp", "--trials", "1", "--final-seeds", "2", "--study", "s", "--storage",
                _url(tmp_path, name), *TINY_FLAGS]
        assert main(argv) == 0
        folders.append(tuning.comparison_folder(results, "s", _url(tmp_path, name), default))
        assert (folders[-1] / "results.csv").is_file()
    assert folders[0] != folders[1] and folders[0].parent == folders[1].parent == results / "tune"
    assert not (results / "tune" / "s").exists()


@pytest.mark.parametrize("argv", [["tune", "--jobs", "-1"], ["sweep", "--jobs", "0", "--out", "x"],
                                  ["reproduce", "--jobs", "-1"], ["tune", "--trials", "0"]])
def test_plain_flags_are_checked_before_torch_is_imported(tmp_path, argv):
    code = ("import sys; from grawa_sim.cli.main import main; code = main(sys.argv[1:]); "
            "print(code, 'torch' in sys.modules, 'optuna' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stdout + done.stderr
    field = "trials" if "--trials" in argv else "jobs"
    assert re.fullmatch(rf"error: {field}: must be an integer >= 1 \(got -?\d\)", done.stderr.strip()), done.stderr
    assert list(tmp_path.iterdir()) == []
