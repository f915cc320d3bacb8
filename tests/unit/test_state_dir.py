"""``agent.state_dir``: where the alert outbox lives (explicit, systemd's STATE_DIRECTORY, or XDG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, AgentSection, MqttSection
from edge_agent.configload import ConfigError, parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.sinks import SinkBuild, build_sinks
from edge_agent.sinks.outbox import OUTBOX_FILE


def _data(**agent: Any) -> dict[str, Any]:
    return {
        "agent": {"id": "gw-7", **agent},
        "models": [{"name": "bearing", "path": "model.pt"}],
        "sources": [{"type": "replay", "name": "demo", "models": ["bearing"], "sensor": "m1", "path": "d.npz"}],
    }


def test_a_relative_state_dir_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config = parse_config(_data(state_dir="var/state"), base_dir=tmp_path)
    assert config.agent.state_dir == str(tmp_path / "var" / "state")
    assert config.agent.state_path() == tmp_path / "var" / "state"


def test_a_state_dir_that_is_a_file_is_an_error_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError) as err:
        parse_config(_data(state_dir="taken"), base_dir=tmp_path)
    assert str(err.value).startswith("agent.state_dir: 'taken' is not a folder; a folder (created if missing)")


def test_the_default_is_systemds_state_directory_else_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    agent = parse_config(_data(), base_dir=tmp_path).agent
    assert agent.state_dir == ""  # resolved when the agent runs, from its environment
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-agent:/var/lib/other")
    assert agent.state_path() == Path("/var/lib/edge-agent")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert agent.state_path() == tmp_path / "xdg" / "edge-agent" / "gw-7"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert agent.state_path() == tmp_path / "home" / ".local" / "state" / "edge-agent" / "gw-7"


def test_the_mqtt_sink_keeps_its_outbox_in_the_state_dir(tmp_path: Path) -> None:
    config = AgentConfig(agent=AgentSection(id="gw-7", state_dir=str(tmp_path / "s")), mqtt=MqttSection(enabled=True))
    sink = build_sinks(config, SinkBuild(AgentMetrics(), None, None)).all[1]
    assert sink._outbox_path == tmp_path / "s" / OUTBOX_FILE  # type: ignore[attr-defined]
