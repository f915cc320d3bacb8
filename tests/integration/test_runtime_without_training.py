"""``edge-agent run``, ``check-config`` and ``--help`` in a process where ``edge_agent.training`` (and
``edge_agent.nn``) cannot be imported, as on a gateway installed without the training extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import free_port
from test_agent_replay import REPO, replay_config
from test_reload import toml

# a meta-path finder that refuses the offline packages, then the real entry point
BLOCKED = """
import sys

class Offline:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("edge_agent.training", "edge_agent.nn")):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Offline())
from edge_agent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def edge_agent(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", BLOCKED, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def test_help_lists_the_runtime_commands_and_says_why_training_is_missing() -> None:
    result = edge_agent("--help")
    assert result.returncode == 0, result.stderr
    assert "{check-config,devices,status,run}" in result.stdout
    assert "training commands unavailable: No module named 'edge_agent.training" in result.stdout
    refused = edge_agent("train", "--out", "x")
    assert refused.returncode == 2 and "invalid choice: 'train'" in refused.stderr


def test_check_config_works_without_the_training_package() -> None:
    result = edge_agent("check-config", str(REPO / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: 1 sources, 1 models")


def test_run_works_without_the_training_package(tmp_path: Path) -> None:
    data = replay_config(["097", "105"], speed=0.0, port=free_port())
    data["metrics"]["enabled"] = False
    config = tmp_path / "config.toml"
    config.write_text(toml(data))
    result = edge_agent("run", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fault motor-1: IR007" in result.stdout
