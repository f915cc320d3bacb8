"""``mqtt`` alert sink: the agent's MQTT contract (see README and docs/alert.schema.json).

Topics under ``<prefix>/<agent_id>``: ``<sensor>/alert`` (every lifecycle event, QoS 1, not retained);
``<sensor>/state`` (retained, QoS 1, ``alert_schema.sensor_state``: the open alert, a fault before a
health alert, or null but ``since``; empty withdraws a sensor that left the configuration); ``status``
(retained ``online`` on connect, ``stopped`` on :meth:`close`, ``offline`` as the Last Will). A clean
stop keeps open alerts (``pipeline/episode_store.py``): before ``stopped`` their states get ``stopped_at``.

Every event :meth:`send` accepts is delivered at least once, in order, across ``kill -9`` or power
loss (de-duplicate on ``id`` + ``type``): it is in the durable outbox (``outbox.py``) when send returns,
and leaves it on the PUBACK or by a bound (counted by reason); earlier runs' events go out first. A
pump thread hands events to paho while connected, at most ``inflight_max`` unacknowledged; what was in
flight when the link dropped paho re-sends, new alerts waiting until it is acknowledged (order kept).
``state`` and ``status`` stay in memory, latest only, retained; every start publishes them again.
:meth:`close` drains the outbox (bounded), then ``stopped``; what is undelivered stays stored (in
memory: dropped, ``shutdown``). Client id ``...-alerts``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from edge_agent.common.ratelimit import RateLimitedLog
from edge_agent.config import MqttSection
from edge_agent.config.rules import sensor_id
from edge_agent.config.sensor_info import SensorInfo
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import PUBLISH_ACCEPTED, LastWill, MqttConnection
from edge_agent.sinks.alert_schema import OpenAlerts, alert_payload, encode
from edge_agent.sinks.outbox import Outbox, open_outbox
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)

_METRIC_CLIENT = "alerts"
MAINTAIN_EVERY_S = 10.0  # the idle pump lets the outbox drop events past its age bound this often


@dataclass(frozen=True)
class _Out:
    topic: str
    payload: bytes
    retain: bool
    kind: str  # "alert" | "state" | "status"
    sensor: str = ""
    seq: int = 0  # alerts: the outbox row


class MqttAlertSink:
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
        self._states: dict[str, _Out] = {}  # latest state per sensor not yet handed to paho
        self._inflight: dict[int, _Out] = {}  # mid -> message paho holds until the broker's PUBACK
        self._early_acks: set[int] = set()  # PUBACKs that arrived before publish() returned the mid
        self._in_hand: _Out | None = None  # taken from the outbox, publish() not yet returned
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

        self._pump_thread = threading.Thread(target=self._pump, name="mqtt-alerts-pump", daemon=True)
        self._pump_thread.start()  # it waits until the client is connected
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
            self._states[event.sensor] = _Out(f"{base}/state", state, True, "state", event.sensor)
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
            self._states[sensor] = _Out(f"{self._prefix}/{sensor}/state", payload, True, "state", sensor)
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
            self._publish(_Out(self.status_topic, b"stopped", True, "status"))
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

    # --- pump thread ---

    def _pump(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stop_pump or self._can_publish() or self._outbox.unflushed(), timeout=MAINTAIN_EVERY_S
                )
                if self._stop_pump:
                    return
                out = self._next_out() if self._can_publish() else None
                self._in_hand = out
            # Disk and paho outside our lock: paho calls on_publish while holding its own message
            # lock, and on_publish takes ours (lock-order inversion -> deadlock; a slow fsync).
            self._outbox.flush()  # deletes of acknowledged rows; the age bound
            if out is None:
                continue
            if not self._publish(out):
                with self._cond:  # paho refused it (queue full): put it back, retry after the next ack
                    if out.kind == "alert":
                        self._outbox.untake(out.seq)
                    else:
                        self._states.setdefault(out.sensor, out)
                    self._cond.wait(timeout=0.5)

    def _can_publish(self) -> bool:
        return (
            self._conn.is_connected()
            and not self._resending
            and len(self._inflight) < self._inflight_max
            and bool(self._outbox.untaken() or self._states)
        )

    def _next_out(self) -> _Out:
        row = self._outbox.take()
        if row is None:
            return self._states.pop(next(iter(self._states)))
        return _Out(row.topic, row.payload, False, "alert", seq=row.seq)

    def _publish(self, out: _Out) -> bool:
        """Hand one message to paho and track its mid; False if paho refused it."""
        info = self._conn.client.publish(out.topic, out.payload, qos=1, retain=out.retain)
        with self._cond:
            self._in_hand = None
            if info.rc not in PUBLISH_ACCEPTED:
                self._failures.inc()
                self._warn.warning("refused", "alert sink: paho refused a publish: %s", paho.error_string(info.rc))
                return False
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                self._acknowledged(out)
            else:
                self._inflight[info.mid] = out
            return True

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, _client: paho.Client) -> None:
        with self._cond:
            # paho re-sends the messages still in flight only after this callback returns; new
            # alerts wait until those are acknowledged, or they would overtake them.
            self._resending = bool(self._inflight) or self._in_hand is not None
        self._publish(_Out(self.status_topic, b"online", True, "status"))
        self._wake()

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: paho.ReasonCode, _p: Any) -> None:
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

    def _acknowledged(self, out: _Out) -> None:
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
