"""``mqtt`` alert sink: the agent's MQTT contract (see README and docs/alert.schema.json).

Topics under ``<prefix>/<agent_id>``:

- ``<sensor>/alert``: every lifecycle event, QoS 1, not retained (``alert_payload``).
- ``<sensor>/state``: retained, QoS 1, the sensor's current alert (``sensor_state``): ``{"label", "kind",
  "confidence", "since", "alert_id", "description", "severity"}``, null but ``since`` (when the last alert
  ended) with no open alert (not a "normal" label: the sink does not know each model's healthy class,
  and "normal" could be a real one); and the sensor's ``machine``, ``location``, ``tags`` (``[sensors]``).
  When a sensor has a fault and a health alert open at once, the fault is shown. An empty retained
  state withdraws a sensor that left the configuration. A clean stop keeps open alerts
  (``pipeline/episode_store.py``): before ``stopped`` their states get ``stopped_at``.
- ``status``: retained ``online`` on every connect, ``stopped`` on :meth:`close`, ``offline`` as the
  Last Will (the broker publishes it when the agent dies or its link drops).

Guarantee: every event :meth:`send` accepts is delivered at least once, in order, across a
``kill -9`` or power loss; consumers de-duplicate on ``id`` + ``type`` + ``window.start``. :meth:`send` returns once
the event is in the durable outbox (``outbox.py``: SQLite in ``agent.state_dir``); it leaves it on
the broker's PUBACK or by a bound (``mqtt.alert_queue_max`` events, bytes, age; counted by reason).
Events of an earlier run go out first. Without an outbox file, or with one that cannot be used
(logged; ``edge_agent_alert_outbox_durable`` 0), the outbox is in memory and alerting goes on.
A pump thread (``alert_pump.py``; no exception ends it, and the supervisor restarts it should it
die) hands events to paho only while connected, at most ``inflight_max`` unacknowledged.
Messages in flight when the link drops stay in paho, which re-sends them after the reconnect; new
alerts wait until those are acknowledged, so order is kept. ``state`` and ``status`` stay in
memory, latest only: each supersedes the one before, the broker retains it, and every start
publishes the states again (``clear_state``), so a restart loses nothing a consumer needs.

:meth:`close` waits (bounded) for the outbox to drain, publishes ``stopped`` (after every alert) and
disconnects; what is undelivered stays stored for the next start (in memory: dropped, ``shutdown``).
The client id is ``<mqtt.client_id or edge-agent-<agent_id>>-alerts``: a client of its own, so
its Last Will and its in-flight window are separate from the sources' high-volume subscriptions.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import MqttSection
from edge_agent.config.rules import sensor_id
from edge_agent.config.sensor_info import SensorInfo
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import LastWill, MqttConnection
from edge_agent.sinks.alert_pump import AlertPump, Out
from edge_agent.sinks.alert_schema import OpenAlerts, alert_payload, encode
from edge_agent.sinks.outbox import Outbox, open_outbox
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)

_METRIC_CLIENT = "alerts"


class MqttAlertSink(AlertPump):
    """Publishes alert events, per-sensor state and the agent's status; see the module docstring."""

    name = "mqtt"

    def __init__(
        self,
        mqtt: MqttSection,
        *,
        password: str | None,
        agent_id: str,
        metrics: AgentMetrics,
        inflight_max: int = 32,
        outbox_path: Path | None = None,
        sensors: tuple[SensorInfo, ...] = (),  # [sensors]: machine, location, tags in every state
    ) -> None:
        self._mqtt = mqtt
        self._agent_id = agent_id
        self._metrics = metrics
        self._prefix = f"{mqtt.topic_prefix}/{agent_id}"
        self.status_topic = f"{self._prefix}/status"
        self._conn = MqttConnection(
            mqtt,
            agent_id=agent_id,
            client_suffix=_METRIC_CLIENT,
            password=password,
            metrics=metrics,
            will=LastWill(self.status_topic, "offline", qos=1, retain=True),
            on_connected=self._on_connected,
            on_disconnected=self._wake,
        )
        self._outbox_path, self._inflight_max = outbox_path, inflight_max
        self._cond = threading.Condition()
        self._outbox = Outbox(None, metrics=metrics, max_count=mqtt.alert_queue_max)  # open() loads the real one
        self._states: dict[str, Out] = {}  # latest state per sensor not yet handed to paho
        self._inflight: dict[int, Out] = {}  # mid -> message paho holds until the broker's PUBACK
        self._early_acks: set[int] = set()  # PUBACKs that arrived before publish() returned the mid
        self._in_hand: Out | None = None  # taken from the outbox, publish() not yet returned
        self._resending = False  # after a reconnect, until what was in flight is acknowledged
        self._open = OpenAlerts({info.id: info for info in sensors})  # what each sensor's state topic shows
        self._closing = self._stop_pump = False
        self._pump_thread: threading.Thread | None = None
        self._warn, self._failures = RateLimitedLog(logger), metrics.mqtt_publish_failures.labels(_METRIC_CLIENT)
        metrics.alerts_queued.set(0)

    @property
    def connected(self) -> threading.Event:
        """Set while the sink's client is connected (for tests and readiness checks)."""
        return self._conn.connected

    def alive(self) -> bool:
        """False if the pump or paho's network thread died while open (for a watchdog)."""
        if not self._conn.opened or self._closing:
            return True
        return self._pump_thread is not None and self._pump_thread.is_alive() and self._conn.alive()

    def open(self) -> None:
        """Start the pump and connect in the background; returns at once, broker up or not."""
        if self._conn.opened:
            raise RuntimeError("alert sink already opened")
        self._outbox = open_outbox(self._outbox_path, metrics=self._metrics, max_count=self._mqtt.alert_queue_max)
        self._update_gauge()

        def configure(client: paho.Client) -> None:
            client.on_publish = self._on_publish
            # Our pump keeps <= inflight_max (+ status messages) in paho; the limits are a safety net.
            client.max_inflight_messages_set(self._inflight_max + 4)
            client.max_queued_messages_set(self._inflight_max + 16)

        self._start_pump()  # it waits until the client is connected
        self._conn.open(configure)
        logger.info("alert sink: publishing under %s/ on %s:%s", self._prefix, self._mqtt.host, self._mqtt.port)

    def send(self, event: AlertEvent) -> None:
        """Queue one event (never blocks on the network); its alert and the sensor's state follow."""
        if not sensor_id(event.sensor):
            self._reject(event, "not a sensor id the agent can publish under")
            return
        try:
            alert = encode(alert_payload(event, self._agent_id))
        except ValueError as err:
            self._reject(event, str(err))
            return
        base = f"{self._prefix}/{event.sensor}"
        with self._cond:
            if self._closing:
                self._metrics.alerts_dropped.labels("closed").inc()
                self._warn.warning("closed", "alert sink: event %s %s after close, dropped", event.type, event.id)
                return
            state = encode(self._open.state_after(event))
            self._outbox.append(f"{base}/alert", alert, event_type=event.type, alert_id=event.id)
            self._states[event.sensor] = Out(f"{base}/state", state, True, "state", event.sensor)
            self._update_gauge()
            self._cond.notify_all()

    def clear_state(self, sensor: str) -> None:
        """Publish a retained no-alert state (e.g. at start, over a state a previous run left behind)."""
        if not sensor_id(sensor):
            raise ValueError(f"sensor id {sensor!r} cannot be an MQTT topic level")
        self._state(sensor, encode(self._open.cleared(sensor, time.time())))

    def restore(self, open_alerts: list[AlertEvent]) -> None:
        """The alerts still open from before a restart: the states published at start show them."""
        with self._cond:
            self._open.restore(open_alerts)

    def forget_state(self, sensor: str) -> None:
        """Withdraw a sensor's retained state (an empty retained message): it left the configuration."""
        self._state(sensor, b"")

    def _state(self, sensor: str, payload: bytes) -> None:
        with self._cond:
            self._states[sensor] = Out(f"{self._prefix}/{sensor}/state", payload, True, "state", sensor)
            self._cond.notify_all()

    def close(self, timeout_s: float = 2.0) -> None:
        """Deliver what is queued (bounded by ``timeout_s``), publish ``stopped``, disconnect cleanly."""
        if not self._conn.opened or self._closing:
            return
        deadline = time.monotonic() + timeout_s
        with self._cond:
            for sensor, doc in self._open.stopped(time.time()).items():
                self._state(sensor, encode(doc))  # the condition's lock is reentrant
            self._closing = True
            self._cond.wait_for(self._all_delivered, timeout=max(0.0, deadline - time.monotonic()))
        if self._conn.is_connected():
            self._publish(Out(self.status_topic, b"stopped", True, "status"))
            with self._cond:
                self._cond.wait_for(lambda: not self._inflight, timeout=max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stop_pump = True
            self._cond.notify_all()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=2.0)
        self._conn.close()
        lost = len(self._outbox)  # in flight or never sent: not acknowledged
        if lost and self._outbox.durable:
            logger.warning("alert sink: %d alerts undelivered, kept in %s for the next start", lost, self._outbox.path)
        elif lost:
            self._metrics.alerts_dropped.labels("shutdown").inc(lost)
            logger.warning("alert sink: closing with %d alerts undelivered after %.1f s (lost)", lost, timeout_s)
        self._outbox.close()
        self._metrics.alerts_queued.set(0)

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, _client: paho.Client) -> None:
        with self._cond:
            # paho re-sends the messages still in flight only after this callback returns; new
            # alerts wait until those are acknowledged, or they would overtake them.
            self._resending = bool(self._inflight) or self._in_hand is not None
        self._publish(Out(self.status_topic, b"online", True, "status"))
        self._wake()

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: paho.ReasonCode, _p: Any) -> None:
        try:  # an exception escaping here would end paho's network thread
            self._on_ack(mid, reason)
        except Exception:
            self._thread_error("handling a PUBACK failed")

    def _on_ack(self, mid: int, reason: paho.ReasonCode) -> None:
        with self._cond:
            out = self._inflight.pop(mid, None)
            if out is None:
                self._early_acks.add(mid)
                return
            if reason.is_failure:  # MQTT 5 brokers may refuse a publish in the PUBACK
                self._failures.inc()
                self._warn.warning("puback", "alert sink: broker refused a %s message: %s", out.kind, reason)
            self._acknowledged(out)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # --- helpers (caller holds self._cond) ---

    def _acknowledged(self, out: Out) -> None:
        if out.kind == "alert":
            self._outbox.ack(out.seq)
            self._metrics.alerts_delivered.inc()
        if not self._inflight:
            self._resending = False
        self._update_gauge()
        self._cond.notify_all()

    def _all_delivered(self) -> bool:
        return not (self._outbox.untaken() or self._states or self._inflight or self._in_hand)

    def _update_gauge(self) -> None:
        self._metrics.alerts_queued.set(len(self._outbox))  # stored: waiting, in hand or in flight

    def _reject(self, event: AlertEvent, why: str) -> None:
        self._failures.inc()
        self._warn.warning("invalid", "alert sink: cannot publish event %s %s: %s", event.type, event.id, why)
