"""Real distributed runs: the same algorithms on torch.distributed ranks.

    python -m grawa_sim run --ranks R ...        # starts torchrun for you on this machine
    torchrun --nproc_per_node=R -m grawa_sim.cli.distributed <the flags of `python -m grawa_sim run`>
    torchrun --nproc_per_node=R -m grawa_sim.cli.distributed --config CONFIG.json [--out DIR ...]

A rank takes its configuration as flags (as `run` does) or as a JSON file of Config fields
(``--config``: what `grawa_sim.config.to_dict` gives, a run folder's config.json too), with the
options that are not part of a run's identity beside it (``--out``, ``--timeout``, ``--overwrite``,
``--no-progress``, and ``--device`` / ``--data-dir``, which replace the file's). `launch` (`run
--ranks`) validates the configuration once and hands its ranks such a file.

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
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from grawa_sim.config import NOT_IDENTITY, Config, ConfigError, to_dict
from grawa_sim.core.collectives import DistributedAxis
from grawa_sim.core.ports import check_port, torchrun_command

FAULT_ENV = "GRAWA_FAULT"  # "rank:step": that rank exits abruptly before the step (for failure tests)
STATUS_ENV = "GRAWA_STATUS"  # set by `launch`: the file a rank writes its one-line failure into
PARENT_ENV = "GRAWA_TORCHRUN_PID"  # set by `launch`: the pid of torchrun, the ranks' parent
DEFAULT_TIMEOUT = 60.0
MODULE = "grawa_sim.cli.distributed"  # what torchrun runs in every rank
CONFIG_FILE = "config.json"  # the validated configuration `launch` hands its ranks


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


def write_config(config: Config, folder: str | os.PathLike) -> Path:
    """``config`` as folder/config.json (`to_dict`, written atomically): the file a rank reads with --config."""
    from grawa_sim.core.folders import write_atomic

    text = json.dumps(to_dict(config), indent=2) + "\n"
    return write_atomic(Path(folder) / CONFIG_FILE, lambda tmp: tmp.write_text(text))


def launch(ranks: int, config: Config, out: str | None = None, *, port: int | None = None,
           timeout: float = DEFAULT_TIMEOUT, overwrite: bool = False, progress: bool | None = None
           ) -> tuple[int, str | None]:
    """Run ``config`` (validated: `grawa_sim.engine.problem.validate`) on ``ranks`` torch.distributed
    processes on this machine: ``torchrun --nproc_per_node=ranks -m grawa_sim.cli.distributed --config FILE``.

    The configuration goes to the ranks once, as a JSON file in a temporary folder (removed afterwards);
    rank 0 saves the run into ``out``. Returns (exit code, the ranks' one-line failure or None): divergence
    (1), bad input (2) and out-of-memory (1) come back as that line, not as torchrun's failure report. A rank
    waits at most ``timeout`` seconds for the others in a collective (torchrun ends every rank if one dies).
    torchrun runs in its own process group: stopping the launcher (Ctrl-C, SIGTERM) ends the group, and
    torchrun and the ranks die with their parent when it is killed.
    """
    check_timeout(timeout)
    if port is not None:
        check_port(port)
    folder = tempfile.mkdtemp(prefix="grawa-job-")
    try:
        options = [*(["--out", str(out)] if out else []), *(["--overwrite"] if overwrite else []),
                   *(["--no-progress"] if progress is False else []), "--timeout", str(timeout)]
        command = torchrun_command(ranks, ["-m", MODULE, "--config", str(write_config(config, folder)), *options],
                                   port)
        return _start(command, Path(folder) / "status")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(command: list[str], status: Path) -> tuple[int, str | None]:
    """Run torchrun's ``command`` in its own process group; (its exit code, the ranks' one-line failure)."""
    status.touch()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), STATUS_ENV: str(status)}
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
        text = status.read_text()
        if text:
            reported = json.loads(text)
            return int(reported["code"]), reported["message"]
        return code, None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def _config(args) -> Config:
    """The rank's Config: its --config file, or its config flags (as `run` takes them)."""
    import dataclasses

    from grawa_sim.cli.flags import CLIError, config_from_args, config_from_file

    if args.config is None:
        return config_from_args(args)
    given = [f.name for f in dataclasses.fields(Config) if getattr(args, f.name) is not None]
    mixed = [name for name in given if name not in NOT_IDENTITY]
    if mixed:
        flag = "--" + mixed[0].replace("_", "-")
        raise CLIError(f"config: give the configuration as --config FILE or as flags, not both (got {flag})")
    return dataclasses.replace(config_from_file(args.config), **{name: getattr(args, name) for name in given})


def main(argv: list[str] | None = None) -> int:
    from grawa_sim.cli.flags import Parser, add_config_flags, one_line_errors

    parser = Parser(prog="torchrun ... -m grawa_sim.cli.distributed")
    add_config_flags(parser)
    parser.add_argument("--config", default=None,
                        help="a JSON file of config fields (a run folder's config.json too) instead of the config "
                             "flags; --device and --data-dir may still be given and replace the file's "
                             "(default: the config flags)")
    parser.add_argument("--out", help="directory rank 0 writes history.csv, config.json, ... into")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds a collective may wait for the other ranks")
    parser.add_argument("--overwrite", action="store_true", help="replace a run of another configuration in --out")
    parser.add_argument("--no-progress", action="store_true")
    rank = int(os.environ.get("RANK", "0"))
    die_with_parent()

    def train() -> int:
        args = parser.parse_args(argv)
        result = run_distributed(_config(args), args.out, args.timeout,
                                 progress=False if args.no_progress else None, overwrite=args.overwrite)
        if rank == 0:
            final = result.final
            print(f"{result.config.algorithm} M={result.config.workers} "
                  f"ranks={int(os.environ.get('WORLD_SIZE', 1))} steps={int(final['step'])} "
                  f"rounds={int(final['round'])} test_acc={final['test_acc']:.4f} "
                  f"test_loss={final['test_loss']:.4f} train_wall={final['wall_time']:.1f}s", flush=True)
        return 0

    try:
        return one_line_errors(train, report=lambda found: _report(rank, found.code, found.message, found.local))
    except (RuntimeError, dist.DistBackendError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"rank {rank}: distributed job failed: {first}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
