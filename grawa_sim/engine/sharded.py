"""One run with its worker axis sharded over several devices of this process: ``run(config, devices=[...])``.

Shard s holds a consecutive slice of the M workers on ``devices[s]`` (`collectives.shard_sizes`:
as equal as can be) and runs in its own thread the same `runner.run` as a single-device run,
with a `collectives.ShardedAxis`: every collective reduces each shard's slice, combines the
S partial results on the first device and copies the result back. Every shard draws the same
shards, batches and probes for all M workers and keeps its own slice (as the torch.distributed
ranks do), so a sharded run computes what the one-device run computes, up to the order of
floating-point additions in the reductions. GPU kernels of different devices overlap, since
torch releases the GIL while they run. The Result is shard 0's: every worker gathered on the
first device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch

from grawa_sim.config import Config, ConfigError
from grawa_sim.core.collectives import ShardedAxis, ShardGroup, shard_sizes
from grawa_sim.engine.problem import validate


def run_sharded(run: Callable, config: Config, devices: Sequence[str | torch.device],
                progress: bool | None = None, on_step: Callable[[int], None] | None = None,
                on_evaluate: Callable | None = None, on_round: Callable | None = None):
    """``run`` (grawa_sim.engine.runner.run, handed in by it) once per shard, each in its own thread on its
    own device with a `ShardedAxis`. Returns shard 0's Result."""
    from grawa_sim.core.devices import parse_devices

    cfg = validate(config)  # also fills the caches (data, FLOP counts) before the threads start
    devices = parse_devices(devices)
    if cfg.backend != "vmap":
        raise ConfigError(f"backend: a sharded run uses the stacked engine 'vmap' (got {cfg.backend!r})")
    if len(devices) > cfg.workers:
        raise ConfigError(f"devices: at most one device per worker (workers={cfg.workers}) "
                          f"(got {','.join(map(str, devices))!r})")
    sizes = shard_sizes(cfg.workers, len(devices))
    group = ShardGroup(len(devices))
    results: list = [None] * len(devices)
    errors: list[BaseException | None] = [None] * len(devices)

    def shard(i: int) -> None:
        try:
            axis = ShardedAxis(cfg.workers, i, group, devices, sizes)
            results[i] = run(cfg, progress=progress if i == 0 else False, axis=axis, device=devices[i],
                             on_step=on_step if i == 0 else None,
                             on_evaluate=on_evaluate if i == 0 else None,
                             on_round=on_round if i == 0 else None)
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            errors[i] = err
            group.abort()  # the other shards stop at their next collective

    threads = [threading.Thread(target=shard, args=(i,), name=f"grawa-shard-{i}", daemon=True)
               for i in range(1, len(devices))]
    for t in threads:
        t.start()
    shard(0)  # in this thread: Ctrl-C lands here
    for t in threads:
        t.join()
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)), None)
    first = first or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results[0]
