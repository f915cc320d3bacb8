"""The command line's papercuts: -v after the command, --version, plain-text help."""

from __future__ import annotations

import argparse
import re

import pytest

import edge_agent
from edge_agent.cli import build_parser, version_text

# reStructuredText / Sphinx markup that argparse prints as is: ``literal``, `role`, :mod:`x`, **bold**
MARKUP = re.compile(r"`|:(mod|func|class|meth|attr|data):|\*\*")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_every_command_takes_verbose_before_or_after_it() -> None:
    parser = build_parser()
    commands = subcommands(parser)
    assert {"run", "check-config", "devices", "train", "evaluate", "export"} <= commands.keys()
    for name in commands:
        rest = {
            "train": ["--out", "x"],
            "evaluate": ["r"],
            "export": ["r", "--out", "x"],
            "learn": ["a.wav", "--out", "x"],
        }
        rest = rest.get(name, [])
        assert parser.parse_args([name, *rest]).verbose is False
        assert parser.parse_args(["-v", name, *rest]).verbose is True, name
        assert parser.parse_args([name, "-v", *rest]).verbose is True, name
        assert parser.parse_args([name, *rest, "--verbose"]).verbose is True, name


def test_version_names_the_agent_python_and_torch(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.strip() == version_text()
    assert re.fullmatch(rf"edge-agent {re.escape(edge_agent.__version__)} \(Python 3\.\d+\.\d+, torch \S+\)\n", out)
    assert "torch 2.13.0" in out  # the pinned torch of this venv


def test_help_texts_are_plain_text() -> None:
    parser = build_parser()
    texts = [("edge-agent", parser.description), ("edge-agent", parser.epilog)]
    for name, command in {"": parser, **subcommands(parser)}.items():
        texts += [(name, command.description), (name, command.epilog)]
        texts += [(f"{name} {'/'.join(a.option_strings) or a.dest}", a.help) for a in command._actions]
    texts += [(f"{name} (in the list)", a.help) for name, a in _choice_actions(parser)]
    marked = [(where, text) for where, text in texts if text and MARKUP.search(text)]
    assert marked == []
    assert not MARKUP.search(parser.format_help())
    for command in subcommands(parser).values():
        assert not MARKUP.search(command.format_help())


def _choice_actions(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [(a.dest, a) for a in actions[0]._choices_actions]
