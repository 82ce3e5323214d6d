"""Training data that grows with M (train_size, MNIST-1D cached on disk) and IID shards dealt every epoch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ConfigError
from grawa_sim.data import mnist1d_cache
from grawa_sim.data.datasets import BatchSampler, TrainingStream, epoch_split, load
from grawa_sim.engine.problem import validate
from grawa_sim.engine.run_many import run_many
from tests.helpers import max_abs_diff


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(mnist1d_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fresh() -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return d["x"], d["y"], d["x_test"], d["y_test"]


def test_cached_mnist1d_equals_the_generated_set_bit_for_bit(cache):
    first = mnist1d_cache.arrays()  # generated and written
    assert len(list(cache.glob("mnist1d-*.npz"))) == 1
    again = mnist1d_cache.arrays()  # read back
    for a, b, c in zip(first, again, _fresh()):
        assert a.dtype == b.dtype == c.dtype and np.array_equal(a, c) and np.array_equal(b, c)


def test_a_corrupt_cache_file_is_regenerated_with_one_warning(cache):
    mnist1d_cache.arrays()
    (path,) = cache.glob("mnist1d-*.npz")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="unreadable cached MNIST-1D") as caught:
        arrays = mnist1d_cache.arrays()
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert np.array_equal(arrays[0], _fresh()[0])
    with np.load(path) as f:  # written again, whole
        assert len(f["x"]) == 4000
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no temporary file left beside it


def test_train_size_takes_fewer_or_generates_more_and_keeps_the_test_set(cache):
    x, y, xt, yt = mnist1d_cache.arrays()
    small = load("mnist1d", torch.float64, train_size=1000)
    assert torch.equal(small.x_train, torch.tensor(x[:1000])) and torch.equal(small.y_train, torch.tensor(y[:1000]))
    big = load("mnist1d", torch.float64, train_size=4321)
    assert big.x_train.shape == (4321, 40) and len(big.y_train) == 4321
    assert torch.equal(big.x_train[:4000], torch.tensor(x))
    assert not torch.equal(big.x_train[4000:4321], torch.tensor(x[:321]))  # new samples, not repeats
    assert set(big.y_train[4000:].tolist()) == set(range(10))
    for d in (small, big):
        assert torch.equal(d.x_test, torch.tensor(xt)) and torch.equal(d.y_test, torch.tensor(yt))


def test_bad_train_sizes_name_the_field():
    for bad in (0, 2.5, "many", 10**7):
        with pytest.raises(ConfigError, match="^train_size: "):
            Config(train_size=bad)
    with pytest.raises(ConfigError, match=r"^train_size: too small for M x B = 8 x 32 samples"):
        validate(Config(workers=8, batch_size=32, train_size=200))
    with pytest.raises(ConfigError, match="^train_size: digits has 1437 training samples"):
        validate(Config(dataset="digits", model="logistic", train_size=5000))


def test_cli_train_size_error_is_one_line_exit_2(capsys):
    from grawa_sim.cli.main import main

    assert main(["run", "--workers", "8", "--train-size", "100", "--steps", "64", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train_size: ")


def test_an_epoch_split_partitions_the_training_set():
    for n, m in ((40, 4), (43, 4)):
        split = epoch_split(n, m, seed=3, epoch=0)
        assert split.shape == (m, n // m)
        assert len(split.flatten().unique()) == m * (n // m)  # disjoint, none repeated
        assert int(split.max()) < n


def test_iid_shards_are_dealt_afresh_every_epoch_and_fixed_shards_are_not():
    def worker_sets(sampler, epochs, steps_per_epoch):
        sets = []
        for _ in range(epochs):
            batches = torch.cat([sampler.next_batch() for _ in range(steps_per_epoch)], dim=1)
            sets.append([set(row.tolist()) for row in batches])
        return sets

    resplit = worker_sets(BatchSampler(None, 40, 5, seed=1, workers=4), 3, 2)  # shards of 10: 2 batches an epoch
    for epoch in resplit:
        assert set().union(*epoch) == set(range(40)) and sum(map(len, epoch)) == 40  # a partition
    assert resplit[0][0] != resplit[1][0] and resplit[1][0] != resplit[2][0]  # worker 0's set changes
    assert resplit == worker_sets(BatchSampler(None, 40, 5, seed=1, workers=4), 3, 2)  # same seed, same sets
    assert resplit != worker_sets(BatchSampler(None, 40, 5, seed=2, workers=4), 3, 2)
    fixed = worker_sets(BatchSampler(torch.arange(40).view(4, 10), 40, 5, seed=1), 3, 2)
    assert fixed[0] == fixed[1] == fixed[2]


def test_the_default_partition_is_the_per_epoch_split():
    cfg = Config(algorithm="dp", workers=4, batch_size=5, train_size=40, steps=6, dataset="digits",
                 model="logistic")
    stream = TrainingStream(validate(cfg), load("digits", train_size=40))
    first = [set(stream.sampler.next_batch()[0].tolist()) for _ in range(2)]
    second = [set(stream.sampler.next_batch()[0].tolist()) for _ in range(2)]
    assert first[0] | first[1] != second[0] | second[1]


# Several epochs in a few steps (shards of 25 samples, batches of 5): every engine draws the same batches.
SHORT_EPOCHS = Config(workers=4, steps=23, tau=4, lr=0.05, momentum=0.9, weight_decay=1e-3, dtype="float64",
                      dataset="mnist1d", model="mlp", width=8, batch_size=5, train_size=100, eval_every=8)


@pytest.mark.parametrize("algorithm", ["mgrawa", "dp"])
def test_per_epoch_split_loop_run_many_and_sharded_equal_the_stacked_engine(algorithm):
    cfg = dataclasses.replace(SHORT_EPOCHS, algorithm=algorithm)
    stacked = run(cfg, progress=False)
    loop = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    assert max_abs_diff(stacked.workers, loop.workers) <= 1e-10
    many = run_many([cfg, dataclasses.replace(cfg, seed=1)], progress=False)[0]
    assert max_abs_diff(stacked.workers, many.workers) <= 1e-10
    sharded = run(cfg, devices=["cpu", "cpu"], progress=False)
    assert max_abs_diff(stacked.workers, sharded.workers) <= 1e-10
    fixed = run(dataclasses.replace(cfg, partition="iid_fixed"), progress=False)
    assert max_abs_diff(stacked.workers, fixed.workers) > 1e-6  # the split matters


def test_memo_number_computes_once_and_survives_a_corrupt_file(cache):
    from grawa_sim.core.cache import memo_number

    calls = []

    def compute():
        calls.append(1)
        return 41 + len(calls)

    assert memo_number("things", "a", compute) == 42
    assert memo_number("things", "a", compute) == 42 and len(calls) == 1  # read back
    assert memo_number("things", "b", compute) == 43  # another key, the first kept
    assert memo_number("things", "a", compute) == 42
    (cache / "things.json").write_text("{not json")
    assert memo_number("things", "a", compute) == 44 and len(calls) == 3


def test_step_flops_are_kept_in_the_cache(cache):
    from grawa_sim.engine.problem import _count_flops, step_flops

    step_flops.cache_clear()
    flops = step_flops("mlp", (40,), 10, 32, 10, 16)
    assert flops == _count_flops("mlp", (40,), 10, 32, 10, 16) > 0
    assert (cache / "step-flops.json").exists()
