"""The offline commands come from ``edge_agent.training.commands``: listed by ``edge-agent --help``, every
option with a help text and its default shown, and the defaults the commands always had."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import edge_agent
from edge_agent.cli import build_parser, main
from edge_agent.training.commands import COMMANDS

RUNTIME = ("check-config", "devices", "status", "run")
# the defaults as they were when the commands moved out of cli.py (moving them changed none), but train's,
# which are the shipped model's recipe since issue 11 (they were a small, fast test network before)
DEFAULTS: dict[str, dict[str, object]] = {
    "train": {
        "model": "drsn_cw",
        "widths": (16, 32, 64),
        "blocks_per_stage": 2,
        "window_samples": 2048,
        "epochs": 40,
        "steps_per_epoch": 50,
        "batch_size": 128,
        "lr": 0.1,
        "mode": "augment",
        "snr_range": (-12.0, 6.0),
        "matched_snr": 0.0,
        "clean_fraction": 0.15,
        "seed": 0,
        "threads": 1,
        "data": None,
        "quiet": False,
    },
    "train-audio": {
        "frontend": "raw",
        "window_samples": 4096,
        "steps": 1200,
        "gap_fraction": 0.1,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "cv": None,
        "seeds": (0, 1, 2),
        "out": "runs/audio/shipped",
        "model_out": "models/drsn_cw_bldc_audio.pt",
        "float_out": "models/drsn_cw_bldc_audio_float.pt",
        "cv_summary": None,
        "data": None,
    },
    "evaluate": {"repeats": 2, "data": None},
    "export": {"float": False, "engine": "onednn", "data": None},
    "sweep": {"runs": "runs", "jobs": 2, "only": None, "data": None},
    "report": {"runs": "runs", "out": "docs/results", "model": None, "data": None},
}
REQUIRED = {"train": ["--out", "o"], "evaluate": ["r"], "export": ["r", "--out", "o"]}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_help_lists_the_training_and_the_runtime_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for name in (*COMMANDS, *RUNTIME):
        assert f"    {name} " in text, name
    assert "training commands unavailable" not in text
    assert set(subcommands(build_parser())) == {*COMMANDS, *RUNTIME}


def test_train_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for shown in ("(default: 40)", "(default: 16,32,64)", "(default: -12,6)", "(default: augment)", "(default: 0.15)"):
        assert shown in text, shown


@pytest.mark.parametrize("command", ["train", "evaluate", "sweep", "export", "train-audio", "report"])
def test_every_option_has_a_help_text_and_a_shown_default(command: str) -> None:
    parser = subcommands(build_parser())[command]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest} has no help text"
        if action.option_strings and action.default is not None:
            shown = action.default if isinstance(action.default, str) else repr(action.default)
            assert f"{action.help} (default: {shown})" in text, f"{command} {action.dest}"


@pytest.mark.parametrize("command", sorted(DEFAULTS))
def test_the_defaults_did_not_change(command: str) -> None:
    args = vars(build_parser().parse_args([command, *REQUIRED.get(command, [])]))
    assert {key: args[key] for key in DEFAULTS[command]} == DEFAULTS[command]


def test_the_training_package_does_not_import_the_config_loader() -> None:
    """Paths shared by both sides live in ``edge_agent.common.paths``; training never reads agent config code."""
    root = Path(edge_agent.__file__).parent / "training"
    imported: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            imported.setdefault(path.name, set()).update(names)
    offending = {
        name: sorted(n for n in names if n.startswith(("edge_agent.configload", "edge_agent.config")))
        for name, names in imported.items()
    }
    assert not {name: found for name, found in offending.items() if found}
