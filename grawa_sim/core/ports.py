"""Local torch.distributed jobs: TCP ports for the rendezvous, and the one torchrun command line."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

from grawa_sim.core.errors import ConfigError


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


def torchrun_command(ranks: int, program: Sequence[str], port: int | None = None,
                     python: str | None = None) -> list[str]:
    """The command that starts ``ranks`` processes of ``program`` on this machine under torchrun.

    ``program``: what torchrun runs in every rank, as on torchrun's own command line: ``["-m", MODULE,
    *args]`` or ``[SCRIPT, *args]``. One node, no restarts, the rendezvous on 127.0.0.1:``port`` (None: a
    free one; a given port is used as is, see `check_port`). torchrun is run as ``python -m
    torch.distributed.run`` with ``python`` (default: this interpreter), so it finds this environment's torch.
    """
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ConfigError(f"ranks: must be >= 1 (got {ranks!r})")
    if port is None:
        port = free_port()
    return [python or sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", "--nnodes=1",
            "--max_restarts=0", "--master_addr=127.0.0.1", f"--master_port={port}", *program]
