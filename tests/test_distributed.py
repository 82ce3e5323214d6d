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
from grawa_sim.config import to_dict
from grawa_sim.core.ports import free_port
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
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--max_restarts=0",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


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
