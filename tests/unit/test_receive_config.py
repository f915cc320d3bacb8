"""``[[sources]] receive`` / ``receive_cpu`` of an MQTT source: defaults, choices, and the CPU only with a process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.configload import ConfigError, parse_config


def _config(**source: Any) -> Any:
    return parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [{"type": "mqtt", "name": "plant", "topic": "plant/+/v", "models": ["bearing"], **source}],
        },
        base_dir=Path("/"),
    )


def test_paho_stays_in_process_by_default() -> None:
    section = _config().sources[0]
    assert (section.receive, section.receive_cpu) == ("thread", -1)
    section = _config(receive="process", receive_cpu=0).sources[0]
    assert (section.receive, section.receive_cpu) == ("process", 0)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"receive": "fork"}, "sources[0].receive: 'fork'"),
        ({"receive_cpu": 1}, "sources[0].receive_cpu: 1 is not used; receive_cpu places a receive process"),
        ({"receive": "process", "receive_cpu": -2}, "sources[0].receive_cpu: -2 is out of range"),
    ],
)
def test_bad_receive_settings_are_refused_naming_the_key(source: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(**source)
    assert any(error.startswith(expected) for error in info.value.errors), info.value.errors


def test_the_change_detector_is_off_by_default_and_json_needs_the_receive_process() -> None:
    assert _config().sources[0].change_threshold == 0.0
    assert _config(receive="process", change_threshold=10.0).sources[0].change_threshold == 10.0
    binary = {"format": "f32le", "sample_rate_hz": 12000.0}
    assert _config(change_threshold=10.0, **binary).sources[0].change_threshold == 10.0
    with pytest.raises(ConfigError) as info:
        _config(change_threshold=10.0)  # JSON decoded for every message on the inference core
    assert "sources[0].change_threshold: 10.0 is too dear" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _config(receive="process", change_threshold=-1.0)
    assert "sources[0].change_threshold: -1.0 is out of range" in str(info.value)
