"""``mqtt`` source: sensor streams from a broker (JSON or raw little-endian frames, see sources/payloads.py).

The sensor id is topic level ``sensor_level`` (0-based) of each message's topic, e.g. topic filter
``plant/+/vibration`` with ``sensor_level = 1``. Sensor ids are bounded: either the allow-list ``sensors`` or at most
``max_sensors`` distinct ids (they become metric labels); a sensor is admitted with its first message, before its
payload is parsed (so a sensor whose payloads are all rejected has its series, its silent alarm and its stream
supervision). Rejected messages are counted by source and reason, those of an admitted sensor also by sensor, and
logged at most once a minute per (sensor, reason) (per reason for refused sensor ids, which are not bounded). With
``instances = K`` > 1 the sensors of another agent instance (config/instances.py) are discarded from the topic, before
any decoding or admission, and counted in ``edge_agent_messages_foreign_total`` (never as payload errors). The topic
rules: sources/mqtt_topics.py. ``seq_counts = "samples"``: a JSON ``seq`` that advances by the previous message's
sample count is turned into a message count before the windowing (README, "Payloads").

``receive = "thread"`` (default): paho's network thread reads, sheds and parses in this process.
``receive = "process"``: paho, the topic rules and the shed decision run in a receive process of their
own (sources/mqtt_receiver.py, supervised by sources/mqtt_process.py), which forwards the kept
messages in batches; this process's ``source-<name>-receiver`` thread admits, parses and windows them.
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
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import MqttConnection
from edge_agent.sources.change import HOLD_S, SourceChange
from edge_agent.sources.mqtt_config import MqttSourceSection
from edge_agent.sources.mqtt_process import ReceiveProcess
from edge_agent.sources.mqtt_topics import TOPIC_CACHE, TopicSensors
from edge_agent.sources.mqtt_wire import Batch, ReceiverSpec, Report
from edge_agent.sources.payloads import MAX_PAYLOAD_BYTES, PayloadError, parse_payload, window_bytes
from edge_agent.types import Chunk, StreamEvents

logger = logging.getLogger(__name__)

_TOPIC_CACHE = TOPIC_CACHE  # topics remembered with their checked sensor id (more: checked each time)


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
        self._rules = TopicSensors(section, instance, cache_size=_TOPIC_CACHE)
        self._known = self._rules.known  # admitted sensor ids; touched only by the receiving thread
        self._last_sample: dict[str, Any] = {}  # sensor -> its last-sample gauge child (labels() once)
        self._streams = streams  # the router: admissions and rejections (None: only the chunks)
        self._seqs: dict[str, tuple[int, int, int]] = {}  # seq_counts = "samples": sensor -> (seq, n, message)
        self._warn = RateLimitedLog(logger)
        self._emit: Callable[[Chunk], None] | None = None
        self._stopped = False
        self.internal_errors = 0  # exceptions caught in the message callback (emit or a bug)
        self._up = metrics.source_up.labels(self.name)  # this source's and its sensors' series: the router
        self._received = metrics.messages_received.labels(self.name)
        self._foreign = metrics.messages_foreign.labels(self.name)
        self.receiver: ReceiveProcess | None = None
        threshold = section.change_threshold if section.receive == "thread" else 0.0  # "process": in the child
        self._change = SourceChange(section.format, threshold) if threshold > 0 and streams is not None else None
        if section.receive == "process":
            self._connected = metrics.mqtt_connected.labels(f"source-{self.name}")
            self._connected.set(0)
            self._overflow = metrics.overload.receiver_dropped.labels(self.name)
            no_shedding: Callable[[], frozenset[str]] = frozenset
            spans_s = (streams.window_s(), streams.hop_s()) if streams is not None else (0.0, 0.0)
            rate_hz = section.sample_rate_hz or 0.0
            win, hop = (window_bytes(section.format, rate_hz, section.channels, span_s) for span_s in spans_s)
            root, known = logging.getLogger(), self._known  # read when each spec is made (at every restart)
            spec = (section, mqtt, password, agent_id, instance)
            self.receiver = ReceiveProcess(
                self.name,
                lambda: ReceiverSpec(*spec, tuple(known), (), root.level, win, hop),
                deliver=self._deliver_batch,
                on_report=self._on_report,
                on_down=self._receiver_down,
                shed_set=streams.shed_set if streams is not None else no_shedding,
                restarts=metrics.overload.receiver_restarts.labels(self.name),
                suspects=streams.suspects if streams is not None else no_shedding,
                credit=streams.queue_room if streams is not None else lambda: None,
                backoff_s=(mqtt.reconnect_min_s, mqtt.reconnect_max_s),
            )
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

    @property
    def _topics(self) -> dict[str, str]:
        return self._rules.topics

    def start(self, emit: Callable[[Chunk], None]) -> None:
        """Connect in the background (returns at once, broker up or not); ``emit`` runs in paho's thread
        (``receive = "process"``: in the ``source-<name>-receiver`` thread)."""
        if self._conn.opened or self._emit is not None:
            raise RuntimeError(f"source {self.name} already started")
        self._emit = emit
        if self.receiver is not None:
            self.receiver.start()
        else:

            def configure(client: paho.Client) -> None:
                client.on_subscribe = self._on_subscribe
                client.on_message = self._on_message

            self._conn.open(configure)
        logger.info(
            "source %s: subscribing to %s on %s:%s%s",
            self.name,
            self._section.topic,
            self._mqtt.host,
            self._mqtt.port,
            " (in a receive process)" if self.receiver is not None else "",
        )

    def alive(self) -> bool:
        """False if paho's network thread (or the receive process's supervisor) died; outages do not count."""
        return self.receiver.alive() if self.receiver is not None else self._conn.alive()

    def stop(self) -> None:
        """Disconnect and join paho's thread (or the receive process); safe to call twice or before start."""
        if self._stopped:
            return
        self._stopped = True
        if self.receiver is not None:
            self.receiver.stop()
        self._conn.close()
        self._up.set(0)

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, client: paho.Client) -> None:
        # paho does not restore subscriptions after a reconnect: subscribe on every connect.
        result, _mid = client.subscribe(self._rules.subscriptions())
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
        try:
            sensor = self._rules.sensor_of_message(msg)
        except PayloadError as err:
            self._rejected("", err)
            return
        if sensor is None:
            self._foreign.inc()
            return  # another instance's sensor: nothing decoded, nothing admitted
        if self._change is not None and self._streams is not None:  # before the shed decision (~8 us, binary)
            score = self._change.check(sensor, msg.payload, received_at, suspect=self._streams.is_suspect(sensor))
            if score is not None:
                self._streams.mark(sensor, HOLD_S, score)
        self._deliver(sensor, msg.payload, received_at, wall_time)

    def _admit(self, sensor: str) -> None:
        self._known.add(sensor)
        if self._streams is not None:
            self._streams.admit(sensor)

    def _deliver(self, sensor: str, payload: bytes, received_at: float, wall_time: float) -> None:
        """An admissible sensor's message: admit, shed or parse, and emit its chunk."""
        if sensor not in self._known:
            self._admit(sensor)
        if self._streams is not None and self._streams.shed(sensor):
            return  # overload: this sensor holds its share of the full inference queue (counted)
        section = self._section
        try:
            chunk = parse_payload(
                payload,
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

    # --- receive = "process": the source-<name>-receiver thread ---

    def _deliver_batch(self, batch: Batch) -> None:
        if self._streams is not None:  # the change marks first: their sensors' messages are then not shed
            for sensor, score in batch.marks:
                self._streams.mark(sensor, HOLD_S, score)
            for sensor in batch.resumed:  # its next message follows shed ones: the jump is this agent's doing
                self._streams.after_shed(sensor)
        for sensor, payload, received_at, wall_time in batch.messages:
            try:
                self._deliver(sensor, payload, received_at, wall_time)
            except Exception:  # as in _on_message: this one message is lost, counted and logged
                self.internal_errors += 1
                self._warn.warning("internal", "source %s: handling a message failed", self.name, exc_info=True)

    def _on_report(self, report: Report) -> None:
        self._received.inc(report.received)
        self._foreign.inc(report.foreign)
        self._overflow.inc(report.overflow)
        self.internal_errors += report.internal_errors
        for reason, n in report.rejected.items():
            self._metrics.payload_errors.labels(self.name, reason).inc(n)
            detail = report.rejected_detail.get(reason, "")
            self._warn.warning(reason, "source %s: rejected %d message(s): %s (%s)", self.name, n, detail, reason)
        if self._streams is not None:
            for sensor, n in report.shed.items():  # the child admitted them (its topic rules, max_sensors)
                if sensor not in self._known:  # all its messages so far waited for credit and were shed
                    self._admit(sensor)
                self._streams.count_shed(sensor, n)
        self._connected.set(1 if report.connected else 0)
        self._up.set(1 if report.subscribed else 0)
        if report.torch_loaded:
            self._warn.warning("torch", "source %s: the receive process imported torch (a bug)", self.name)

    def _receiver_down(self) -> None:
        self._up.set(0)
        self._connected.set(0)

    def _rejected(self, sensor: str, err: PayloadError) -> None:
        self._metrics.payload_errors.labels(self.name, err.reason).inc()
        admitted = bool(sensor) and sensor in self._known
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
