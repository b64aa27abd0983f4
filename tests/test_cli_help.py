"""The ``broker`` command explains itself: every option and sub-command has help, and every
command group given no action prints its own help.

The tree is walked as built, so an option or a group added later without help fails here.
"""

from __future__ import annotations

import argparse

import pytest

from broker.cli import _parser, main


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser, help line)`` of every sub-command below ``parser``, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield (*path, name), child, helps.get(name)
                yield from _commands(child, (*path, name))


def _is_group(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


COMMANDS = list(_commands(_parser()))
GROUPS = [path for path, parser, _ in COMMANDS if _is_group(parser)]


def test_the_tree_is_walked():
    paths = {path for path, _, _ in COMMANDS}
    assert {("keys", "rotate"), ("admin", "token", "create"), ("registry", "import"), ("serve",)} <= paths
    assert {("keys",), ("admin",), ("admin", "token"), ("config",), ("mapping",)} <= set(GROUPS)


@pytest.mark.parametrize("path", [path for path, _, _ in COMMANDS], ids=" ".join)
def test_every_command_and_option_has_help(path):
    parser, line = next((p, h) for q, p, h in COMMANDS if q == path)
    assert line and line.strip(), f"`broker {' '.join(path)}` has no help line"
    # -h is argparse's; a group's sub-commands are checked as commands of their own.
    missing = ["/".join(a.option_strings) or a.dest for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not (a.help and a.help.strip())]
    assert not missing, f"`broker {' '.join(path)}`: no help for {', '.join(missing)}"


def test_top_level_options_have_help():
    for action in _parser()._actions:
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            assert action.help, action.option_strings or action.dest


@pytest.mark.parametrize("path", GROUPS, ids=" ".join)
def test_a_group_without_an_action_prints_its_own_help(path, capsys):
    assert main(list(path)) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: broker {' '.join(path)} "), out
    parser = next(p for q, p, _ in COMMANDS if q == path)
    for name in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices:
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, f"{name} not listed in {out}"
    assert not err


def test_broker_alone_prints_what_it_can_do(capsys):
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: broker ") and "\n    check " in out and "\n    demo " in out and not err
