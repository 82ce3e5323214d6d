"""Where a run computes: ``device`` names (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and lists of them.

The device is not part of a run's identity (`config.run_identity`): the same config gives the
same numbers on the same device, and a finished run is reused whatever device computed it.
Every random draw (initialisation, shards, batches, probes, augmentation) is made on the CPU
and moved, so the streams do not depend on the device either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from grawa_sim.core.errors import ConfigError

AUTO = "auto"
DEVICE_ENV = "GRAWA_DEVICE"  # what ``auto`` means when set (e.g. by `notebooks --device` for its kernels)


def check_name(name: object, field: str = "device") -> str:
    """``name`` if it is ``auto`` or a torch device string of type cpu or cuda; else a ConfigError."""
    if name == AUTO:
        return name
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{field}: must be auto, cpu, cuda or cuda:N (got {name!r})")
    return name


def resolve_device(name: str | torch.device | None = AUTO, field: str = "device") -> torch.device:
    """The torch.device for ``name``: ``auto`` (or None) is $GRAWA_DEVICE when set, else CUDA when
    available, else the CPU.

    A CUDA device on a machine without one (or past the last index) is a ConfigError.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = check_name(AUTO if name is None else name, field)
    if name == AUTO and os.environ.get(DEVICE_ENV, AUTO) != AUTO:
        name = check_name(os.environ[DEVICE_ENV], f"{field} (from ${DEVICE_ENV})")
    if name == AUTO:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{field}: CUDA is not available on this machine (torch {torch.__version__}) "
                              f"(got {name!r})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{field}: this machine has {torch.cuda.device_count()} CUDA device(s) (got {name!r})")
    return device


def parse_devices(text: str | Sequence[str | torch.device], field: str = "devices") -> list[torch.device]:
    """``cuda:0,cuda:1`` (or a list) -> the devices, each resolved; at least one."""
    names = [v.strip() for v in text.split(",")] if isinstance(text, str) else [str(v) for v in text]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"{field}: name at least one device, e.g. cuda:0,cuda:1 or cpu,cpu (got {text!r})")
    return [resolve_device(n, field) for n in names]
