"""The command line's shared pieces: the parser class, its errors, and the flags of every Config field.

`grawa_sim.cli.main` builds the subcommands from these; the torch.distributed entry point
(`grawa_sim.cli.distributed`) parses a rank's flags with the same ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
import warnings

from grawa_sim.config import FIELD_HELP, Config, ConfigError, ConfigWarning

USAGE_ERROR = 2


class CLIError(Exception):
    """A one-line user error; the message is 'field: why (got value)'."""


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
