"""The command line's shared pieces: the parser class, its errors, the flags of every Config field, a
config file, and `one_line_errors`, which turns the errors a user can meet into one ``error:`` line.

`grawa_sim.cli.main` builds the subcommands from these; the torch.distributed entry point
(`grawa_sim.cli.distributed`) parses a rank's flags (or its ``--config`` file) with the same ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path

from grawa_sim.config import FIELD_HELP, Config, ConfigError, ConfigWarning

USAGE_ERROR = 2  # bad input: a flag, a value, a file the run reads or writes
RUN_FAILED = 1  # a run that failed: divergence, out of memory, a failed write, a dead rank


class CLIError(Exception):
    """A one-line user error; the message is 'field: why (got value)'."""


class Failed(Exception):
    """A failure already put in one line (e.g. what the ranks of a distributed job reported): printed as
    ``error: <message>``, exit status ``code``."""

    def __init__(self, message: str, code: int = RUN_FAILED):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Failure:
    """How an error is reported: ``error: <message>`` and exit status ``code``; ``local``: only the process
    that met it knows (out of memory, a failed write), not every rank of a distributed job."""

    code: int
    message: str
    local: bool = False


# Errors of a failed run, by module: (exit status, met by one process only). Looked up in sys.modules, so that
# checking them imports nothing (an error of a module never loaded cannot have been raised).
_RUN_FAILURES = {
    ("grawa_sim.algorithms.grawa", "DivergenceError"): (RUN_FAILED, False),
    ("grawa_sim.engine.problem", "OutOfMemory"): (RUN_FAILED, True),
    ("grawa_sim.results.storage", "StorageError"): (RUN_FAILED, True),
}


def failure(error: BaseException) -> Failure | None:
    """The one-line report of an error a user can meet, or None (a bug: let its traceback show).

    Bad input (`CLIError`, `ConfigError`: a flag, a value, an --out that cannot be written, an unreadable
    file) exits 2; a diverged run, running out of memory and a failed write exit 1; `Failed` its own code."""
    if isinstance(error, Failed):
        return Failure(error.code, str(error))
    if isinstance(error, (CLIError, ConfigError)):
        return Failure(USAGE_ERROR, str(error))
    for (module, name), (code, local) in _RUN_FAILURES.items():
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(error, kind):
            return Failure(code, str(error), local)
    return None


def print_failure(found: Failure) -> int:
    """Print ``error: <message>`` on stderr; returns the exit status."""
    print(f"error: {found.message}", file=sys.stderr, flush=True)
    return found.code


def one_line_errors(body: Callable[[], int | None], report: Callable[[Failure], int] = print_failure) -> int:
    """Run an entry point's ``body``; returns its exit status (None: 0). An error `failure` knows is reported
    by ``report`` (default: one ``error:`` line on stderr) and its status returned; any other error is raised.

    Every entry point (``python -m grawa_sim``, the torchrun ranks) reports its users' errors through this."""
    try:
        return body() or 0
    except Exception as e:
        found = failure(e)
        if found is None:
            raise
        return report(found)


class DefaultsShown(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if "default" not in text.lower() and action.default is not argparse.SUPPRESS and shown:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        match = re.match(r"argument --([\w-]+)(?:/--[\w-]+)?: (.*)", message)
        if match:
            message = f"{match.group(1).replace('-', '_')}: {match.group(2)}"
        raise CLIError(message)


def _converter(kind: type, field: str):
    if kind is tuple:
        number = _converter(float, field)

        def convert_tuple(text: str) -> tuple[float, ...]:
            return tuple(number(v) for v in text.split(",") if v.strip()) if text.strip() else ()

        return convert_tuple

    def convert(text: str):
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"must be true or false (got {text!r})")
        try:
            return kind(text)
        except ValueError:
            noun = {int: "an integer", float: "a number"}.get(kind, kind.__name__)
            raise argparse.ArgumentTypeError(f"must be {noun} (got {text!r})") from None

    convert.__name__ = field
    return convert


def one_of(field: str, allowed: tuple[str, ...]):
    """An argparse ``type`` that accepts one of ``allowed``; otherwise 'field: must be one of ... (got ...)'."""

    def convert(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(allowed)} (got {text!r})")
        return text

    convert.__name__ = field
    return convert


def _field_kind(annotation) -> type:
    hint = eval(annotation, vars(typing)) if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType):
        hint = next(a for a in hint.__args__ if a is not type(None))
    return typing.get_origin(hint) or hint


def _shown(value: object) -> str:
    """A Config default as the command line writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value) or "none"
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, lists: bool = False) -> None:
    """One flag per Config field (underscores as dashes); ``lists`` accepts comma-separated values.

    Tuple fields (``--speeds 1,1,2,2``) take comma-separated numbers; in ``lists`` mode their
    alternatives are separated by ';' (``--speeds "1,1;1,2"``). Each help line ends with the
    Config default (the flags themselves default to None: "not given").
    """
    for f in dataclasses.fields(Config):
        kind = _field_kind(f.type)
        flag = "--" + f.name.replace("_", "-")
        convert = _converter(kind, f.name)
        text = FIELD_HELP[f.name]
        if "default" not in text:
            text += f" (default: {_shown(f.default)})"
        if lists:
            sep = ";" if kind is tuple else ","
            parser.add_argument(flag, type=lambda s, c=convert, sep=sep: [c(v) for v in s.split(sep)], default=None,
                                metavar=f.name.upper() + f"[{sep}...]", help=text)
        elif kind is bool:
            parser.add_argument(flag, type=convert, default=None, metavar="true|false", help=text)
        else:
            parser.add_argument(flag, type=convert, default=None, help=text)


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config of a single run's flags; a flag that would have no effect (``--tau`` with DP, ``--alpha``
    without Dirichlet shards, ...) is an error here."""
    from grawa_sim.config import unused_fields

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        config = Config(**values)  # bad values first
    for field, why in unused_fields(config):
        raise ConfigError(f"{field}: {why} (got {getattr(config, field)!r})")
    return config


def config_from_file(path: str | os.PathLike) -> Config:
    """The Config in the JSON file ``path`` (`grawa_sim.config.to_dict`'s fields, as `run --ranks` writes it
    for its ranks and a run folder's config.json holds); a missing or bad file is a one-line ConfigError."""
    from grawa_sim.config import from_dict
    from grawa_sim.core.folders import reason

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: cannot read the file: {reason(e)} (got '{path}')") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config: not JSON: {e.msg} at line {e.lineno} (got '{path}')") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config: must hold a JSON object of config fields (got '{path}')")
    try:
        return from_dict(values)
    except TypeError as e:  # a value of a kind no check expects (e.g. a list for a number)
        raise ConfigError(f"config: not a valid config: {e} (got '{path}')") from None
