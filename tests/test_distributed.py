"""torch.distributed (gloo, this CPU) against the single-process simulation; failure behaviour."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import from_dict, run_identity, to_dict
from grawa_sim.core.ports import torchrun_command
from grawa_sim.results.storage import load_config, load_history, load_params
from tests.helpers import max_abs_diff, method_name, methods

# One xdist worker runs every torchrun launch (make test: --dist loadgroup): concurrent launches pick
# rendezvous ports that the other job's gloo connections may take in between.
pytestmark = pytest.mark.xdist_group("torchrun")
ROOT = Path(__file__).parents[1]
BASE = Config(workers=4, steps=50, tau=8, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="mnist1d", model="mlp", batch_size=16, eval_every=10)
CASES = [method_name(a, sam) for a, sam in methods()]
HISTORY = ["step", "round", "train_loss", "test_loss", "test_acc", "worker_loss", "center_test_loss", "spread"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _torchrun(ranks: int, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(ranks, args), capture_output=True, text=True, timeout=timeout, env=ENV,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def simulated() -> dict:
    return {case: run(dataclasses.replace(BASE, algorithm=case.split("+")[0], sam=case.endswith("+sam")),
                      progress=False) for case in CASES}


@pytest.mark.parametrize("ranks", [2, 4], ids=["2ranks-x2workers", "4ranks-x1worker"])
def test_distributed_matches_simulation(ranks, simulated, tmp_path):
    done = _torchrun(ranks, [str(ROOT / "tests" / "dist_driver.py"), str(tmp_path), json.dumps(to_dict(BASE))])
    assert done.returncode == 0, done.stderr[-3000:]
    for case in CASES:
        sim = simulated[case]
        saved = load_params(tmp_path / case)
        assert max_abs_diff(saved["workers"], sim.workers) <= 1e-5, case
        assert max_abs_diff(saved["evaluated"], sim.evaluated) <= 1e-5, case
        assert max_abs_diff(saved["center"], sim.center) <= 1e-5, case
        history = load_history(tmp_path / case)
        assert (history[HISTORY] - sim.history[HISTORY]).abs().max().max() <= 1e-5, case
        weights = pd.read_csv(tmp_path / case / "weights.csv")
        assert len(weights) == len(sim.weights), case
        if len(weights):
            assert (weights["weight"] - sim.weights["weight"]).abs().max() <= 1e-5, case
    first_layer = simulated["mgrawa"].workers["net.0.weight"]
    assert not torch.equal(first_layer[0], first_layer[1])  # the workers really differ


def test_cli_ranks_writes_the_same_history(tmp_path):
    out = tmp_path / "run"
    cfg = dataclasses.replace(BASE, algorithm="lgrawa", steps=24)
    done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", "--algorithm", "lgrawa",
                           "--workers", "4", "--steps", "24", "--tau", "8", "--momentum", "0.9", "--weight-decay",
                           "1e-3", "--dtype", "float64", "--batch-size", "16", "--eval-every", "10",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ranks=2" in done.stdout
    assert "it/s" not in done.stderr, "no progress bar drawn into a log that is not a terminal"
    train = float(re.search(r"train_wall=([0-9.]+)s", done.stdout).group(1))
    job = float(re.search(r"job wall=([0-9.]+)s", done.stdout).group(1))
    assert job >= train  # the whole job, process start-up included
    wrote = [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert wrote and sorted(wrote[-1][6:].split(", ")) == sorted(str(p) for p in out.iterdir())
    sim = run(cfg, progress=False)
    assert load_config(out) == sim.config
    assert (load_history(out)[HISTORY] - sim.history[HISTORY]).abs().max().max() <= 1e-5


def test_async_augmented_dirichlet_run_matches_simulation(tmp_path):
    """CIFAR-format data with per-sample augmentation, label-skewed shards and the asynchronous
    schedule with unequal speeds, so some ticks leave a rank without a stepping worker: every rank
    must still draw the same augmentation stream."""
    from grawa_sim.data import cifar

    cifar.synthetic(tmp_path / "data", "cifar10", train=256, test=64)
    flags = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp", "--width", "16",
             "--algorithm", "mgrawa", "--workers", "4", "--steps", "20", "--tau", "4", "--batch-size", "8",
             "--schedule", "async", "--speeds", "1,3,1,1.5", "--partition", "dirichlet", "--alpha", "0.5",
             "--dtype", "float64", "--eval-every", "8", "--step-time", "0.01"]
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", *flags, "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    sim = run(load_config(out), progress=False)
    assert sim.config.augment and bool((sim.history["steps_min"] < sim.history["steps_max"]).any())
    saved = load_params(out)
    assert max_abs_diff(saved["workers"], sim.workers) <= 1e-10
    assert (load_history(out)[HISTORY] - sim.history[HISTORY]).abs().max().max() <= 1e-10


def test_killed_rank_ends_the_job_with_a_message(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", "--workers", "2",
                           "--steps", "200", "--timeout", "20", "--out", str(tmp_path / "run"), "--no-progress"],
                          capture_output=True, text=True, timeout=120, env={**ENV, "GRAWA_FAULT": "1:5"})
    assert done.returncode == 1
    assert time.monotonic() - start < 100
    assert "injected fault before step 5" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: distributed job failed (torchrun exit code 1)")
    assert not (tmp_path / "run").exists()


def test_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", "--ranks", "2", "--workers", "2",
                               "--port", str(port), "--out", str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: port: already in use on this machine (got {port})"
    assert not (tmp_path / "run").exists()


def test_ranks_must_divide_workers(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grawa_sim", "run", "--ranks", "3", "--workers", "4",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: ranks: must be >= 1 and divide workers=4 (got 3)"


# ---------------------------------------------------------------- the torchrun command, the ranks' config file


def test_torchrun_command():
    assert torchrun_command(3, ["-m", "grawa_sim.cli.distributed", "--config", "c.json"], port=29512) == [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=3", "--nnodes=1", "--max_restarts=0",
        "--master_addr=127.0.0.1", "--master_port=29512", "-m", "grawa_sim.cli.distributed", "--config", "c.json"]
    script = torchrun_command(2, ["tests/dist_driver.py", "OUT"], python="/usr/bin/python3")
    assert script[0] == "/usr/bin/python3" and script[-2:] == ["tests/dist_driver.py", "OUT"]
    port = int(next(a for a in script if a.startswith("--master_port=")).split("=")[1])
    assert 0 < port < 65536  # a free port when none is given
    for ranks in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"^ranks: must be >= 1"):
            torchrun_command(ranks, ["x.py"])


def test_launcher_hands_the_ranks_the_validated_config_as_a_file(tmp_path, monkeypatch, capsys):
    """`run --ranks` writes the validated config once; the ranks get --config FILE and no config flag."""
    from grawa_sim.cli import distributed
    from grawa_sim.cli.main import main
    from grawa_sim.engine.problem import validate

    seen = {}

    class Finished:  # torchrun as if every rank had run and exited 0
        def __init__(self, wrapped, **kwargs):
            command = wrapped[wrapped.index("sh") + 1:]  # /bin/sh -c '...' sh torchrun ...
            config = Path(command[command.index("--config") + 1])
            seen.update(command=command, config=from_dict(json.loads(config.read_text())), file=config)

        def wait(self, timeout=None):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(distributed.subprocess, "Popen", Finished)
    flags = ["--algorithm", "lgrawa", "--workers", "4", "--steps", "24", "--tau", "8", "--lr", "0.07",
             "--dtype", "float64", "--batch-size", "16", "--eval-every", "10"]
    assert main(["run", "--ranks", "2", *flags, "--timeout", "45", "--no-progress"]) == 0
    command = seen["command"]
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=2" in command
    program = command[command.index("-m", 3):]
    assert program[:4] == ["-m", "grawa_sim.cli.distributed", "--config", str(seen["file"])]
    assert program[4:] == ["--no-progress", "--timeout", "45.0"]  # no config flag reaches a rank
    expected = validate(Config(algorithm="lgrawa", workers=4, steps=24, tau=8, lr=0.07, dtype="float64",
                               batch_size=16, eval_every=10))
    assert seen["config"] == expected
    assert not seen["file"].parent.exists()  # the job's temporary folder is removed
    assert "job wall=" in capsys.readouterr().out


def test_torchrun_by_hand_takes_flags_or_a_config_file(tmp_path):
    """The two ways to start the ranks by hand: `run`'s flags, and --config with a run folder's config.json
    (both the simulation's numbers)."""
    flags = ["--algorithm", "mgrawa", "--workers", "4", "--steps", "16", "--tau", "4", "--dtype", "float64",
             "--batch-size", "16", "--eval-every", "8"]
    done = _torchrun(2, ["-m", "grawa_sim.cli.distributed", *flags, "--out", str(tmp_path / "flags"),
                         "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    done = _torchrun(2, ["-m", "grawa_sim.cli.distributed", "--config", str(tmp_path / "flags" / "config.json"),
                         "--device", "cpu", "--out", str(tmp_path / "file"), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    sim = run(load_config(tmp_path / "flags"), progress=False)
    assert load_config(tmp_path / "file") == dataclasses.replace(sim.config, device="cpu")  # --device replaces
    for out in ("flags", "file"):
        assert run_identity(load_config(tmp_path / out)) == run_identity(sim.config)
        assert (load_history(tmp_path / out)[HISTORY] - sim.history[HISTORY]).abs().max().max() <= 1e-10
        assert max_abs_diff(load_params(tmp_path / out)["workers"], sim.workers) <= 1e-10


def test_a_bad_config_file_is_one_line_exit_2(tmp_path):
    """Read before any process group is joined: one line on stderr, exit 2 (each case its own process)."""
    files = {"missing": None, "not json": "{workers: 4", "not an object": "[1, 2]",
             "unknown field": '{"workers": 4, "learning_rate": 0.1}', "bad value": '{"workers": 0}'}
    expected = {"missing": "error: config: cannot read the file: no such file or directory (got '{}')",
                "not json": "error: config: not JSON: Expecting property name enclosed in double quotes at line 1 "
                            "(got '{}')",
                "not an object": "error: config: must hold a JSON object of config fields (got '{}')",
                "unknown field": "error: learning_rate: unknown config field (got 0.1)",
                "bad value": "error: workers: must be >= 1 (got 0)",
                "flags too": "error: config: give the configuration as --config FILE or as flags, not both "
                             "(got --lr)"}
    procs = {}
    for name in [*files, "flags too"]:
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        if files.get(name) is not None:
            path.write_text(files[name])
        elif name == "flags too":
            path.write_text(json.dumps(to_dict(BASE)))
        extra = ["--lr", "0.1"] if name == "flags too" else []
        procs[name] = (path, subprocess.Popen([sys.executable, "-m", "grawa_sim.cli.distributed", "--config",
                                               str(path), *extra, "--out", str(tmp_path / "out")], cwd=ROOT, env=ENV,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for name, (path, proc) in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 2, (name, stderr)
            assert stdout == "" and stderr == expected[name].format(path) + "\n", (name, stderr)
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not (tmp_path / "out").exists()
