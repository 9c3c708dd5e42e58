"""One help style across the commands (issue 16), checked on the real parser (cli.build_parser), every subcommand:

- every command has a description, and a one-line help in the command list;
- every option has a help text;
- no help says "(default: None)" (or False: a flag's default says nothing), nor has two spaces inside a sentence;
- a required option is listed under a "required" heading (argparse lists it among the optional ones otherwise,
  while its usage line shows it without brackets), alone or as one of a required choice (--model | --synthetic).
"""

from __future__ import annotations

import argparse
import re

import pytest

from VirtualContrastTraining.cli import build_parser

# Two spaces between two non-space characters: a stray run inside a sentence (indentation and argparse's own
# column alignment are not inside a sentence).
STRAY_SPACES = re.compile(r"\S {2,}\S")


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, its help in the list of its parent) of every subcommand, nested ones too (presets show)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", sub, helps.get(name)))
                found += _commands(sub, f"{prefix}{name} ")
    return found


COMMANDS = _commands(build_parser())


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _problems(name: str, parser: argparse.ArgumentParser, listed_help: str | None) -> list[str]:
    problems = []
    if not (parser.description or "").strip():
        problems.append(f"{name}: no description")
    if not (listed_help or "").strip():
        problems.append(f"{name}: no help in the command list")
    required_group = next((g for g in parser._action_groups if g.title == "required"), None)
    in_required = set(required_group._group_actions) if required_group else set()
    required_choices = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in _options(parser):
        label = f"{name} {'/'.join(action.option_strings) or action.dest}"
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            problems.append(f"{label}: no help")
        if action.option_strings and (action.required or action in required_choices) and action not in in_required:
            problems.append(f"{label}: required but not under the 'required' heading")
    for line in [*(parser.description or "").splitlines(), *(a.help or "" for a in _options(parser))]:
        if STRAY_SPACES.search(line.strip()):
            problems.append(f"{name}: two spaces inside {line.strip()!r}")
    text = parser.format_help()
    problems += [f"{name}: its help says {said!r}" for said in ("default: None", "default: False") if said in text]
    return problems


@pytest.mark.parametrize("name, parser, listed_help", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_one_help_style(name, parser, listed_help):
    assert _problems(name, parser, listed_help) == []


def test_every_command_module_is_walked():
    names = {c[0] for c in COMMANDS}
    assert {"phantom", "import", "split", "train", "predict", "evaluate", "demo", "compare", "report",
            "reader-study", "seg", "presets", "presets list", "presets show"} <= names


def test_the_checks_find_what_they_look_for():
    """The checks are not vacuous: a parser with each fault is caught."""
    parser = argparse.ArgumentParser(prog="bad", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output  folder")
    parser.add_argument("--quiet", action="store_true")
    problems = _problems("bad", parser, None)
    assert {"bad: no description", "bad: no help in the command list", "bad --quiet: no help",
            "bad --out: required but not under the 'required' heading", "bad: its help says 'default: None'",
            "bad: two spaces inside 'output  folder'"} <= set(problems)
