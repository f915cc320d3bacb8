"""Every ``edge-agent ...`` / ``python -m edge_agent ...`` command line the documentation shows parses.

Only argparse runs (nothing is executed): a command, option or value the parser does not take, in
README.md, docs/, models/README.md or the systemd files, fails here. Command lines are taken from
fenced code blocks (``\\`` continuations joined, ``$ `` prompts and ``#`` comments dropped), inline
code spans and the unit's ``Exec*=`` lines. An option written on its own in a span (``--loop``)
belongs to the last command shown before it in the same paragraph and is parsed with it.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from edge_agent.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [REPO / "README.md", REPO / "models" / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "systemd").iterdir()]
)
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
SHELL_OPERATORS = ("|", "||", "&&", ";", ">", ">>", "2>&1", "&")


def split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # unbalanced quotes: not a shell line
        return text.split()


def command_args(text: str) -> list[str] | None:
    """The arguments after ``edge-agent`` / ``python -m edge_agent`` if ``text`` is such a command line, else None."""
    tokens = split(re.sub(r"^\s*(\$\s+|Exec\w*=)", "", text))
    while tokens and (tokens[0] == "sudo" or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0])):
        tokens = tokens[1:]
    if len(tokens) < 2:  # `edge-agent` alone names the project (a job, a user), not a command
        return None
    if tokens[0] == "edge-agent" or tokens[0].endswith("bin/edge-agent"):
        args = tokens[1:]
    elif re.fullmatch(r"(\S*/)?python(3(\.\d+)?)?", tokens[0]) and tokens[1:3] == ["-m", "edge_agent"]:
        args = tokens[3:]
    else:
        return None
    if not args:  # the entry point named, not run
        return None
    for index, token in enumerate(args):
        if token in SHELL_OPERATORS:
            return args[:index]
    return args


def code_blocks_and_paragraphs(text: str) -> tuple[list[str], list[str]]:
    """(lines of fenced code blocks with continuations joined, the prose paragraphs)."""
    blocks, prose, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            prose.append("")
        elif fenced:
            if blocks and blocks[-1].endswith("\\"):
                blocks[-1] = blocks[-1][:-1] + " " + line.strip()
            else:
                blocks.append(line)
        else:
            prose.append(line)
    return blocks, [p for p in "\n".join(prose).split("\n\n") if p.strip()]


def documented_commands() -> list[tuple[str, list[str]]]:
    """``(where, args)`` for every documented command line."""
    found: list[tuple[str, list[str]]] = []
    for path in DOCUMENTS:
        where = str(path.relative_to(REPO))
        text = path.read_text()
        if path.suffix != ".md":  # the unit and the gateway config: Exec*= lines and spans in comments
            blocks, paragraphs = [line for line in text.splitlines() if line.startswith("Exec")], [text]
        else:
            blocks, paragraphs = code_blocks_and_paragraphs(text)
        found += [(where, args) for line in blocks if (args := command_args(line)) is not None]
        for paragraph in paragraphs:
            last: list[str] | None = None
            for span in SPAN.findall(paragraph):
                args = command_args(span)
                if args is not None:
                    found.append((where, args))
                    last = args
                elif last is not None and span.startswith("--"):
                    found.append((where, [*last, *split(span)]))
    return found


def parse_error(args: list[str]) -> str | None:
    """argparse's complaint about ``args``, or None if they parse (``--help`` counts as parsing)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(args)
    except SystemExit as exit_:
        return None if exit_.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    return None


def test_the_documentation_shows_commands_of_every_kind() -> None:
    commands = documented_commands()
    shown = {args[0] for _, args in commands if args}
    assert {"run", "check-config", "devices", "train", "evaluate", "export", "report", "train-audio"} <= shown


@pytest.mark.parametrize("where, args", documented_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_documented_command_line_parses(where: str, args: list[str]) -> None:
    assert parse_error(args) is None, f"{where}: edge-agent {shlex.join(args)}: {parse_error(args)}"


def test_an_option_the_command_does_not_take_is_caught() -> None:
    paragraph = "`.venv/bin/edge-agent run --loop` keeps replaying (override with `--data PATH` or ...)."
    _, paragraphs = code_blocks_and_paragraphs(paragraph)
    assert [command_args(s) for s in SPAN.findall(paragraphs[0])] == [["run", "--loop"], None]
    assert parse_error(["run", "--loop", "--data", "PATH"]) == "edge-agent: error: unrecognized arguments: --data PATH"
