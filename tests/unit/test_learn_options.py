"""Options of a live learning request: left out on the command line, the source's [sources.learn] values apply.

Before, ``edge-agent learn --sensor`` always sent the file-learning defaults (model undercomplete, 1500 steps,
false rate 0.01), so a source's ``[sources.learn] model = "sparse"`` was silently overridden by every command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cli import build_parser
from edge_agent.common.learning import DEFAULT_FRONTEND, DEFAULT_NETWORK, DEFAULT_STEPS, FRONTENDS, NETWORKS
from edge_agent.config.learn import LearnSection
from edge_agent.service import control
from edge_agent.service.learn_state import LearningRun, LearnRequest, LearnTarget, request_problem
from edge_agent.service.learn_trainer import run_trainer


def sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str) -> dict[str, Any]:
    captured: dict[str, Any] = {}

    def fake_send(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:  # the socket is our own seam
        captured.update(request)
        return {"ok": True, "message": "started"}

    monkeypatch.setattr(control, "send_command", fake_send)
    args = build_parser().parse_args(["learn", "--sensor", "pump", "--state-dir", str(tmp_path), *argv])
    assert args.func(args) == 0
    return captured


def test_options_left_out_are_not_sent_so_the_sources_values_apply(monkeypatch, tmp_path: Path) -> None:
    request = sent(monkeypatch, tmp_path)
    assert request["sensor"] == "pump" and request["duration_s"] == 600.0
    assert not {"network", "frontend", "false_rate", "steps"} & set(request), request


def test_options_given_are_sent(monkeypatch, tmp_path: Path) -> None:
    request = sent(
        monkeypatch, tmp_path, "--model", "excess", "--frontend", "envspread", "--steps", "10", "--false-rate", "0.02"
    )
    assert (request["network"], request["frontend"], request["steps"], request["false_rate"]) == (
        "excess",
        "envspread",
        10,
        0.02,
    )


def test_one_list_of_networks_and_front_ends_and_one_set_of_defaults() -> None:
    assert "excess" in NETWORKS and "envspread" in FRONTENDS
    section = LearnSection()
    assert (section.model, section.frontend, section.steps) == (DEFAULT_NETWORK, DEFAULT_FRONTEND, DEFAULT_STEPS)
    assert request_problem(LearnRequest("pump", 10.0, network="excess", frontend="envspread")) == ""
    assert "frontend 'mfcc'" in request_problem(LearnRequest("pump", 10.0, frontend="mfcc"))


def test_the_trainer_is_given_the_front_end(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv.txt"
    trainer = [
        sys.executable,
        "-c",
        f"import sys; open({str(argv_file)!r}, 'w').write(' '.join(sys.argv)); sys.exit(3)",
    ]
    target = LearnTarget("src", "anomaly", 1000.0, 1, 64, 32, install_model="anomaly")
    run = LearningRun(LearnRequest("pump", 1.0, network="excess", frontend="envspread"), target, 0.0)
    recording = tmp_path / "pump.npy"
    np.save(recording, np.zeros((1, 64), np.float32))
    ok, why, _ = run_trainer(trainer, run, recording)
    assert not ok and "code 3" in why
    assert "--model=excess" in argv_file.read_text() and "--frontend=envspread" in argv_file.read_text()
