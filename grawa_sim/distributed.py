"""Real distributed runs: the same algorithms on torch.distributed ranks.

    torchrun --nproc_per_node=R -m grawa_sim.distributed <the flags of `python -m grawa_sim run`>
    python -m grawa_sim run --ranks R ...        # starts torchrun for you on this machine

Each rank holds M/R consecutive workers as stacked tensors; the rounds talk through
``DistributedAxis`` (gloo on CPU, nccl when every rank has a GPU: rank r takes
``cuda:<LOCAL_RANK>``). Every rank draws the same shards, batches and probes as the
single-process simulation and keeps its slice, so the numbers agree with it. Rank 0
writes history.csv / config.json / weights.csv / params.pt, exactly as `run --out`.

A rank that dies makes the others fail at their next collective (or after
``--timeout`` seconds), and torchrun then ends the whole job with a non-zero exit.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys

import torch
import torch.distributed as dist

from grawa_sim.collectives import DistributedAxis
from grawa_sim.config import Config, ConfigError

FAULT_ENV = "GRAWA_FAULT"  # "rank:step": that rank exits abruptly before the step (for failure tests)
DEFAULT_TIMEOUT = 60.0


def device_and_backend() -> tuple[torch.device, str]:
    """cuda:<LOCAL_RANK> with nccl when CUDA is available, else the CPU with gloo."""
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank), "nccl"
    return torch.device("cpu"), "gloo"


def fault_hook():
    """GRAWA_FAULT="rank:step" makes that rank exit abruptly before local step ``step`` (failure tests)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    rank, step = (int(v) for v in spec.split(":"))
    if rank != dist.get_rank():
        return None

    def die(current: int) -> None:
        if current == step:
            print(f"rank {rank}: injected fault before step {step}", file=sys.stderr, flush=True)
            os._exit(17)

    return die


def run_distributed(config: Config, out: str | None, timeout: float = DEFAULT_TIMEOUT, progress: bool = False):
    """Join the process group torchrun set up, train this rank's workers, rank 0 saves; returns the Result."""
    from grawa_sim.runner import run, validate
    from grawa_sim.storage import save_result

    cfg = validate(config)
    device, backend = device_and_backend()
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        axis = DistributedAxis(cfg.workers, dist.get_rank(), dist.get_world_size(), device)
        result = run(cfg, progress=progress and dist.get_rank() == 0, axis=axis, device=device,
                     on_step=fault_hook())
        if dist.get_rank() == 0 and out:
            save_result(result, out)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_port(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(f"port: already in use on this machine (got {port})") from None


def launch(ranks: int, argv: list[str], port: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Start ``torchrun --nproc_per_node=ranks -m grawa_sim.distributed argv`` here; its exit code.

    The job is killed when it runs longer than the training needs plus ``timeout``
    seconds without finishing a collective (torchrun ends every rank if one dies).
    """
    if ranks < 1:
        raise ConfigError(f"ranks: must be >= 1 (got {ranks})")
    if port is None:
        port = free_port()
    else:
        check_port(port)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--nnodes=1",
               "--max_restarts=0", "--master_addr=127.0.0.1", f"--master_port={port}",
               "-m", "grawa_sim.distributed", *argv, "--timeout", str(timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(command, env=env)


def main(argv: list[str] | None = None) -> int:
    from grawa_sim.__main__ import CLIError, Parser, add_config_flags, config_from_args

    parser = Parser(prog="torchrun ... -m grawa_sim.distributed")
    add_config_flags(parser)
    parser.add_argument("--out", help="directory rank 0 writes history.csv, config.json, ... into")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds a collective may wait for the other ranks")
    parser.add_argument("--no-progress", action="store_true")
    rank = int(os.environ.get("RANK", "0"))
    try:
        args = parser.parse_args(argv)
        cfg = config_from_args(args)
        result = run_distributed(cfg, args.out, args.timeout, progress=not args.no_progress)
    except (CLIError, ConfigError) as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, dist.DistBackendError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"rank {rank}: distributed job failed: {first}", file=sys.stderr, flush=True)
        return 1
    if rank == 0:
        final = result.final
        print(f"{result.config.algorithm} M={result.config.workers} ranks={int(os.environ.get('WORLD_SIZE', 1))} "
              f"steps={int(final['step'])} rounds={int(final['round'])} test_acc={final['test_acc']:.4f} "
              f"test_loss={final['test_loss']:.4f} wall={final['wall_time']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
