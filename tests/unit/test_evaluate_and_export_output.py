"""``evaluate`` prints a table (``--json`` for machines); ``export`` judges the held-out accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.training.accuracy_gate import accuracy_problem

RESULT = {
    "repeats": 2,
    "test_windows": 650,
    "per_kind": {
        "gaussian": {"-10": 0.9123, "0": 0.99, "clean": 0.9967},
        "pink": {"-10": 0.95, "0": 0.995, "clean": 0.9967},
    },
    "summary": {"-10": 0.93115, "0": 0.9925, "clean": 0.9967},
}


@pytest.fixture
def evaluated_run(tmp_path: Path) -> Path:
    """A run folder whose evaluation is cached (evaluate_run reads <run>/eval.json when repeats match)."""
    (tmp_path / "eval.json").write_text(json.dumps(RESULT))
    return tmp_path


def test_evaluate_prints_a_table(evaluated_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(evaluated_run)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "accuracy on the time-held-out test split: 650 windows, 2 noise draws per window and condition",
        "   SNR  gaussian   pink   mean",
        "-10 dB     91.2%  95.0%  93.1%",
        "  0 dB     99.0%  99.5%  99.2%",
        " clean     99.7%  99.7%  99.7%",
    ]


def test_evaluate_json_is_the_whole_result(evaluated_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(evaluated_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == RESULT


def test_an_accuracy_near_chance_is_refused_and_a_weak_one_warned() -> None:
    refuse, message = accuracy_problem(0.11, 10)  # the 11 % of the issue: chance is 10 %
    assert refuse and "11.0%" in message and "below 1.5 x chance (15.0%)" in message
    assert accuracy_problem(0.149, 10)[0] is True
    refuse, message = accuracy_problem(0.15, 10)
    assert not refuse and "below 90%" in message
    assert accuracy_problem(0.49, 3)[0] is True and accuracy_problem(0.51, 3)[0] is False
    assert accuracy_problem(0.90, 10) is None and accuracy_problem(1.0, 3) is None
