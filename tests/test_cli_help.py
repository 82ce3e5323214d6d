"""Every flag of every subcommand has a help line that shows its default."""

from __future__ import annotations

import argparse

import pytest

from grawa_sim.cli.main import build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_subcommand_is_walked():
    commands = _subparsers()
    assert {"run", "sweep", "reproduce", "anchor", "bench", "flatness", "notebooks"} <= set(commands)
    assert all(_flags(p) for p in commands.values())


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_flag_has_help_and_shows_its_default(command):
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    for action in _flags(parser):
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{command} {name}: no help text"
        shown = formatter._expand_help(action)
        assert "default" in shown.lower(), f"{command} {name}: the default is not shown in {shown!r}"
    text = parser.format_help()
    assert "(default: " in text


def test_run_help_shows_the_config_defaults():
    text = " ".join(_subparsers()["run"].format_help().split())
    assert "(default: 0.05)" in text  # --lr
    assert "(default: 0)" in text  # --seed
    assert "--outer-lr" in text and "default 0.7" in text


def test_the_top_level_help_names_every_subcommand():
    """`python -m grawa_sim --help` lists every command in its description (tune was missing)."""
    description = build_parser().description
    named = set(description.split("{", 1)[1].split("}", 1)[0].replace(" ", "").split(","))
    assert named == set(_subparsers()), description
