"""Real distributed runs: the same algorithms on torch.distributed ranks.

    torchrun --nproc_per_node=R -m grawa_sim.cli.distributed <the flags of `python -m grawa_sim run`>
    python -m grawa_sim run --ranks R ...        # starts torchrun for you on this machine

Each rank holds M/R consecutive workers as stacked tensors; the rounds talk through
``DistributedAxis`` (gloo on CPU, nccl when every rank has a GPU: rank r takes
``cuda:<LOCAL_RANK>``). Every rank draws the same shards, batches and probes as the
single-process simulation and keeps its slice, so the numbers agree with it. Rank 0
writes history.csv / config.json / weights.csv / params.pt, exactly as `run --out`.

A rank that dies makes the others fail at their next collective (or after
``--timeout`` seconds), and torchrun then ends the whole job with a non-zero exit.
Divergence, bad input and running out of memory are one line on every rank count
(`launch` prints it once, with the exit status a single process would give). The launcher
starts torchrun in its own process group and ends that group when it is stopped; torchrun
and the ranks die with their parent, so killing the launcher or torchrun leaves no rank behind.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from grawa_sim.algorithms.grawa import DivergenceError
from grawa_sim.config import Config, ConfigError
from grawa_sim.core.collectives import DistributedAxis
from grawa_sim.core.ports import check_port, free_port

FAULT_ENV = "GRAWA_FAULT"  # "rank:step": that rank exits abruptly before the step (for failure tests)
STATUS_ENV = "GRAWA_STATUS"  # set by `launch`: the file a rank writes its one-line failure into
PARENT_ENV = "GRAWA_TORCHRUN_PID"  # set by `launch`: the pid of torchrun, the ranks' parent
DEFAULT_TIMEOUT = 60.0


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (torchrun for a rank, the launcher for torchrun)."""
    if not sys.platform.startswith("linux"):
        return
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # torchrun died before the call (while this rank imported torch)
        os._exit(1)


def check_timeout(timeout: float) -> None:
    if not timeout > 0 or timeout == float("inf"):
        raise ConfigError(f"timeout: must be a positive number of seconds (got {timeout:g})")


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


def run_distributed(config: Config, out: str | None, timeout: float = DEFAULT_TIMEOUT, progress: bool = False,
                    overwrite: bool = False):
    """Join the process group torchrun set up, train this rank's workers, rank 0 saves; returns the Result."""
    from grawa_sim.engine.problem import validate
    from grawa_sim.engine.runner import run
    from grawa_sim.results.storage import save_result

    check_timeout(timeout)
    cfg = validate(config)
    device, backend = device_and_backend()
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        axis = DistributedAxis(cfg.workers, dist.get_rank(), dist.get_world_size(), device)
        result = run(cfg, progress=progress if dist.get_rank() == 0 else False, axis=axis, device=device,
                     on_step=fault_hook())
        if dist.get_rank() == 0 and out:
            save_result(result, out, overwrite=overwrite)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _torchrun_child() -> None:
    """In the forked torchrun, before exec: die with the launcher."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def launch(ranks: int, argv: list[str], port: int | None = None, timeout: float = DEFAULT_TIMEOUT
           ) -> tuple[int, str | None]:
    """Start ``torchrun --nproc_per_node=ranks -m grawa_sim.cli.distributed argv`` here.

    Returns (exit code, the ranks' one-line failure or None): divergence (1), bad input (2) and
    out-of-memory (1) come back as that line, not as torchrun's failure report. A rank waits at most
    ``timeout`` seconds for the others in a collective (torchrun ends every rank if one dies). torchrun
    runs in its own process group: stopping the launcher (Ctrl-C, SIGTERM) ends the group, and
    torchrun and the ranks die with their parent when it is killed.
    """
    if ranks < 1:
        raise ConfigError(f"ranks: must be >= 1 (got {ranks})")
    check_timeout(timeout)
    if port is None:
        port = free_port()
    else:
        check_port(port)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--nnodes=1",
               "--max_restarts=0", "--master_addr=127.0.0.1", f"--master_port={port}",
               "-m", "grawa_sim.cli.distributed", *argv, "--timeout", str(timeout)]
    fd, status = tempfile.mkstemp(prefix="grawa-status-")
    os.close(fd)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), STATUS_ENV: status}
    previous = {}

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, stop)
        # sh puts torchrun's pid (its own, kept by exec) where the ranks can check their parent against it
        wrapped = ["/bin/sh", "-c", f'{PARENT_ENV}=$$; export {PARENT_ENV}; exec "$@"', "sh", *command]
        proc = subprocess.Popen(wrapped, env=env, start_new_session=True, preexec_fn=_torchrun_child)
        try:
            code = proc.wait()
        finally:
            if proc.poll() is None:  # the launcher is being stopped: end torchrun and every rank
                _end_group(proc)
        text = Path(status).read_text()
        if text:
            reported = json.loads(text)
            return int(reported["code"]), reported["message"]
        return code, None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.unlink(status)


def _end_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _report(rank: int, code: int, message: str, local: bool = False) -> int:
    """One failure, one line, once. ``local``: only this rank met it (out of memory, a write error on rank 0):
    it exits 1 and torchrun ends the others. Otherwise every rank knows it (bad input, divergence). Under
    `launch` the line goes to its status file and a shared failure exits 0, so torchrun stays quiet; under a
    bare torchrun the rank prints it."""
    status = os.environ.get(STATUS_ENV)
    if rank == 0 or local:
        if status:
            try:
                with open(status, "r+") as fh:
                    if not fh.read():
                        fh.write(json.dumps({"code": code, "message": message}))
            except OSError:
                pass
        else:
            print(f"error: {message}", file=sys.stderr, flush=True)
    return 1 if local else (0 if status else code)


def main(argv: list[str] | None = None) -> int:
    from grawa_sim.cli.flags import CLIError, Parser, add_config_flags, config_from_args

    parser = Parser(prog="torchrun ... -m grawa_sim.cli.distributed")
    add_config_flags(parser)
    parser.add_argument("--out", help="directory rank 0 writes history.csv, config.json, ... into")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds a collective may wait for the other ranks")
    parser.add_argument("--overwrite", action="store_true", help="replace a run of another configuration in --out")
    parser.add_argument("--no-progress", action="store_true")
    rank = int(os.environ.get("RANK", "0"))
    die_with_parent()
    from grawa_sim.engine.problem import OutOfMemory
    from grawa_sim.results.storage import StorageError

    try:
        args = parser.parse_args(argv)
        cfg = config_from_args(args)
        result = run_distributed(cfg, args.out, args.timeout, progress=False if args.no_progress else None,
                                 overwrite=args.overwrite)
    except (CLIError, ConfigError) as e:
        return _report(rank, 2, str(e))
    except DivergenceError as e:
        return _report(rank, 1, str(e))
    except (OutOfMemory, StorageError) as e:
        return _report(rank, 1, str(e), local=True)
    except (RuntimeError, dist.DistBackendError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"rank {rank}: distributed job failed: {first}", file=sys.stderr, flush=True)
        return 1
    if rank == 0:
        final = result.final
        print(f"{result.config.algorithm} M={result.config.workers} ranks={int(os.environ.get('WORLD_SIZE', 1))} "
              f"steps={int(final['step'])} rounds={int(final['round'])} test_acc={final['test_acc']:.4f} "
              f"test_loss={final['test_loss']:.4f} train_wall={final['wall_time']:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
