"""The worker axis sharded over several devices of one process (here: cpu,cpu and three shards).

Every algorithm must equal the one-device run to 1e-12 in float64: history, workers, the
evaluated model, the center and GRAWA's weights.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.cli.main import main
from grawa_sim.config import ConfigError
from grawa_sim.core.collectives import ShardedAxis, ShardGroup, StackedAxis, shard_sizes
from grawa_sim.results.storage import load_history
from tests.helpers import max_abs_diff, methods

BASE = Config(workers=6, steps=24, tau=4, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
              dataset="mnist1d", model="mlp", batch_size=8, eval_every=8, device="cpu")
TOL = 1e-12


def assert_same(one, sharded, case) -> None:
    assert max_abs_diff(sharded.workers, one.workers) <= TOL, case
    assert max_abs_diff(sharded.buffers, one.buffers) <= TOL, case
    assert max_abs_diff(sharded.evaluated, one.evaluated) <= TOL, case
    assert max_abs_diff(sharded.center, one.center) <= TOL, case
    cols = [c for c in one.history.columns if c != "wall_time"]
    assert list(sharded.history.columns) == list(one.history.columns), case
    assert (sharded.history[cols] - one.history[cols]).abs().max().max() <= TOL, case
    assert len(sharded.weights) == len(one.weights), case
    if len(one.weights):
        assert (sharded.weights["weight"] - one.weights["weight"]).abs().max() <= TOL, case


CASES = methods()


@pytest.mark.parametrize(("algorithm", "sam"), CASES, ids=[a + ("+sam" if s else "") for a, s in CASES])
def test_every_algorithm_equals_the_one_device_run(algorithm, sam):
    cfg = dataclasses.replace(BASE, algorithm=algorithm, sam=sam)
    one = run(cfg, progress=False)
    for devices in (["cpu", "cpu"], ["cpu", "cpu", "cpu"], ["cpu"] * 4):  # 3+3, 2+2+2, 2+2+1+1 workers
        assert_same(one, run(cfg, progress=False, devices=devices), (algorithm, sam, len(devices)))


def test_async_batchnorm_dirichlet_run_equals_the_one_device_run():
    """Unequal speeds under the asynchronous schedule leave some shards without a stepping worker on
    some ticks; the batch-norm CNN has buffers; label-skewed shards are ragged."""
    cfg = dataclasses.replace(BASE, algorithm="mgrawa", model="cnn_bn", schedule="async",
                              speeds=(1.0, 3.0, 1.0, 1.5, 2.0, 1.0), partition="dirichlet", alpha=0.5,
                              step_time=0.01, steps=16)
    one = run(cfg, progress=False)
    assert bool((one.history["steps_min"] < one.history["steps_max"]).any())
    assert_same(one, run(cfg, progress=False, devices=["cpu"] * 3), "async")


def test_collectives_match_the_stacked_axis():
    import threading

    torch.manual_seed(0)
    full = torch.randn(5, 3, dtype=torch.float64)
    devices = [torch.device("cpu")] * 3
    group, out = ShardGroup(3), [None] * 3
    sizes = shard_sizes(5, 3)
    assert sizes == [2, 2, 1]

    def shard(i):
        axis = ShardedAxis(5, i, group, devices, sizes)
        mine = full[axis.local_slice]
        out[i] = (axis.all_reduce_sum(mine), axis.all_reduce_min(mine), axis.all_reduce_mean(mine),
                  axis.broadcast(mine, 4), axis.broadcast(mine, 1), axis.all_gather(mine))

    threads = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ref = StackedAxis(5)
    expected = (ref.all_reduce_sum(full), ref.all_reduce_min(full), ref.all_reduce_mean(full),
                ref.broadcast(full, 4), ref.broadcast(full, 1), ref.all_gather(full))
    for i in range(3):
        for got, want in zip(out[i], expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    assert out[0][0].data_ptr() != out[1][0].data_ptr()  # every shard its own copy


def test_a_failing_shard_stops_every_shard():
    def boom(step):
        if step == 5:
            raise RuntimeError("shard 0 fails at step 5")

    with pytest.raises(RuntimeError, match="shard 0 fails at step 5"):
        run(BASE, progress=False, devices=["cpu", "cpu"], on_step=boom)


def test_bad_devices():
    with pytest.raises(ConfigError, match="^devices: at most one device per worker"):
        run(dataclasses.replace(BASE, workers=2), progress=False, devices=["cpu"] * 3)
    with pytest.raises(ConfigError, match="^backend: a sharded run"):
        run(dataclasses.replace(BASE, backend="loop"), progress=False, devices=["cpu"] * 2)
    with pytest.raises(ConfigError, match="^devices: must be auto, cpu"):
        run(BASE, progress=False, devices=["cpu", "tpu"])
    with pytest.raises(ConfigError, match="^devices: give devices"):
        run(BASE, progress=False, devices=["cpu"] * 2, device="cpu")


def test_cli_devices(tmp_path, capsys):
    flags = ["--algorithm", "lgrawa", "--workers", "4", "--steps", "12", "--tau", "4", "--batch-size", "8",
             "--dtype", "float64", "--eval-every", "4", "--no-progress"]
    assert main(["run", *flags, "--devices", "cpu,cpu", "--out", str(tmp_path / "s")]) == 0
    assert main(["run", *flags, "--device", "cpu", "--out", str(tmp_path / "o")]) == 0
    cols = ["step", "train_loss", "test_loss", "test_acc", "spread"]
    assert (load_history(tmp_path / "s")[cols] - load_history(tmp_path / "o")[cols]).abs().max().max() <= TOL
    capsys.readouterr()
    assert main(["run", *flags, "--devices", "cpu,cpu", "--ranks", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: devices: give --devices")
