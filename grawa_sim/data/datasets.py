"""Data sets, per-worker shards (IID or Dirichlet label skew) and per-worker batch sampling.

MNIST-1D, digits and least squares are generated or shipped offline; CIFAR-10/100 are
read from their python-pickle folders (grawa_sim/data/cifar.py).

Every sampler draws from its own seeded ``torch.Generator`` so that both
backends see exactly the same minibatches and probe batches.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from grawa_sim.config import Config, ConfigError
from grawa_sim.data.augment import CropFlip


@dataclass(frozen=True)
class Dataset:
    """Tensors of one data set; ``classes == 0`` marks a regression objective."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int
    optimum_loss: float | None = None  # known minimum of the training loss (convex objectives)
    loss: str | None = None  # "value": the model's output is each sample's loss (synthetic landscapes)
    x_val: torch.Tensor | None = None  # held out of the training set (hold_out), None when nothing is
    y_val: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (features,) for vectors, (C, H, W) for images."""
        return tuple(self.x_train.shape[1:])

    @property
    def features(self) -> int:
        """Numbers per sample."""
        return math.prod(self.input_shape)

    @property
    def outputs(self) -> int:
        return self.classes if self.classes else 1


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(train_size: int | None = None) -> tuple[np.ndarray, ...]:
    from grawa_sim.data import mnist1d_cache

    return mnist1d_cache.arrays(train_size)


def _mnist1d(train_size: int | None = None) -> Dataset:
    """MNIST-1D (Greydanus 2020) generated offline (cached on disk): 4000 train / 1000 test, 40 features,
    10 classes; ``train_size`` other than 4000 takes fewer, or appends freshly generated samples
    (grawa_sim/data/mnist1d_cache.py)."""
    x, y, xt, yt = _mnist1d_arrays(train_size)
    return Dataset("mnist1d", torch.tensor(x), torch.tensor(y), torch.tensor(xt), torch.tensor(yt), 10)


def _digits() -> Dataset:
    """sklearn's 8x8 digits, pixels scaled to [0, 1]; a fixed seeded 80/20 split (1437 / 360)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x, y = d.data[order] / 16.0, d.target[order]
    cut = int(0.8 * len(y))
    return Dataset("digits", torch.tensor(x[:cut]), torch.tensor(y[:cut]),
                   torch.tensor(x[cut:]), torch.tensor(y[cut:]), 10)


def _lstsq(n_train: int = 1024, n_test: int = 256, dim: int = 16, noise: float = 0.01) -> Dataset:
    """Least squares 0.5 * mean((x.w + b - y)^2), y = x.w* + b* + noise; optimum by lstsq.

    Convex with a unique minimiser; ``optimum_loss`` is the exact minimum of the
    training objective (computed in float64).
    """
    g = np.random.default_rng(1234)
    w_star, b_star = g.normal(size=dim), 0.5
    x = g.normal(size=(n_train + n_test, dim))
    y = x @ w_star + b_star + noise * g.normal(size=n_train + n_test)
    design = np.hstack([x[:n_train], np.ones((n_train, 1))])
    coef, *_ = np.linalg.lstsq(design, y[:n_train], rcond=None)
    optimum = 0.5 * float(np.mean((design @ coef - y[:n_train]) ** 2))
    return Dataset("lstsq", torch.tensor(x[:n_train]), torch.tensor(y[:n_train]),
                   torch.tensor(x[n_train:]), torch.tensor(y[n_train:]), 0, optimum)


def _cifar(name: str, data_dir: str | None) -> Dataset:
    """CIFAR-10/100 from ``data_dir`` (or $GRAWA_DATA, ./data), per-channel normalised, [N, 3, 32, 32] (cached)."""
    from grawa_sim.data import cifar

    return Dataset(name, *cifar.tensors(name, data_dir), cifar.CLASSES[name])


def _two_basins(n_train: int = 4096, n_test: int = 1024, sigma: float = 1.0) -> Dataset:
    """Noise samples xi ~ N(0, sigma^2 I) in 2-D for the `two_basins` landscape (model ``point``)."""
    from grawa_sim.data.two_basins import noise_samples

    xi = noise_samples(2, n_train + n_test, sigma, seed=4321)
    zeros = torch.zeros(n_train + n_test, dtype=torch.float64)
    return Dataset("two_basins", xi[:n_train], zeros[:n_train], xi[n_train:], zeros[n_train:], 0, loss="value")


_LOADERS = {"mnist1d": _mnist1d, "digits": _digits, "lstsq": _lstsq, "two_basins": _two_basins,
            "cifar10": functools.partial(_cifar, "cifar10"), "cifar100": functools.partial(_cifar, "cifar100")}


def load(name: str, dtype: torch.dtype = torch.float32, data_dir: str | None = None,
         train_size: int | None = None) -> Dataset:
    """Load a data set by name, features in ``dtype``; labels int64 (targets in ``dtype`` for regression).

    ``data_dir`` is where the CIFAR folders live (ignored by the generated data sets).
    ``train_size``: how many training samples (None: the data set's own split): the first ``train_size``
    of them, or for MNIST-1D also more than the published 4000 (generated); the test set is unchanged.
    CIFAR tensors are cached and shared between calls: treat them as read-only.
    """
    if name not in _LOADERS:
        raise ConfigError(f"dataset: must be one of {', '.join(_LOADERS)} (got {name!r})")
    if name == "mnist1d":
        d = _mnist1d(train_size)
    else:
        d = _LOADERS[name](data_dir) if name.startswith("cifar") else _LOADERS[name]()
        if train_size is not None:
            if train_size > len(d.y_train):
                raise ConfigError(f"train_size: {name} has {len(d.y_train)} training samples; only MNIST-1D "
                                  f"generates more (got {train_size})")
            d = dataclasses.replace(d, x_train=d.x_train[:train_size], y_train=d.y_train[:train_size])
    ytype = dtype if d.classes == 0 else torch.long
    return Dataset(d.name, d.x_train.to(dtype), d.y_train.to(ytype), d.x_test.to(dtype),
                   d.y_test.to(ytype), d.classes, d.optimum_loss, d.loss)


VALIDATION_SEED = 20_240_601  # the held-out samples are the same for every run seed


def validation_size(train_size: int, fraction: float) -> int:
    """How many of ``train_size`` training samples ``fraction`` holds out: round(fraction * n), which must
    leave both parts non-empty when ``fraction`` > 0."""
    size = round(fraction * train_size)
    if fraction and not 1 <= size < train_size:
        raise ConfigError(f"validation: holds out {size} of {train_size} training samples; it must leave both parts "
                          f"non-empty (got {fraction!r})")
    return size


def hold_out(data: Dataset, fraction: float) -> Dataset:
    """``data`` with round(fraction * n) training samples moved to ``x_val`` / ``y_val`` (the test set as it is).

    The held-out indices are the first of a permutation drawn from a fixed generator (VALIDATION_SEED),
    whatever the run's seed, so every run of a study is scored on the same samples; the rest of the
    training set keeps its order and is what the shards are cut from. ``fraction`` 0 returns ``data``.
    """
    if not fraction:
        return data
    n = len(data.y_train)
    size = validation_size(n, fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    held, kept = order[:size].sort().values, order[size:].sort().values
    held, kept = held.to(data.x_train.device), kept.to(data.x_train.device)
    return dataclasses.replace(data, x_train=data.x_train[kept], y_train=data.y_train[kept],
                               x_val=data.x_train[held], y_val=data.y_train[held])


def iid_shards(n: int, workers: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation cut into ``workers`` equal shards: indices of shape [M, n // M]."""
    size = n // workers
    return torch.randperm(n, generator=generator)[: size * workers].view(workers, size)


def dirichlet_shards(labels: torch.Tensor, workers: int, alpha: float, min_size: int, seed: int) -> list[torch.Tensor]:
    """Label-skewed shards: class c is split over workers in proportions p_c ~ Dirichlet(alpha * 1_M).

    Every sample goes to exactly one worker. Small ``alpha`` concentrates each class on few
    workers; large ``alpha`` approaches IID. A worker left with fewer than ``min_size``
    samples (one minibatch) is topped up with a random subset of the largest shard, so every
    worker can draw a full batch. Seeded: same seed, same shards.
    """
    n = len(labels)
    if workers * min_size > n:
        raise ConfigError(f"workers: {workers} shards of {min_size} samples need more than {n} (got {workers})")
    rng = np.random.default_rng(seed * 7919 + 17)
    y = labels.cpu().numpy()
    parts: list[list[np.ndarray]] = [[] for _ in range(workers)]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        cuts = (np.cumsum(rng.dirichlet(np.full(workers, alpha))) * len(members)).astype(int)[:-1]
        for worker, piece in enumerate(np.split(members, cuts)):
            parts[worker].append(piece)
    shards = [np.concatenate(p) for p in parts]
    for worker in range(workers):
        while len(shards[worker]) < min_size:
            donor = max(range(workers), key=lambda j: len(shards[j]))
            take = min(min_size - len(shards[worker]), len(shards[donor]) - min_size)
            moved = np.zeros(len(shards[donor]), dtype=bool)
            moved[rng.choice(len(shards[donor]), take, replace=False)] = True  # a random subset, any class
            shards[worker] = np.concatenate([shards[worker], shards[donor][moved]])
            shards[donor] = shards[donor][~moved]
    return [torch.from_numpy(np.sort(s)).long() for s in shards]


def make_shards(labels: torch.Tensor, workers: int, partition: str, alpha: float | None, batch_size: int,
                seed: int) -> torch.Tensor | list[torch.Tensor] | None:
    """The run's fixed shards: IID [M, n // M] (``iid_fixed``, seeded by ``seed``) or Dirichlet (a list of M
    index tensors); None for ``iid``, whose shards are dealt afresh every epoch (`epoch_split`)."""
    if partition == "dirichlet":
        return dirichlet_shards(labels, workers, alpha, batch_size, seed)
    if partition == "iid":
        return None
    return iid_shards(len(labels), workers, torch.Generator().manual_seed(seed))


def epoch_split(n: int, workers: int, seed: int, epoch: int) -> torch.Tensor:
    """The IID shards of one epoch, as the reference deals them (``DistributedSampler.set_epoch``): a
    permutation of all n samples drawn from a generator seeded by (seed, epoch), worker i taking its
    entries i, i + M, i + 2M, ... in that order: [M, n // M], the last n mod M samples left out."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + 5) * 65_537 + epoch)
    size = n // workers
    return torch.randperm(n, generator=generator)[: size * workers].view(size, workers).t().contiguous()


class BatchSampler:
    """Per-worker minibatch indices (from each worker's shard) and probe indices (whole set).

    ``shards``: [M, S] equal shards, or a list of M index tensors (Dirichlet: unequal sizes), fixed for
    the run; or None with ``workers``: IID shards dealt afresh every epoch (`epoch_split`: the reference's
    re-split, each worker walking its new shard in the permutation's order).
    ``next_batch`` -> [M, B] indices into the training set: each worker walks a
    fresh random permutation of its own shard (sampling without replacement,
    reshuffled (or dealt anew) every shard epoch, the last partial batch dropped).
    ``next_probe`` -> [M, B] indices drawn uniformly from the whole training set
    (GRAWA's probe batch). Two generators keep the training stream identical
    whether or not probes are drawn.
    """

    def __init__(self, shards: torch.Tensor | list[torch.Tensor] | None, train_size: int, batch_size: int,
                 seed: int, workers: int | None = None):
        if shards is None:
            if workers is None:
                raise ValueError("workers: the per-epoch IID split needs the number of workers (got None)")
            shards = epoch_split(train_size, workers, seed, 0)
            self.epoch = 0  # the epoch whose split ``shards`` is, walked in its own order
        else:
            self.epoch = None  # fixed shards
        if isinstance(shards, list) and len({len(s) for s in shards}) == 1:
            shards = torch.stack(shards)
        self.workers = len(shards)
        self.ragged = shards if isinstance(shards, list) else None
        if self.ragged is not None:
            self._orders = [s[:0] for s in shards]
            self._cursors = [0] * len(shards)
        self.shards = shards
        self.train_size = train_size
        self.batch_size = batch_size
        self.seed = seed
        self._batches = torch.Generator().manual_seed(seed * 1_000_003 + 1)
        self._probes = torch.Generator().manual_seed(seed * 1_000_003 + 2)
        self._order = None if self.ragged is not None else shards if self.epoch is not None else shards[:, :0]
        self._cursor = 0

    def next_batch(self) -> torch.Tensor:
        if self.ragged is not None:
            return self._next_ragged()
        m, size = self.shards.shape
        if self._cursor + self.batch_size > self._order.shape[1]:
            if self.epoch is not None:
                self.epoch += 1
                self.shards = self._order = epoch_split(self.train_size, m, self.seed, self.epoch)
            else:
                perm = torch.argsort(torch.rand(m, size, generator=self._batches), dim=1)
                self._order = torch.gather(self.shards, 1, perm)
            self._cursor = 0
        batch = self._order[:, self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return batch

    def _next_ragged(self) -> torch.Tensor:
        rows = []
        for i, shard in enumerate(self.ragged):
            if self._cursors[i] + self.batch_size > len(self._orders[i]):
                self._orders[i] = shard[torch.argsort(torch.rand(len(shard), generator=self._batches))]
                self._cursors[i] = 0
            rows.append(self._orders[i][self._cursors[i] : self._cursors[i] + self.batch_size])
            self._cursors[i] += self.batch_size
        return torch.stack(rows)

    def next_probe(self) -> torch.Tensor:
        return torch.randint(self.train_size, (self.workers, self.batch_size), generator=self._probes)


class TrainingStream:
    """What the workers of one process train on: shards, minibatches, probes and augmentation of a run.

    Every process draws the batch indices and augmentation of all M workers at every call (so
    every rank and both backends see the same stream) and keeps ``local`` (its workers' slice),
    optionally only the workers in the boolean mask ``stepping`` over that slice.
    """

    def __init__(self, config: Config, data: Dataset, local: slice = slice(None)):
        shards = make_shards(data.y_train, config.workers, config.partition, config.alpha, config.batch_size,
                             config.seed)
        self.sampler = BatchSampler(shards, len(data.y_train), config.batch_size, config.seed, config.workers)
        self.augmenter = CropFlip(config.seed) if config.augment else None
        self.data, self.local = data, local

    def batch(self, stepping: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next minibatch: inputs [m, B, ...] and labels [m, B] of this process's (stepping) workers."""
        return self._take(self.sampler.next_batch(), stepping)

    def probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GRAWA's probe batch: B samples per worker from the whole training set, never augmented.

        Its indices come from the sampler's own probe generator and it draws no augmentation, so
        drawing probes leaves the training stream (batches and their crops and flips) unchanged.
        """
        return self._take(self.sampler.next_probe(), None, augment=False)

    def _take(self, indices: torch.Tensor, stepping: torch.Tensor | None,
              augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.augmenter.draw(tuple(indices.shape)) if augment and self.augmenter is not None else None

        def mine(t: torch.Tensor) -> torch.Tensor:
            return t[self.local] if stepping is None else t[self.local][stepping]

        picked = mine(indices).to(self.data.x_train.device)
        x = self.data.x_train[picked]
        if draws is not None:
            x = self.augmenter.apply(x, mine(draws[0]), mine(draws[1]))
        return x, self.data.y_train[picked]
