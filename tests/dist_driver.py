"""Run under torchrun by tests/test_distributed.py: every algorithm on this process group.

    torchrun --nproc_per_node=R tests/dist_driver.py OUT CONFIG_JSON

CONFIG_JSON holds the Config fields shared by all runs; rank 0 saves OUT/<algorithm>/.
"""

import json
import sys

import torch.distributed as dist

from grawa_sim import algorithms
from grawa_sim.config import from_dict
from grawa_sim.core.collectives import DistributedAxis
from grawa_sim.engine.runner import run
from grawa_sim.results.storage import save_result

out, base = sys.argv[1], json.loads(sys.argv[2])
dist.init_process_group("gloo")
sam_takers = [f"{a}+sam" for a, kind in algorithms.classes().items() if kind.takes_sam]
for algorithm in (*algorithms.names(), *sam_takers):
    cfg = from_dict({**base, "algorithm": algorithm.split("+")[0], "sam": algorithm.endswith("+sam")})
    axis = DistributedAxis(cfg.workers, dist.get_rank(), dist.get_world_size())
    result = run(cfg, progress=False, axis=axis)
    if dist.get_rank() == 0:
        save_result(result, f"{out}/{algorithm}")
dist.barrier()  # as the CLI's ranks do: nobody tears gloo down while rank 0 is still saving
dist.destroy_process_group()
