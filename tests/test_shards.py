"""Per-worker shards: Dirichlet label skew and the sampler of unequal shards."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from grawa_sim import Config, run
from grawa_sim.config import ConfigError, resolve
from grawa_sim.data.datasets import BatchSampler, dirichlet_shards, load, make_shards
from tests.helpers import max_abs_diff

LABELS = load("mnist1d").y_train


def _skew(shards: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Mean over workers of the total-variation distance between the shard's and the global label mix."""
    overall = np.bincount(labels.numpy(), minlength=10) / len(labels)
    distances = []
    for s in shards:
        mix = np.bincount(labels[s].numpy(), minlength=10) / len(s)
        distances.append(0.5 * np.abs(mix - overall).sum())
    return float(np.mean(distances))


def test_dirichlet_shards_partition_the_training_set():
    shards = dirichlet_shards(LABELS, workers=8, alpha=0.5, min_size=32, seed=3)
    everything = torch.cat(shards)
    assert len(everything) == len(LABELS)
    assert torch.equal(everything.sort().values, torch.arange(len(LABELS)))
    assert len({len(s) for s in shards}) > 1  # unequal sizes: not an IID cut


def test_dirichlet_skew_grows_as_alpha_shrinks():
    skews = [np.mean([_skew(dirichlet_shards(LABELS, 8, alpha, 32, seed), LABELS) for seed in range(3)])
             for alpha in (100.0, 1.0, 0.1)]
    assert skews[0] < 0.1 < skews[1] < skews[2]
    iid = make_shards(LABELS, 8, "iid_fixed", 0.5, 32, 0)
    assert _skew(list(iid), LABELS) < 0.1


def test_dirichlet_same_seed_same_shards():
    a = dirichlet_shards(LABELS, 8, 0.3, 32, seed=5)
    b = dirichlet_shards(LABELS, 8, 0.3, 32, seed=5)
    c = dirichlet_shards(LABELS, 8, 0.3, 32, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(len(x) == len(y) and torch.equal(x, y) for x, y in zip(a, c))


def test_every_worker_gets_a_batch_even_with_extreme_skew():
    shards = dirichlet_shards(LABELS, workers=64, alpha=0.01, min_size=60, seed=0)
    assert min(len(s) for s in shards) >= 60
    assert len(torch.cat(shards).unique()) == len(LABELS)
    with pytest.raises(ConfigError, match="^workers: "):
        dirichlet_shards(LABELS, workers=100, alpha=0.5, min_size=41, seed=0)


def test_ragged_sampler_walks_each_shard_without_replacement():
    shards = [torch.arange(0, 10), torch.arange(10, 40), torch.arange(40, 47)]
    sampler = BatchSampler(shards, 47, batch_size=3, seed=0)
    seen = [[] for _ in shards]
    for _ in range(2):  # worker 0 and 2 complete one epoch (3 and 2 batches fit), worker 1 takes 6 of 30
        batch = sampler.next_batch()
        assert batch.shape == (3, 3)
        for i, row in enumerate(batch):
            seen[i] += row.tolist()
    for i, shard in enumerate(shards):
        assert set(seen[i]) <= set(shard.tolist())
        assert len(set(seen[i])) == len(seen[i])  # no repeats within an epoch
    for _ in range(10):  # many epochs later, worker 2 (7 samples) still only draws from its shard
        assert set(sampler.next_batch()[2].tolist()) <= set(shards[2].tolist())


def test_equal_list_shards_sample_like_the_stacked_tensor():
    shards = torch.arange(40).view(4, 10)
    a = BatchSampler(list(shards), 40, 4, seed=1)
    b = BatchSampler(shards, 40, 4, seed=1)
    for _ in range(7):
        assert torch.equal(a.next_batch(), b.next_batch())


def test_topped_up_samples_come_from_every_class():
    """Extreme skew: most workers are topped up; the samples they receive are not one class."""
    shards = dirichlet_shards(LABELS, workers=64, alpha=0.01, min_size=60, seed=0)
    topped = torch.cat([s for s in shards if len(s) == 60])
    assert len(topped) > 20 * 60
    assert len(LABELS[topped].unique()) == 10
    assert float((LABELS[topped] >= 8).double().mean()) < 0.4  # not the donors' last classes


def test_alpha_is_resolved_only_for_dirichlet():
    assert resolve(Config(partition="dirichlet")).alpha == 0.5
    assert resolve(Config(partition="dirichlet", alpha=2)).alpha == 2.0
    assert resolve(Config(partition="iid", alpha=0.3)).alpha is None  # ignored: same run as plain iid


def test_partition_config_errors():
    with pytest.raises(ConfigError, match="^partition: must be one of iid, iid_fixed, dirichlet"):
        resolve(Config(partition="skewed"))
    with pytest.raises(ConfigError, match="^alpha: must be > 0"):
        resolve(Config(partition="dirichlet", alpha=0.0))


def test_dirichlet_run_matches_loop_backend():
    cfg = Config(algorithm="mgrawa", workers=4, steps=40, tau=8, batch_size=16, model="mlp", dtype="float64",
                 partition="dirichlet", alpha=0.2, eval_every=20)
    fast = run(cfg, progress=False)
    ref = run(dataclasses.replace(cfg, backend="loop"), progress=False)
    assert max_abs_diff(fast.workers, ref.workers) <= 1e-10
    iid = run(dataclasses.replace(cfg, partition="iid"), progress=False)
    assert max_abs_diff(fast.workers, iid.workers) > 1e-3  # the partition reaches the training stream
