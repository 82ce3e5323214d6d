"""The command line: `python -m grawa_sim run|sweep|reproduce` outputs, and one-line errors (exit 2)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import grawa_sim
import grawa_sim.results.sweep
from grawa_sim.algorithms import COMPARED
from grawa_sim.cli.main import main
from grawa_sim.config import Config
from grawa_sim.engine.problem import validate
from grawa_sim.results.storage import is_complete, load_config, load_history

PROJECT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--model", "logistic", "--workers", "2", "--steps", "20", "--tau", "4",
        "--batch-size", "8"]
# grawa_sim.results.sweep is imported here, at collection, on purpose: sweep() binds `log=sys.stderr` when the
# module is imported (see test_sweep.py::test_sweep_logs_to_the_current_stderr), so a first import inside
# a capsys test would leave it writing to that test's closed stream in later tests.
TINY_CONFIG = Config(dataset="digits", model="logistic", workers=2, steps=20, tau=4, batch_size=8)
HISTORY_COLUMNS = {"step", "round", "wall_time", "train_loss", "test_loss", "test_acc", "spread"}
# error: <field>: <why> (got <value>)
ERROR_LINE = re.compile(r"error: (?P<field>\w+): (?P<why>.+) \(got (?P<value>.+)\)")


# ---------------------------------------------------------------- run: outputs


def test_run_writes_history_and_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out), "--no-progress"]) == 0

    assert (out / "history.csv").is_file()
    assert (out / "config.json").is_file()
    assert {"history.csv", "config.json", "weights.csv", "params.pt"} <= {p.name for p in out.iterdir()}
    expected = validate(TINY_CONFIG)
    assert load_config(out) == expected
    assert is_complete(out, expected)

    history = load_history(out)
    assert HISTORY_COLUMNS <= set(history.columns)
    assert history["step"].iloc[0] == 0
    assert history["step"].iloc[-1] == 20
    assert history["round"].iloc[-1] == 20 // 4  # one round every tau steps
    assert history["step"].is_monotonic_increasing
    assert history["test_acc"].between(0, 1).all()
    assert history["wall_time"].is_monotonic_increasing

    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    summary = [line for line in lines if "test_acc=" in line]
    assert len(summary) == 1, captured.out
    wrote = lines[-1]  # the summary names every file the run wrote
    assert wrote.startswith("wrote ") and sorted(wrote[6:].split(", ")) == sorted(str(p) for p in out.iterdir())
    assert "\n" not in summary[0]
    assert summary[0].startswith("mgrawa M=2 tau=4 steps=20 rounds=5 ")
    acc = float(re.search(r"test_acc=([0-9.]+)", summary[0]).group(1))
    assert acc == pytest.approx(history["test_acc"].iloc[-1], abs=1e-4)
    assert "Traceback" not in captured.err


def test_run_without_out_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *TINY[:-4], "--algorithm", "dp", "--no-progress"]) == 0  # DP takes no --tau
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("dp M=2 ") and "test_acc=" in out
    assert list(tmp_path.iterdir()) == []


def test_run_into_existing_directory_replaces_the_run_whole(tmp_path, capsys):
    """Another run of the same config replaces the folder; one of another config needs --overwrite; a folder
    holding other files is never replaced (writing a run replaces its folder whole)."""
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out), "--no-progress"]) == 0
    (out / "flatness.csv").write_text("model\nevaluated\n")  # left by `flatness --run` on the first run
    assert main(["run", *TINY, "--out", str(out), "--no-progress"]) == 0
    assert not (out / "flatness.csv").exists()
    capsys.readouterr()
    assert main(["run", *TINY, "--steps", "8", "--out", str(out), "--no-progress"]) == 2
    assert "holds a run of another configuration" in capsys.readouterr().err
    assert load_config(out) == validate(TINY_CONFIG)
    assert main(["run", *TINY, "--steps", "8", "--out", str(out), "--overwrite", "--no-progress"]) == 0
    assert load_config(out) == validate(dataclasses.replace(TINY_CONFIG, steps=8))
    assert load_history(out)["step"].iloc[-1] == 8
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    capsys.readouterr()
    assert main(["run", *TINY, "--out", str(mine), "--overwrite", "--no-progress"]) == 2
    assert "holds files that are not a run's (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_sweep_command_writes_one_row_per_run_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["sweep", *TINY, "--algorithm", "dp,mgrawa", "--seed", "0,1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4
    assert sorted(zip(results["algorithm"], results["seed"])) == [("dp", 0), ("dp", 1), ("mgrawa", 0), ("mgrawa", 1)]
    assert (results["step"] == 20).all()
    assert len(list((out / "runs").iterdir())) == 4
    printed = capsys.readouterr().out
    assert "test_acc" in printed and "results.csv" in printed
    # one row per swept value (the seeds pooled): the algorithm, its mean ± 95 % interval over n = 2 seeds
    table = printed.split("wrote")[0]
    for algorithm in ("dp", "mgrawa"):
        finals = results[results["algorithm"] == algorithm]["test_acc"]
        line = next(row for row in table.splitlines() if row.startswith(algorithm))
        assert f"{finals.mean():.3f} ± " in line and "(n=2)" in line

    def no_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(grawa_sim.results.sweep, "run", no_run)
    assert main(argv) == 0
    assert pd.read_csv(out / "results.csv").equals(results)
    capsys.readouterr()


# ---------------------------------------------------------------- invalid input: one line, exit 2

# (extra argv, expected field or None for a generic argparse message, text the value must contain)
INVALID = {
    "unknown algorithm": (["--algorithm", "sgd"], "algorithm", "sgd"),
    "workers 0": (["--workers", "0"], "workers", "0"),
    "workers negative": (["--workers", "-1"], "workers", "-1"),
    "workers not an integer": (["--workers", "abc"], "workers", "abc"),
    "workers float": (["--workers", "2.5"], "workers", "2.5"),
    "tau 0": (["--tau", "0"], "tau", "0"),
    "tau float": (["--tau", "1.5"], "tau", "1.5"),
    "pull above 1": (["--pull", "1.5"], "pull", "1.5"),
    "pull not a number": (["--pull", "lots"], "pull", "lots"),
    "prox negative": (["--prox", "-0.1"], "prox", "-0.1"),
    "lr negative": (["--lr", "-1"], "lr", "-1"),
    "weight decay negative": (["--weight-decay", "-0.5"], "weight_decay", "-0.5"),
    "batch larger than a shard": (["--dataset", "digits", "--workers", "2", "--batch-size", "1000"],
                                  "batch_size", "1000"),
    "batch 0": (["--batch-size", "0"], "batch_size", "0"),
    "more workers than samples": (["--dataset", "digits", "--workers", "2000", "--batch-size", "1"],
                                  "workers", "2000"),
    "unknown dataset": (["--dataset", "imagenet"], "dataset", "imagenet"),
    "unknown model": (["--model", "resnet"], "model", "resnet"),
    "lstsq with a non-linear model": (["--dataset", "lstsq", "--model", "mlp"], "model", "mlp"),
    "sam with mgrawa": (["--sam", "true", "--algorithm", "mgrawa"], "sam", "True"),
    "sam not a boolean": (["--sam", "maybe"], "sam", "maybe"),
    "dp with a proximal pull": (["--algorithm", "dp", "--prox", "0.1"], "prox", "0.1"),
    "dtype float16": (["--dtype", "float16"], "dtype", "float16"),
    "momentum 1": (["--momentum", "1.0"], "momentum", "1.0"),
    "momentum negative": (["--momentum", "-0.1"], "momentum", "-0.1"),
    "steps 0": (["--steps", "0"], "steps", "0"),
    "seed negative": (["--seed", "-3"], "seed", "-3"),
    "eval_every 0": (["--eval-every", "0"], "eval_every", "0"),
    "grawa-norm bogus": (["--grawa-norm", "bogus"], "grawa_norm", "bogus"),
    "outer-lr with localsgd": (["--algorithm", "localsgd", "--outer-lr", "0.5"], "outer_lr", "0.5"),
    "outer-momentum 1 with diloco": (["--algorithm", "diloco", "--outer-momentum", "1"], "outer_momentum", "1"),
    "backend bogus": (["--backend", "bogus"], "backend", "bogus"),
    "execution bogus": (["--execution", "bogus"], "execution", "bogus"),
    "unknown flag": (["--learning-rate", "0.1"], None, "--learning-rate"),
    "flag without its value": (["--workers"], None, "workers"),
}


def assert_one_error_line(captured, field: str | None, value: str) -> str:
    assert captured.out == "", f"stdout must stay empty, got {captured.out!r}"
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.err.endswith("\n"), f"expected exactly one stderr line, got {captured.err!r}"
    line = lines[0]
    assert line.startswith("error: ")
    if field is None:
        assert value in line
    else:
        match = ERROR_LINE.fullmatch(line)
        assert match, f"not 'error: <field>: <why> (got <value>)': {line!r}"
        assert match["field"] == field
        assert value in match["value"]
    return line


@pytest.mark.parametrize("extra", INVALID.values(), ids=INVALID.keys())
def test_run_invalid_input_is_one_line_exit_2(tmp_path, capsys, extra):
    argv, field, value = extra
    out = tmp_path / "out"
    code = main(["run", "--no-progress", *argv, "--out", str(out)])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), field, value)
    assert not out.exists(), "--out must not be created for invalid input"


def test_run_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("not a directory")
    assert main(["run", *TINY, "--out", str(target), "--no-progress"]) == 2
    assert_one_error_line(capsys.readouterr(), "out", str(target))
    assert target.read_text() == "not a directory"


def test_run_out_below_an_existing_file(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("not a directory")
    code = main(["run", *TINY, "--out", str(target / "sub"), "--no-progress"])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), "out", "taken.txt")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_run_lr_not_finite(tmp_path, capsys, value):
    out = tmp_path / "out"
    code = main(["run", *TINY, "--algorithm", "dp", "--lr", value, "--out", str(out), "--no-progress"])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), "lr", value)
    assert not out.exists()


def test_no_command_is_one_line_exit_2(capsys):
    assert main([]) == 2
    assert_one_error_line(capsys.readouterr(), None, "command")


@pytest.mark.parametrize("argv, field, value", [
    (["--workers", "2,abc"], "workers", "abc"),
    (["--algorithm", "dp,nope"], "algorithm", "nope"),
    (["--dataset", "digits", "--workers", "2", "--batch-size", "8,1000"], "batch_size", "1000"),
    (["--momentum", "0.5,1.5"], "momentum", "1.5"),
], ids=["workers abc", "unknown algorithm", "batch larger than a shard", "momentum 1.5"])
def test_sweep_invalid_input_is_one_line_exit_2(tmp_path, capsys, argv, field, value):
    out = tmp_path / "out"
    assert main(["sweep", "--no-progress", *argv, "--out", str(out)]) == 2
    assert_one_error_line(capsys.readouterr(), field, value)
    assert not out.exists()


def test_sweep_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    assert main(["sweep", *TINY, "--out", str(target), "--no-progress"]) == 2
    assert_one_error_line(capsys.readouterr(), "out", str(target))


def test_reproduce_seeds_not_an_integer(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "--seeds", "two", "--out", str(out), "--figures", str(tmp_path / "f")]) == 2
    assert_one_error_line(capsys.readouterr(), "seeds", "two")
    assert not out.exists()


def test_reproduce_seeds_zero(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reproduce", "--seeds", "0", "--out", str(out), "--figures", str(tmp_path / "f"), "--no-progress"])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), "seeds", "0")


# ---------------------------------------------------------------- the real process: exit code, no traceback


SUBPROCESS_CASES = {
    "workers 0": (["--workers", "0"], "workers", "0"),
    "batch larger than a shard": (["--dataset", "digits", "--workers", "2", "--batch-size", "1000"],
                                  "batch_size", "1000"),
    "unknown flag": (["--bogus", "3"], None, "--bogus"),
}


def test_invalid_input_in_a_real_process(tmp_path):
    """Started side by side: each interpreter start (torch import) takes a few seconds."""
    procs = {}
    for name, (argv, _, _) in SUBPROCESS_CASES.items():
        out = tmp_path / name.replace(" ", "_")
        procs[name] = (out, subprocess.Popen([sys.executable, "-m", "grawa_sim", "run", *argv, "--out", str(out)],
                                             cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for name, (out, proc) in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 2, (name, stderr)
            _, field, value = SUBPROCESS_CASES[name]
            assert_one_error_line(SimpleNamespace(out=stdout, err=stderr), field, value)
            assert not out.exists()
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- the Python API raises ValueError


@pytest.mark.parametrize("fields, field", [
    ({"workers": 0}, "workers"),
    ({"tau": 0}, "tau"),
    ({"algorithm": "sgd"}, "algorithm"),
    ({"pull": 1.5}, "pull"),
    ({"momentum": 1.0}, "momentum"),
    ({"workers": "4"}, "workers"),
    ({"sam": True, "algorithm": "lsgd"}, "sam"),
    ({"dataset": "digits", "model": "logistic", "workers": 2, "batch_size": 1000}, "batch_size"),
], ids=["workers 0", "tau 0", "algorithm", "pull", "momentum", "workers str", "sam", "batch vs shard"])
def test_api_run_raises_value_error(fields, field):
    """Config(...) rejects what it can check alone when built; run() what needs the data (the shard size)."""
    with pytest.raises(ValueError) as info:
        grawa_sim.run(Config(**fields), progress=False)
    assert ERROR_LINE.fullmatch("error: " + str(info.value)), str(info.value)
    assert str(info.value).startswith(f"{field}: ")


# ---------------------------------------------------------------- reproduce (end to end)


@pytest.mark.slow
def test_reproduce_quick(tmp_path, capsys):
    out, figures = tmp_path / "results", tmp_path / "figures"
    code = main(["reproduce", "--quick", "--out", str(out), "--figures", str(figures), "--no-progress"])
    assert code == 0

    figure = figures / "comparison_mnist1d.png"
    assert figure.is_file()
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    methods = [*COMPARED, "mgrawa+uniform", "lgrawa+uniform"]  # every GRAWA beside its uniform twin
    results = pd.read_csv(out / "results.csv")
    assert len(results) == len(methods)
    assert sorted(results["algorithm"]) == sorted([*COMPARED, "mgrawa", "lgrawa"])
    assert sorted(results["weighting"].dropna()) == ["inverse_norm", "inverse_norm", "uniform", "uniform"]
    assert results["run"].is_unique
    assert results["test_acc"].between(0, 1).all()
    assert (results["step"] == results["steps"]).all()

    summary = pd.read_csv(out / "summary.csv", index_col="algorithm")
    assert sorted(summary.index) == sorted(methods)
    assert "test_acc_mean" in summary.columns and summary.loc["localsgd", "diff_vs_ref"] == 0
    assert summary["test_acc_mean"].is_monotonic_decreasing  # best first
    contrasts = pd.read_csv(out / "contrasts.csv")
    assert list(contrasts["contrast"][:3]) == ["mgrawa − mgrawa+uniform", "mgrawa − dp", "mgrawa − localsgd"]
    assert {"p", "p_holm", "smallest_detectable"} <= set(contrasts.columns)

    printed = capsys.readouterr().out
    table = printed.split("wrote")[0]
    for algorithm in COMPARED:
        assert re.search(rf"^{algorithm}\s", table, re.MULTILINE), f"{algorithm} missing from:\n{printed}"
    assert "(n=1)" in table and "worst seed" in table  # mean (± 95 % interval when n > 1), the worst seed


# ---------------------------------------------------------------- one helper for every entry point's errors


def test_one_line_errors_gives_every_entry_point_the_same_line_and_status(capsys):
    """`python -m grawa_sim` and the torchrun ranks report through cli.flags.one_line_errors: bad input 2,
    a failed run 1 (a failure one process met is `local`), anything else raises."""
    from grawa_sim.algorithms.grawa import DivergenceError
    from grawa_sim.cli.flags import CLIError, Failed, failure, one_line_errors
    from grawa_sim.config import ConfigError
    from grawa_sim.engine.problem import OutOfMemory
    from grawa_sim.results.storage import StorageError

    def raising(error):
        def body():
            raise error
        return body

    cases = [(ConfigError("lr: must be >= 0 (got -1)"), 2, False), (CLIError("workers: must be an integer"), 2, False),
             (DivergenceError("diverged at step 3"), 1, False), (OutOfMemory("out of memory"), 1, True),
             (StorageError("out: cannot write 'x'"), 1, True), (Failed("a rank died", 1), 1, False),
             (Failed("bad input on a rank", 2), 2, False)]
    for error, code, local in cases:
        assert one_line_errors(raising(error)) == code
        assert capsys.readouterr().err == f"error: {error}\n"
        assert (failure(error).code, failure(error).local) == (code, local)
        assert one_line_errors(raising(error), report=lambda found: 7) == 7
    assert one_line_errors(lambda: None) == 0 and one_line_errors(lambda: 3) == 3
    for bug in (ValueError("not a user error"), KeyError("x"), OSError("plain")):
        with pytest.raises(type(bug)):
            one_line_errors(raising(bug))
    assert capsys.readouterr().err == ""
