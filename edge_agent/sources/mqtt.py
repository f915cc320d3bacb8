"""``mqtt`` source: sensor streams from a broker (JSON or raw little-endian frames, see sources/payloads.py).

The sensor id is topic level ``sensor_level`` (0-based) of each message's topic, e.g. topic filter
``plant/+/vibration`` with ``sensor_level = 1``. Sensor ids are bounded: either the allow-list
``sensors`` or at most ``max_sensors`` distinct ids (they become metric labels); a sensor is
admitted with its first message, before its payload is parsed (so a sensor whose payloads are all
rejected has its series, its silent alarm and its stream supervision). Rejected messages are
counted by source and reason, those of an admitted sensor also by sensor, and logged at most once
a minute per (sensor, reason) (per reason for refused sensor ids, which are not bounded).
With ``instances = K`` > 1 the sensors of another agent instance (config/instances.py) are
discarded from the topic, before any decoding or admission, and counted in
``edge_agent_messages_foreign_total`` (never as payload errors).
``seq_counts = "samples"``: a JSON ``seq`` that advances by the previous message's sample count
is turned into a message count before the windowing (README, "Payloads").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as paho

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import MqttSection
from edge_agent.config.instances import share_of
from edge_agent.config.rules import SENSOR_ID_RULE, sensor_id
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import MqttConnection
from edge_agent.sources.mqtt_config import MqttSourceSection
from edge_agent.sources.payloads import MAX_PAYLOAD_BYTES, PayloadError, parse_payload
from edge_agent.types import Chunk, StreamEvents

logger = logging.getLogger(__name__)

_TOPIC_CACHE = 4096  # topics remembered with their checked sensor id (more: checked each time)


class MqttSource:
    """Subscribes to ``section.topic`` and emits a :class:`Chunk` per valid message (the section is validated)."""

    def __init__(
        self,
        section: MqttSourceSection,
        mqtt: MqttSection,
        *,
        password: str | None,
        agent_id: str,
        metrics: AgentMetrics,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        streams: StreamEvents | None = None,
        instance: int = 0,
    ) -> None:
        self.name = section.name
        self._section = section
        self._mqtt = mqtt
        self._metrics = metrics
        self._max_bytes = max_payload_bytes
        self._allowed = frozenset(section.sensors)
        self._instance = instance  # this process's share: sensors with share_of(id, section.instances) == instance
        self._known: set[str] = set()  # admitted sensor ids; touched only by paho's thread
        self._last_sample: dict[str, Any] = {}  # sensor -> its last-sample gauge child (labels() once)
        self._topics: dict[str, str] = {}  # topic -> admitted sensor id it names (bounded: _TOPIC_CACHE)
        self._streams = streams  # the router: admissions and rejections (None: only the chunks)
        self._seqs: dict[str, tuple[int, int, int]] = {}  # seq_counts = "samples": sensor -> (seq, n, message)
        self._warn = RateLimitedLog(logger)
        self._emit: Callable[[Chunk], None] | None = None
        self._stopped = False
        self.internal_errors = 0  # exceptions caught in the message callback (emit or a bug)
        self._up = metrics.source_up.labels(self.name)  # this source's and its sensors' series: the router
        self._received = metrics.messages_received.labels(self.name)
        self._foreign = metrics.messages_foreign.labels(self.name)
        self._conn = MqttConnection(
            mqtt,
            agent_id=agent_id,
            client_suffix=f"src-{section.name}",
            password=password,
            metrics=metrics,
            metric_client=f"source-{section.name}",
            on_connected=self._on_connected,
            on_disconnected=lambda: self._up.set(0),
        )

    def start(self, emit: Callable[[Chunk], None]) -> None:
        """Connect in the background (returns at once, broker up or not); ``emit`` runs in paho's thread."""
        if self._conn.opened:
            raise RuntimeError(f"source {self.name} already started")
        self._emit = emit

        def configure(client: paho.Client) -> None:
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message

        self._conn.open(configure)
        logger.info(
            "source %s: subscribing to %s on %s:%s", self.name, self._section.topic, self._mqtt.host, self._mqtt.port
        )

    def alive(self) -> bool:
        """False if paho's network thread died (the app's watchdog); broker outages do not count."""
        return self._conn.alive()

    def stop(self) -> None:
        """Disconnect and join paho's thread; safe to call twice or before start."""
        if self._stopped:
            return
        self._stopped = True
        self._conn.close()
        self._up.set(0)

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, client: paho.Client) -> None:
        # paho does not restore subscriptions after a reconnect: subscribe on every connect.
        result, _mid = client.subscribe(self._section.topic, qos=self._section.qos)
        if result != paho.MQTT_ERR_SUCCESS:
            logger.error(
                "source %s: subscribe to %s failed: %s", self.name, self._section.topic, paho.error_string(result)
            )

    def _on_subscribe(self, _c: paho.Client, _u: Any, _mid: int, reasons: list[paho.ReasonCode], _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            self._up.set(0)
            logger.error(
                "source %s: broker refused the subscription to %s: %s",
                self.name,
                self._section.topic,
                ", ".join(str(r) for r in reasons),
            )
            return
        self._up.set(1)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception:
            # An exception escaping this callback would end paho's network thread and with it the
            # source (no more messages, no reconnects). Whatever failed (emit downstream, or a bug)
            # costs this one message: count it and log with traceback, rate-limited.
            self.internal_errors += 1
            self._warn.warning("internal", "source %s: handling a message failed", self.name, exc_info=True)

    def _handle(self, msg: paho.MQTTMessage) -> None:
        received_at = time.monotonic()
        wall_time = time.time()
        self._received.inc()
        sensor = ""
        try:
            sensor = self._sensor_of(msg)
            if sensor is None:
                self._foreign.inc()
                return  # another instance's sensor: nothing decoded, nothing admitted
            if sensor not in self._known:
                self._known.add(sensor)
                if self._streams is not None:
                    self._streams.admit(sensor)
            if self._streams is not None and self._streams.shed(sensor):
                return  # overload: this sensor holds its share of the full inference queue (counted)
            section = self._section
            chunk = parse_payload(
                msg.payload,
                fmt=section.format,
                sensor=sensor,
                expected_rate_hz=section.sample_rate_hz,
                channels=section.channels,
                scale=section.scale,
                received_at=received_at,
                wall_time=wall_time,
                max_bytes=self._max_bytes,
            )
        except PayloadError as err:
            self._rejected(sensor, err)
            return
        gauge = self._last_sample.get(sensor)
        if gauge is None:  # bounded like the admitted sensors: every valid chunk's sensor is one of them
            gauge = self._last_sample[sensor] = self._metrics.last_sample.labels(sensor)
        gauge.set(wall_time)
        if section.seq_counts == "samples" and chunk.seq is not None:
            chunk = replace(chunk, seq=self._message_seq(sensor, chunk.seq, chunk.n_samples))
        if self._emit is not None:  # always set: start() assigns it before the client starts
            self._emit(chunk)

    def _rejected(self, sensor: str, err: PayloadError) -> None:
        self._metrics.payload_errors.labels(self.name, err.reason).inc()
        admitted = sensor in self._known
        if admitted and self._streams is not None:
            self._streams.rejected(sensor, err.reason)
        self._warn.warning(
            (sensor, err.reason) if admitted else err.reason,
            "source %s: rejected a message for sensor %r: %s (%s)",
            self.name,
            sensor[:64],
            err,
            err.reason,
        )

    def _message_seq(self, sensor: str, seq: int, n: int) -> int:
        """A message count from a seq that counts samples: +1 if it follows the last message, +2 (a gap) if not."""
        last = self._seqs.get(sensor)
        message = 0 if last is None else last[2] + (1 if seq == last[0] + last[1] else 2)
        self._seqs[sensor] = (seq, n, message)
        return message

    def _sensor_of(self, msg: paho.MQTTMessage) -> str | None:
        """The topic's sensor id, None if another instance's; PayloadError if it cannot be admitted."""
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            raise PayloadError("unknown_sensor", "topic is not valid UTF-8") from None
        sensor = self._topics.get(topic)
        if sensor is not None:  # an admitted sensor's topic: its id was checked before
            return sensor
        sensor = self._check_topic(topic)
        if sensor in self._known and len(self._topics) < _TOPIC_CACHE:
            self._topics[topic] = sensor
        return sensor

    def _check_topic(self, topic: str) -> str:
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
        elif sensor not in self._known and len(self._known) >= self._section.max_sensors:
            raise PayloadError("too_many_sensors", f"already {len(self._known)} sensors (max_sensors)")
        return sensor
