"""Issue 11, reliability: one test per fault (numbered as in the issue); tests/fault_probe.py measures them all.

Divergence (1-3), output folders (4-8), reuse only whole runs (9-10), processes (11-12),
input and memory (13-15), quick modes and committed files (16).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

import grawa_sim.results.storage
import grawa_sim.results.sweep
from grawa_sim import Config, run
from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.cli.main import main
from grawa_sim.config import ALGORITHMS, ConfigError, ConfigWarning, resolve
from grawa_sim.engine.problem import validate
from grawa_sim.results.storage import is_complete, load_history, save_result, stored_status
from grawa_sim.results.sweep import grid, run_key, sweep
from tests.processes import children, descendants, running

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
FLAGS = ["--dataset", "digits", "--model", "logistic", "--workers", "2", "--steps", "20", "--batch-size", "8",
         "--no-progress"]  # for DP (no --tau)
TINY = [*FLAGS, "--tau", "4"]
BASE = Config(dataset="digits", model="logistic", workers=2, steps=20, tau=4, batch_size=8, eval_every=4)
DIVERGING = {"lr": 1e6}  # logistic regression on digits: non-finite within 20 steps


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def quiet_sweep(configs, out):
    log = io.StringIO()
    return sweep(configs, out, progress=False, log=log), log.getvalue()


def grawa_cli(*argv, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "grawa_sim", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})}, cwd=ROOT)


# ---------------------------------------------------------------- 1-3 divergence


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_01_every_algorithm_stops_at_the_first_non_finite_loss(algorithm):
    cfg = dataclasses.replace(BASE, algorithm=algorithm, tau=None if algorithm == "dp" else 4, **DIVERGING)
    with pytest.raises(DivergenceError) as info:
        run(cfg, progress=False)
    e = info.value
    assert str(e).startswith(f"diverged at step {e.step} ({algorithm}, M=2") and "\n" not in str(e)
    assert 0 < e.step < cfg.steps
    assert len(e.history) and (e.history["step"] < e.step).all()
    assert e.history[["train_loss", "test_loss", "spread"]].notna().all().all()  # the rows before it are finite


def test_01_cli_divergence_is_one_line_exit_1(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--algorithm", "easgd", "--lr", "1e6", "--out", str(out)]) == 1
    assert one_line(capsys.readouterr().err).startswith("error: diverged at step ")
    assert not out.exists()


def test_02_sweep_records_diverged_runs_and_goes_on(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    configs = [dataclasses.replace(BASE, **DIVERGING), BASE, dataclasses.replace(BASE, algorithm="lsgd", **DIVERGING)]
    histories, log = quiet_sweep(configs, out)
    results = pd.read_csv(out / "results.csv")
    assert list(results["run"]) == [run_key(validate(c)) for c in configs]  # every run, in order
    assert list(results["status"]) == ["diverged", "finished", "diverged"]
    diverged = results[results["status"] == "diverged"]
    assert (diverged["step"] < BASE.steps).all() and diverged["test_acc"].isna().all()
    assert results.loc[1, "step"] == BASE.steps
    assert log.count("diverged at step") == 2
    finals = histories.groupby("run", sort=False).tail(1).reset_index(drop=True)
    assert list(finals["status"]) == list(results["status"])

    calls = []
    monkeypatch.setattr(grawa_sim.results.sweep, "run", lambda *a, **k: calls.append(a) or run(*a, **k))
    again, log = quiet_sweep(configs, out)  # the diverged runs are recorded, not retried
    assert calls == [] and log.count("reused") == 3 and log.count("diverged before") == 2
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)

    capsys.readouterr()
    assert main(["sweep", *TINY, "--lr", "1e6,0.05", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 runs diverged" in printed


@pytest.mark.xdist_group("torchrun")
def test_03_distributed_divergence_is_the_same_one_line(tmp_path):
    out = tmp_path / "run"
    done = grawa_cli("run", *TINY, "--algorithm", "easgd", "--lr", "1e6", "--ranks", "2",
                     "--timeout", "30", "--out", out)
    assert done.returncode == 1, done.stderr[-2000:]
    single = None
    try:
        run(resolve(Config(**{**dataclasses.asdict(BASE), "algorithm": "easgd", "eval_every": None, **DIVERGING})),
            progress=False)
    except DivergenceError as e:
        single = str(e)
    assert one_line(done.stderr) == f"error: {single}"
    assert not out.exists()


# ---------------------------------------------------------------- 4-8 output folders


def _no_training(monkeypatch):
    import grawa_sim.engine.runner

    def refuse(*args, **kwargs):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(grawa_sim.engine.runner, "run", refuse)
    monkeypatch.setattr(grawa_sim.results.sweep, "run", refuse)


@pytest.mark.parametrize("command", ["run", "sweep", "reproduce", "anchor"])
def test_04_unwritable_out_is_one_line_exit_2_before_training(command, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    extra = TINY if command in ("run", "sweep") else ["--quick", "--figures", str(tmp_path / "f"), "--no-progress"]
    start = time.monotonic()
    assert main([command, *extra, "--out", "/proc/grawa-sim-test/out"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: out: cannot write there: ") and "/proc/grawa-sim-test/out" in line
    assert time.monotonic() - start < 1


def test_04_unwritable_out_in_a_real_process_within_a_second(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", *TINY, "--out", "/proc/grawa-sim-test"],
                          capture_output=True, text=True, timeout=60, env=ENV, cwd=tmp_path)
    assert done.returncode == 2 and time.monotonic() - start < 1.5  # before torch is even imported
    assert one_line(done.stderr).startswith("error: out: cannot write there")


def test_04_read_only_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("no tmpfs mount here")
    try:
        _no_training(monkeypatch)
        assert main(["run", *TINY, "--out", str(ro / "run")]) == 2
        assert "read-only file system" in one_line(capsys.readouterr().err)
    finally:
        subprocess.run(["umount", str(ro)])


def test_04_flatness_write_error_is_one_line(tmp_path, capsys):
    save_result(run(BASE, progress=False), tmp_path / "r")
    (tmp_path / "r" / "flatness.csv").mkdir()  # flatness.csv cannot be written (even by root)
    assert main(["flatness", "--run", str(tmp_path / "r"), "--metrics", "loss", "--probe", "16"]) == 1
    assert one_line(capsys.readouterr().err).startswith(f"error: out: cannot write '{tmp_path / 'r'}'")


def test_05_write_error_is_one_line_and_leaves_no_partial_folder(tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(grawa_sim.results.storage.torch, "save", disk_full)
    out = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(out)]) == 1
    assert one_line(capsys.readouterr().err) == f"error: out: cannot write '{out}': no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_05_full_disk(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("no tmpfs mount here")
    try:
        assert main(["run", *TINY, "--model", "mlp", "--tau", "4", "--out", str(full / "run")]) == 1
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"error: out: cannot write '{full / 'run'}'") and "no space left" in line
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)])


def test_06_a_run_folder_is_replaced_whole(tmp_path):
    """save_result: nothing of an earlier run survives; another config needs overwrite (see also test_cli)."""
    out = tmp_path / "run"
    save_result(run(BASE, progress=False), out)
    (out / "flatness.csv").write_text("model\nevaluated\n")
    other = run(dataclasses.replace(BASE, seed=3), progress=False)
    with pytest.raises(ConfigError, match="another configuration"):
        save_result(other, out)
    save_result(other, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "params.pt", "weights.csv"]
    assert is_complete(out, other.config)


KILL_AT_MOVE = """
import os, signal, sys
import grawa_sim.results.storage as storage
from grawa_sim import Config, run
when = sys.argv[2]
from grawa_sim.config import from_dict
cfg = from_dict(__import__("json").loads(sys.argv[3]))
result = run(cfg, progress=False)
real_rename, real_exchange = storage.os.rename, storage._exchange
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def rename(a, b):
    if when == "before":
        die()
    real_rename(a, b)
    die()
def exchange(a, b):
    if when == "before":
        die()
    real_exchange(a, b)
    die()
storage.os.rename, storage._exchange = rename, exchange
storage.save_result(result, sys.argv[1], overwrite=True)
"""


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("existing", [True, False], ids=["over a run", "new folder"])
def test_07_killed_at_the_move_leaves_a_whole_run_and_the_next_save_cleans_up(tmp_path, when, existing):
    out = tmp_path / "runs" / "r"
    if existing:
        save_result(run(BASE, progress=False), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else None
    other = dataclasses.replace(BASE, seed=7)
    done = subprocess.run([sys.executable, "-c", KILL_AT_MOVE, str(out), when,
                           json.dumps(dataclasses.asdict(other))], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = hidden(tmp_path)
    if when == "before" or existing:
        assert len(left) == 1 and left[0].startswith("runs/.r."), left  # the written (or the earlier) run
    if when == "before":
        assert ({p.name: p.read_bytes() for p in out.iterdir()} == before) if existing else not out.exists()
    else:  # the new run is in place, whole
        assert is_complete(out, validate(other))
    save_result(run(dataclasses.replace(BASE, seed=8), progress=False), tmp_path / "runs" / "r", overwrite=True)
    assert hidden(tmp_path) == []


def test_07_stale_temporaries_are_removed_by_the_next_sweep(tmp_path):
    out = tmp_path / "sweep"
    quiet_sweep([BASE], out)
    key = run_key(validate(BASE))
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (out / "runs" / f".{key}.{dead}.abcd").mkdir()
    (out / "runs" / f".{key}.{dead}.abcd" / "history.csv").write_text("step\n")
    (out / "runs" / f".{key}.x1y2z3w4").mkdir()  # an earlier version's name
    (out / f".results.csv.{dead}.ef01").write_text("run\n")
    live = out / "runs" / f".{key}.{os.getpid()}.beef"  # a write in progress (this process): kept
    live.mkdir()
    (out / ".notes").write_text("a user's hidden file: kept")
    quiet_sweep([BASE, dataclasses.replace(BASE, seed=1)], out)
    assert hidden(out) == [".notes", f"runs/.{key}.{os.getpid()}.beef"]


def test_08_result_files_are_0644(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "sweep"
        quiet_sweep([BASE], out)
        run_dir = out / "runs" / run_key(validate(BASE))
        from grawa_sim.results.run_flatness import measure_run

        measure_run(run_dir, metrics=("loss",), probe=16)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out / "results.csv", *run_dir.iterdir()]}
        assert set(modes.values()) == {0o644}, modes
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755
    finally:
        os.umask(old)


# ---------------------------------------------------------------- 9-10 reuse only what is whole


def _cut(path: Path, how: str) -> None:
    text = path.read_bytes()
    lines = text.splitlines(keepends=True)
    path.write_bytes({"3 rows": b"".join(lines[:4]), "empty": b"", "mid-row": text[:-7],
                      "header only": lines[0]}[how])


@pytest.mark.parametrize("how", ["3 rows", "empty", "mid-row", "header only", "params", "config"])
def test_09_only_whole_runs_are_reused(tmp_path, monkeypatch, how):
    out = tmp_path / "sweep"
    first, _ = quiet_sweep([BASE], out)
    run_dir = out / "runs" / run_key(validate(BASE))
    if how == "params":
        (run_dir / "params.pt").write_bytes((run_dir / "params.pt").read_bytes()[:100])
    elif how == "config":
        (run_dir / "config.json").write_text("{")
    else:
        _cut(run_dir / "history.csv", how)
    assert stored_status(run_dir, validate(BASE)) is None
    calls = []
    monkeypatch.setattr(grawa_sim.results.sweep, "run", lambda *a, **k: calls.append(a) or run(*a, **k))
    again, log = quiet_sweep([BASE], out)
    assert len(calls) == 1 and "running" in log
    assert load_history(run_dir)["step"].iloc[-1] == BASE.steps
    assert pd.read_csv(out / "results.csv")["step"].iloc[-1] == BASE.steps
    pd.testing.assert_frame_equal(again.drop(columns="wall_time"), first.drop(columns="wall_time"))


def test_09_budget_runs_are_whole_at_their_budget(tmp_path):
    cfg = dataclasses.replace(BASE, steps=10_000, time_budget=0.05, step_time=0.001)
    quiet_sweep([cfg], tmp_path / "s")
    assert is_complete(tmp_path / "s" / "runs" / run_key(validate(cfg)), validate(cfg))


def test_10_flatness_on_an_unreadable_params_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "r"
    save_result(run(BASE, progress=False), out)
    for garbage in (b"not a zip file", (out / "params.pt").read_bytes()[:300]):
        (out / "params.pt").write_bytes(garbage)
        assert main(["flatness", "--run", str(out), "--metrics", "loss"]) == 2
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"error: run: cannot read {out / 'params.pt'}") and "weights_only" not in line
    torch.save({"workers": {}}, out / "params.pt")
    assert main(["flatness", "--run", str(out), "--metrics", "loss"]) == 2
    assert "not the tensors of a grawa-sim run" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- 11-12 processes


@pytest.mark.xdist_group("torchrun")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-death signals are Linux")
@pytest.mark.parametrize("victim", ["torchrun", "launcher"])
def test_11_killing_torchrun_or_the_launcher_ends_every_rank(tmp_path, victim):
    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", "--workers", "2",
                                 "--model", "mlp", "--steps", "1000000", "--timeout", "30", "--out", str(out),
                                 "--no-progress"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(family) < 3:  # torchrun and two ranks
            time.sleep(0.2)
            family = descendants(launcher.pid)
        assert len(family) >= 3, "torchrun did not start its ranks"
        torchrun = children()[launcher.pid][0]
        time.sleep(1)  # the ranks may still be importing torch: they must die all the same
        os.kill(torchrun if victim == "torchrun" else launcher.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and running(family):
            time.sleep(0.2)
        assert running(family) == set()
        launcher.wait(timeout=30)
        if victim == "torchrun":
            assert launcher.returncode == 1
        assert not out.exists()
    finally:
        for pid in running(family | {launcher.pid}):
            os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=30)


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_12_timeout_must_be_positive(value, tmp_path, capsys, monkeypatch):
    from grawa_sim.cli import distributed

    monkeypatch.setattr(distributed.subprocess, "Popen", lambda *a, **k: pytest.fail("torchrun started"))
    assert main(["run", *TINY, "--ranks", "2", "--timeout", value, "--out", str(tmp_path / "r")]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: timeout: must be a positive number of seconds")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 13-15 input and memory


@pytest.mark.parametrize("flags, field", [
    (["--alpha", "0.3"], "alpha"),
    (["--algorithm", "dp", "--tau", "8"], "tau"),
    (["--algorithm", "dp", "--pull", "0.5"], "pull"),
    (["--algorithm", "dp", "--speeds", "1,2", "--speed-spread", "0.5"], "speed_spread"),
    (["--sam-rho", "0.1"], "sam_rho"),
    (["--tau", "64"], "tau"),
], ids=["alpha without dirichlet", "tau with dp", "pull with dp", "speed_spread with speeds", "sam_rho without sam",
        "tau > steps"])
def test_13_a_flag_without_effect_is_one_line_exit_2(flags, field, tmp_path, capsys):
    assert main(["run", *(FLAGS if "dp" in flags else TINY), *flags, "--out", str(tmp_path / "r")]) == 2
    assert one_line(capsys.readouterr().err).startswith(f"error: {field}: ")
    assert not (tmp_path / "r").exists()


def test_13_config_validates_when_built():
    with pytest.raises(ConfigError, match=r"^momentum: must lie in \[0, 1\)"):
        Config(momentum=2.0)
    with pytest.raises(ConfigError, match=r"^tau: larger than steps=20: no round would happen"):
        Config(steps=20, tau=32)
    with pytest.raises(ConfigError, match=r"^workers: "):
        dataclasses.replace(BASE, workers=0)


def test_13_legitimate_combinations_warn_naming_the_field():
    with pytest.warns(ConfigWarning, match=r"^tau: DP communicates every step"):
        dp = dataclasses.replace(Config(tau=8), algorithm="dp")  # a shared base
    assert resolve(dp) == resolve(Config(algorithm="dp"))  # the same run as without it
    with pytest.warns(ConfigWarning, match=r"^alpha: .*left unset in 2 combination"):
        configs = grid(Config(alpha=0.1, partition="dirichlet"), partition=["iid", "dirichlet"], seed=[0, 1])
    assert [c.alpha for c in configs] == [None, None, 0.1, 0.1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        grid(Config(), algorithm=["mgrawa", "easgd"])  # nothing to say


def test_13_cosine_cut_short_by_the_time_budget_warns(capsys):
    cfg = dataclasses.replace(BASE, lr_schedule="cosine", time_budget=0.005, step_time=0.001)
    with pytest.warns(ConfigWarning, match=r"^lr_schedule: the cosine anneals to 0 at steps=20, but time_budget"):
        validate(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(dataclasses.replace(cfg, time_budget=1.0))
        validate(dataclasses.replace(cfg, lr_decay_unit="seconds"))
    assert main(["run", *TINY, "--lr-schedule", "cosine", "--time-budget", "0.005", "--step-time",
                 "0.001"]) == 0
    assert capsys.readouterr().err.startswith("warning: lr_schedule: the cosine anneals to 0")


def test_14_out_of_memory_is_one_line_naming_m_and_the_model(capsys):
    assert main(["run", *TINY, "--model", "mlp", "--width", "4000000000"]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: memory: M=2 workers of model mlp width 4000000000 (float32) do not fit in CPU")


def test_14_gpu_out_of_memory_is_one_line(monkeypatch):
    import grawa_sim.engine.problem

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity...")

    monkeypatch.setattr(grawa_sim.engine.problem, "build_engine", oom)
    with pytest.raises(grawa_sim.engine.problem.OutOfMemory) as info:
        run(dataclasses.replace(BASE, workers=2), progress=False)
    assert str(info.value) == ("memory: M=2 workers of model logistic (float32) do not fit in CPU memory "
                               "(an allocation of 2.00 GiB failed); use fewer workers, a smaller model or batch")


def test_14_spread_holds_few_float64_elements_at_once():
    from torch.utils._python_dispatch import TorchDispatchMode

    from grawa_sim.core.collectives import StackedAxis
    from grawa_sim.engine.recorder import spread

    class Largest(TorchDispatchMode):
        size = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                    Largest.size = max(Largest.size, t.numel())
            return out

    gen = torch.Generator().manual_seed(0)
    params = {"a": torch.randn(256, 64, 32, generator=gen), "b": torch.randn(256, 10, generator=gen)}
    with Largest():
        got = spread(params, StackedAxis(256), chunk=4096)
    assert Largest.size <= 4096 < params["a"].numel()
    flat = torch.cat([p.double().flatten(1) for p in params.values()], 1)
    assert got == pytest.approx(float((flat - flat.mean(0)).norm(dim=1).mean()), rel=1e-12)


def test_15_result_repr_is_a_short_summary():
    result = run(dataclasses.replace(BASE, workers=8, model="mlp"), progress=False)
    text = repr(result)
    assert len(text) < 200 and "\n" not in text and "tensor" not in text
    assert text.startswith("Result(mgrawa, M=8, mlp on digits, seed=0, ") and "test_acc=" in text


# ---------------------------------------------------------------- 16 quick modes and committed files


def test_16_quick_modes_write_to_scratch_not_to_committed_files(tmp_path, monkeypatch, capsys):
    from grawa_sim.experiments import presets as experiments

    project = tmp_path / "project"  # a stand-in checkout: its figures/ are the committed ones
    (project / "figures").mkdir(parents=True)
    (project / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    monkeypatch.chdir(project)
    for key in (experiments.FIGURES_ENV, experiments.RESULTS_ENV, experiments.SCRATCH_ENV, experiments.QUICK_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(experiments, "comparison_configs",
                        lambda quick, seeds=3: grid(BASE, algorithm=["mgrawa", "localsgd"]))  # its reference
    assert main(["reproduce", "--quick", "--no-progress"]) == 0
    assert list((project / "figures").iterdir()) == []
    scratch = project / "results" / "quick"
    assert (scratch / "figures" / "comparison_mnist1d.png").is_file()
    assert (scratch / "results" / "reproduce" / "results.csv").is_file()

    monkeypatch.setenv(experiments.QUICK_ENV, "1")  # GRAWA_QUICK=1: notebooks and the CLI alike
    assert experiments.figures_dir() == scratch / "figures"
    assert experiments.results_dir() == scratch / "results"
    monkeypatch.setenv(experiments.QUICK_ENV, "0")
    assert experiments.figures_dir() == project / "figures"
    assert experiments.results_dir() == project / "results"


def test_16_the_suite_writes_into_a_scratch_folder():
    from grawa_sim.experiments import presets as experiments

    for key in (experiments.SCRATCH_ENV, experiments.FIGURES_ENV, experiments.RESULTS_ENV):
        assert ROOT not in Path(os.environ[key]).resolve().parents, key


def test_17_two_processes_creating_one_out_folder_do_not_fail(tmp_path, monkeypatch):
    """Another process creates the folder between the existence check and mkdir (two sweeps or two jobs
    starting together): the check accepts the folder that now exists, and still refuses a file."""
    import pathlib

    from grawa_sim.core.folders import check_writable

    target = tmp_path / "out" / "runs"
    real_mkdir = pathlib.Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)  # the other process wins ...
        raise FileExistsError(17, "File exists", str(self))  # ... so this one's mkdir fails

    monkeypatch.setattr(pathlib.Path, "mkdir", racing_mkdir)
    check_writable(target)
    monkeypatch.setattr(pathlib.Path, "mkdir", real_mkdir)
    assert target.is_dir()
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(ValueError, match="^out: .*file.* (is not a directory|cannot write there)"):
        check_writable(blocked / "runs")


# ---------------------------------------------------------------- 18-21 worker processes and locks (issue 12)

ORPHANED_SWEEP = """
import json, sys
from grawa_sim.config import from_dict
from grawa_sim.results.sweep import grid, sweep

if __name__ == "__main__":
    configs = grid(from_dict(json.loads(sys.argv[2])), seed=[0, 1, 2])
    sweep(configs, sys.argv[1], progress=False, jobs=2, batch_runs=2)
"""
LONG = dataclasses.replace(BASE, algorithm="dp", tau=None, steps=3000, eval_every=3000)  # seconds per ensemble


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process trees from /proc")
def test_18_killing_a_parallel_sweep_ends_its_workers_and_a_rerun_completes_it(tmp_path):
    """SIGKILL of a `sweep --jobs 2` parent in the middle of an ensemble: its spawned workers (and the
    resource tracker they keep open) are gone within seconds instead of computing on under PID 1."""
    script, out = tmp_path / "orphans.py", tmp_path / "sweep"
    script.write_text(ORPHANED_SWEEP)
    parent = subprocess.Popen([sys.executable, str(script), str(out), json.dumps(dataclasses.asdict(LONG))],
                              env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / "locks").glob("*")):  # an ensemble has started
            family |= descendants(parent.pid)
            time.sleep(0.05)
        family |= descendants(parent.pid)
        if not list((out / "locks").glob("*")):
            parent.kill()
            pytest.fail(f"the workers did not start a run: {parent.communicate(timeout=30)[1].decode()[-2000:]}")
        assert len(family) >= 2, family  # two workers (and a resource tracker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and running(family):
            time.sleep(0.1)
        assert running(family) == set(), "workers outlived their parent"
        assert not list((out / "runs").glob("dp-*"))  # and stored nothing after it died
    finally:
        for pid in running(family | {parent.pid}):
            os.kill(pid, signal.SIGKILL)
    histories, log = quiet_sweep(grid(LONG, seed=[0, 1, 2]), out)  # the killed workers' locks are taken over
    assert list(pd.read_csv(out / "results.csv")["status"]) == ["finished"] * 3
    assert not list((out / "locks").iterdir())


def test_19_a_lock_of_a_reused_pid_is_taken_over(tmp_path):
    """The lock names a live process (this test's parent) that started at another time than the one that
    took it: a pid reused after a container restart. It is stale: taken over, the run computed."""
    from grawa_sim.core.folders import Holder, claim, holder, process_start, process_start_time, release

    lock = tmp_path / "lock"
    parent = os.getppid()
    reused = dataclasses.replace(Holder.me(), pid=parent, started=process_start(parent) + 1)
    lock.write_text(reused.record())
    assert holder(lock) == reused and not reused.alive()
    assert claim(lock) and holder(lock).is_me()
    release(lock)
    assert not lock.exists()

    for earlier in (dataclasses.replace(reused, started=process_start(parent)),  # the same process: live
                    dataclasses.replace(reused, started=None)):  # no start time recorded: the pid decides
        lock.write_text(earlier.record())
        assert not claim(lock) and holder(lock) == earlier
    lock.write_text(f"{parent}\n")  # an old lock file (the pid only), written after that process started: live
    assert not claim(lock) and holder(lock).pid == parent
    os.utime(lock, (process_start_time(parent) - 60,) * 2)  # written before it started: another process's pid
    assert claim(lock) and holder(lock).is_me()
    release(lock)
    lock.write_text(dataclasses.replace(reused, started=process_start(parent), boot="another-boot").record())
    assert claim(lock)  # recorded before a reboot
    release(lock)

    cfg = validate(dataclasses.replace(BASE, steps=8))
    locks = tmp_path / "sweep" / "locks"
    locks.mkdir(parents=True)
    (locks / run_key(cfg)).write_text(reused.record())
    histories, log = quiet_sweep([cfg], tmp_path / "sweep")
    assert (histories["status"] == "finished").all() and "waiting" not in log
    assert not (locks / run_key(cfg)).exists()


def test_19_a_live_holder_is_waited_for_with_one_line(tmp_path, monkeypatch):
    """A lock held by a live process (recorded with its start time): the sweep says whom it waits for at
    once, then every WAIT_REPORT_EVERY seconds, and reuses what the holder stored."""
    import threading

    from grawa_sim.core.folders import Holder, process_start

    cfg = validate(dataclasses.replace(BASE, steps=8))
    result = run(cfg, progress=False)
    other = subprocess.Popen(["sleep", "30"])
    try:
        since = time.time() - 3600
        lock = tmp_path / "locks" / run_key(cfg)
        lock.parent.mkdir(parents=True)
        lock.write_text(Holder(other.pid, Holder.me().host, process_start(other.pid), Holder.me().boot,
                               since).record())
        monkeypatch.setattr(grawa_sim.results.sweep, "WAIT_REPORT_EVERY", 0.6)
        monkeypatch.setattr(grawa_sim.results.sweep, "run", lambda *a, **k: pytest.fail("computed it again"))

        def the_holder_finishes():
            save_result(result, tmp_path / "runs" / run_key(cfg), overwrite=True)
            lock.unlink()

        timer = threading.Timer(2.0, the_holder_finishes)
        timer.start()
        try:
            histories, log = quiet_sweep([cfg], tmp_path)
        finally:
            timer.cancel()
    finally:
        other.kill()
        other.wait()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    waiting = [line for line in log.splitlines() if line.startswith("waiting")]
    assert waiting and set(waiting) == {f"waiting for {run_key(cfg)} held by pid {other.pid} on "
                                        f"{Holder.me().host} since {stamp}"}
    assert 2 <= len(waiting) <= 5  # repeated, rarely (here every 0.6 s of 2 s)
    assert "computed by another process, reused" in log
    pd.testing.assert_frame_equal(histories[result.history.columns], result.history, check_dtype=False)


def test_19_a_holder_on_another_host_is_waited_for_naming_the_host(tmp_path):
    from grawa_sim.core.folders import Holder, claim, holder

    lock = tmp_path / "lock"
    elsewhere = Holder(2**22 + 12345, "another-host", 1, "another-boot", time.time())  # no such pid here
    lock.write_text(elsewhere.record())
    assert elsewhere.alive() and not claim(lock)  # cannot be checked from here: trusted
    assert holder(lock).describe().startswith(f"pid {2**22 + 12345} on another-host since ")


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_20_a_lock_that_cannot_be_created_is_one_line_and_leaves_no_lock(tmp_path, capsys, monkeypatch, code):
    """Disk full after the start-up check, or the folder remounted read-only: taking a run's lock fails like
    any other write (one line naming the folder, exit 1), not with a traceback from core/folders.claim."""
    import errno

    from grawa_sim.core import folders

    real_open, locks = os.open, tmp_path / "sweep" / "locks"

    def failing_open(path, *args, **kwargs):
        if Path(path).parent == locks:
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(folders.os, "open", failing_open)
    why = "no space left on device" if code == "ENOSPC" else "read-only file system"
    for batch in ("1", "2"):  # run by run, and both runs as one ensemble
        assert main(["sweep", *TINY, "--seed", "0,1", "--batch-runs", batch, "--out", str(tmp_path / "sweep")]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and [line for line in err.splitlines() if "error" in line] == [
            f"error: out: cannot write '{locks}': {why}"], err  # after the sweep's progress lines
        assert list(locks.iterdir()) == []


@pytest.mark.parametrize("batch", ["1", "2"])
def test_20_a_lock_that_cannot_be_written_on_a_full_disk_leaves_no_empty_lock(tmp_path, capsys, monkeypatch, batch):
    """The disk fills up after the start-up check: the lock file is created but its record cannot be written.
    One line, exit 1, and no empty lock file left behind (which would block the run for ten seconds)."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("no tmpfs mount here")
    try:
        out, real_remove = full / "sweep", grawa_sim.results.sweep.remove_stale_temps

        def fill_the_disk(*args, **kwargs):  # called by sweep() right after its write check
            (out / "locks").mkdir(parents=True, exist_ok=True)
            try:
                with open(full / "filler", "ab", buffering=0) as fh:
                    while True:
                        fh.write(b"x" * 4096)
            except OSError:  # full
                pass
            return real_remove(*args, **kwargs)

        monkeypatch.setattr(grawa_sim.results.sweep, "remove_stale_temps", fill_the_disk)
        assert main(["sweep", *TINY, "--seed", "0,1", "--batch-runs", batch, "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and [line for line in err.splitlines() if "error" in line] == [
            f"error: out: cannot write '{out / 'locks'}': no space left on device"], err
        assert list((out / "locks").iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)])
