"""Topic -> sensor id for the ``mqtt`` source: the one rule set, used in the agent and in its receive process.

No paho and no metrics here (the receive process of ``receive = "process"`` imports this module):
a topic's sensor id is level ``sensor_level``; another instance's sensor (``instances`` > 1,
:func:`edge_agent.config.instances.share_of`) is ``None`` before any id check, so each message is
counted by exactly one instance; an id that breaks :data:`SENSOR_ID_RULE`, one outside the
allow-list ``sensors`` or one past ``max_sensors`` raises :class:`PayloadError` (``bad_sensor_id``,
``unknown_sensor``, ``too_many_sensors``). Admitted ids are remembered (:meth:`TopicSensors.admit`),
their topics cached up to ``cache_size``. :meth:`TopicSensors.subscriptions` is what to subscribe to:
with ``subscribe_own``, ``instances`` > 1 and an allow-list, only this instance's sensors' topics (the
broker then sends no other instance's messages, which each instance would otherwise receive,
acknowledge and drop; a sensor outside the list then reaches no instance, not even as ``unknown_sensor``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from edge_agent.config.instances import share_of
from edge_agent.config.rules import SENSOR_ID_RULE, sensor_id
from edge_agent.sources.mqtt_config import MqttSourceSection, sensor_wildcard
from edge_agent.sources.payloads import PayloadError

if TYPE_CHECKING:
    import paho.mqtt.client as paho

logger = logging.getLogger(__name__)
_NOT_UTF8 = "topic is not valid UTF-8"

TOPIC_CACHE = 4096  # topics remembered with their checked sensor id (more: checked each time)


class TopicSensors:
    """The sensor id a topic names, with the source's admission bounds (one thread at a time)."""

    def __init__(
        self, section: MqttSourceSection, instance: int, *, known: Iterable[str] = (), cache_size: int = TOPIC_CACHE
    ) -> None:
        self._section = section
        self._allowed = frozenset(section.sensors)
        self._instance = instance  # this process's share: sensors with share_of(id, section.instances) == instance
        self.known: set[str] = set(known)  # admitted sensor ids
        self.topics: dict[str, str] = {}  # topic -> admitted sensor id it names (bounded: cache_size)
        self._cache_size = cache_size

    def sensor_of_message(self, msg: paho.MQTTMessage) -> str | None:
        """:meth:`sensor_of` a received message's topic (paho decodes it on access: not UTF-8 is a PayloadError)."""
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            raise PayloadError("unknown_sensor", _NOT_UTF8) from None
        return self.sensor_of(topic)

    def sensor_of(self, topic: bytes | str) -> str | None:
        """The topic's sensor id, None if another instance's; PayloadError if it cannot be admitted."""
        if isinstance(topic, bytes):
            try:
                topic = topic.decode("utf-8")
            except UnicodeDecodeError:
                raise PayloadError("unknown_sensor", _NOT_UTF8) from None
        sensor = self.topics.get(topic)
        if sensor is not None:  # an admitted sensor's topic: its id was checked before
            return sensor
        sensor = self._check_topic(topic)
        if sensor is not None and sensor in self.known and len(self.topics) < self._cache_size:
            self.topics[topic] = sensor
        return sensor

    def subscriptions(self) -> list[tuple[str, int]]:
        """``(topic filter, qos)`` to subscribe to: the source's topic, or with ``subscribe_own``, ``instances`` > 1,
        an allow-list and a ``+`` at ``sensor_level``, one filter per sensor of this instance's share (an
        empty share: the topic)."""
        section = self._section
        levels = section.topic.split("/")
        level = section.sensor_level
        own = section.subscribe_own and section.instances > 1 and self._allowed
        if not own or not sensor_wildcard(section.topic, level):
            return [(section.topic, section.qos)]
        mine = sorted(s for s in self._allowed if share_of(s, section.instances) == self._instance)
        filters = ["/".join([*levels[:level], sensor, *levels[level + 1 :]]) for sensor in mine]
        return [(f, section.qos) for f in filters] or [(section.topic, section.qos)]

    def admit(self, sensor: str) -> bool:
        """Remember ``sensor`` as admitted; True if it is new."""
        if sensor in self.known:
            return False
        self.known.add(sensor)
        return True

    def _check_topic(self, topic: str) -> str | None:
        levels = topic.split("/")
        level = self._section.sensor_level
        sensor = levels[level] if level < len(levels) else ""
        if not sensor:
            raise PayloadError("unknown_sensor", f"topic has no sensor id at level {level}")
        instances = self._section.instances
        if instances > 1 and share_of(sensor, instances) != self._instance:
            return None  # before the id checks: each message is counted by exactly one instance
        if not sensor_id(sensor):  # a hostile id must not reach topics, metric labels or logs
            raise PayloadError("bad_sensor_id", f"{SENSOR_ID_RULE} (got {len(sensor)} characters)")
        if self._allowed:
            if sensor not in self._allowed:
                raise PayloadError("unknown_sensor", "sensor is not in the source's sensors list")
        elif sensor not in self.known and len(self.known) >= self._section.max_sensors:
            raise PayloadError("too_many_sensors", f"already {len(self.known)} sensors (max_sensors)")
        return sensor
