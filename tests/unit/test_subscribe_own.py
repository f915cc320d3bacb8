"""Issue 13 item 4: with ``subscribe_own`` each instance subscribes to its own sensors' topics only."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.instances import share_of
from edge_agent.config.table import ConfigError
from edge_agent.configload import parse_config
from edge_agent.sources.mqtt_config import MqttSourceSection
from edge_agent.sources.mqtt_topics import TopicSensors

SENSORS = tuple(f"pump{i}" for i in range(12))


def _section(**overrides: object) -> MqttSourceSection:
    base = {"type": "mqtt", "name": "p", "models": ("m",), "topic": "plant/+/vibration", "sensor_level": 1, "qos": 1}
    return MqttSourceSection(**{**base, "instances": 2, "sensors": SENSORS, "subscribe_own": True, **overrides})


def test_each_instance_subscribes_to_exactly_its_share_of_the_listed_sensors() -> None:
    filters = [TopicSensors(_section(), i).subscriptions() for i in (0, 1)]
    for i, mine in enumerate(filters):
        assert mine == [(f"plant/{s}/vibration", 1) for s in sorted(SENSORS) if share_of(s, 2) == i]
    assert sorted(f for mine in filters for f, _q in mine) == sorted(f"plant/{s}/vibration" for s in SENSORS)


@pytest.mark.parametrize(
    "overrides", [{"subscribe_own": False}, {"instances": 1}, {"sensors": ()}, {"sensors": ("pump0",)}]
)
def test_otherwise_the_source_topic_itself(overrides: dict[str, object]) -> None:
    rules = TopicSensors(_section(**overrides), 1)  # ("pump0",): instance 1's share is empty
    if overrides == {"sensors": ("pump0",)} and share_of("pump0", 2) == 1:
        rules = TopicSensors(_section(**overrides), 0)
    assert rules.subscriptions() == [("plant/+/vibration", 1)]


def test_subscribe_own_where_it_cannot_apply_is_refused_naming_the_key() -> None:
    source = {"type": "mqtt", "name": "p", "topic": "plant/+/v", "models": ["m"], "subscribe_own": True}
    data = {"mqtt": {"enabled": True, "host": "b"}, "models": [{"name": "m", "path": "/m.pt"}], "sources": [source]}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.subscribe_own: True cannot apply; subscribe_own needs"):
        parse_config(data, base_dir=Path("/"))
