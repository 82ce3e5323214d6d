"""Independent references for the tests: plain nn.Module + torch.optim.SGD on a given batch stream."""

from __future__ import annotations

import torch

from grawa_sim.config import Config, resolve
from grawa_sim.data.datasets import BatchSampler, load, make_shards
from grawa_sim.models import registry as models


def batch_stream(config: Config) -> tuple[list[torch.Tensor], object]:
    """The [M, B] index batches the runner draws for ``config``, and the data set."""
    cfg = resolve(config)
    data = load(cfg.dataset, getattr(torch, cfg.dtype))
    shards = make_shards(data.y_train, cfg.workers, cfg.partition, cfg.alpha, cfg.batch_size, cfg.seed)
    sampler = BatchSampler(shards, len(data.y_train), cfg.batch_size, cfg.seed, cfg.workers)
    return [sampler.next_batch() for _ in range(cfg.steps)], data


def train_single(config: Config, batches: list[torch.Tensor], data) -> dict[str, torch.Tensor]:
    """One model, torch.optim.SGD (Nesterov when momentum > 0), trained on the given index batches."""
    cfg = resolve(config)
    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model, data.features, data.outputs).to(getattr(torch, cfg.dtype))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    for idx in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()
    return {n: p.detach() for n, p in model.named_parameters()}


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((float((a[n] - b[n]).abs().max()) for n in a), default=0.0)


def reference_statistics(make_model, params: dict[str, torch.Tensor], x_train: torch.Tensor, batches: int,
                         batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """BN running statistics of an nn.Module (train mode, cumulative average) fed the Recalibrator's batches."""
    reference = make_model()
    reference.load_state_dict(params, strict=False)
    for m in reference.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for idx in order[: batches * batch_size].split(batch_size):
            reference(x_train[idx])
    return dict(reference.named_buffers())


def methods() -> list[tuple[str, bool]]:
    """(algorithm, sam) for every registered algorithm, plus the SAM variant of those that take it."""
    from grawa_sim import algorithms

    sam = [(a, True) for a, kind in algorithms.classes().items() if kind.takes_sam]
    return [(a, False) for a in algorithms.names()] + sam


def method_name(algorithm: str, sam: bool) -> str:
    return algorithm + ("+sam" if sam else "")
