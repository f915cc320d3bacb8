"""One rule for sensor ids (config, MQTT admission, the alert sink): a short, printable topic level."""

from __future__ import annotations

import pytest

from edge_agent.config.rules import MAX_SENSOR_ID_CHARS, sensor_id


@pytest.mark.parametrize("text", ["pump-1", "pump 3.a", "Förderband_7", "x" * MAX_SENSOR_ID_CHARS])
def test_ids_the_agent_can_publish_under(text: str) -> None:
    assert sensor_id(text)


@pytest.mark.parametrize(
    "text",
    ["", "a/b", "a+b", "a#", "nul\0", "bell\x07", "tab\t", "new\nline", "x" * (MAX_SENSOR_ID_CHARS + 1), "x" * 65_515],
)
def test_ids_refused(text: str) -> None:
    assert not sensor_id(text)
