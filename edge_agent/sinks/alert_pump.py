"""The MQTT alert sink's pump thread (edge_agent.sinks.mqtt_alerts): outbox and states -> paho.

The pump hands one message at a time to paho while connected, at most ``inflight_max``
unacknowledged. No exception ends it: whatever one message raises (a topic paho refuses, a
payload it cannot send, a bug) is counted in ``edge_agent_sink_thread_errors_total{sink="mqtt"}``,
logged rate-limited with its traceback, and costs that message only (an alert is dropped from the
outbox, counted as ``unpublishable``; a state is forgotten); an error of the outbox itself (the
disk) drops nothing and is retried. Should the thread die anyway, :meth:`AlertPump.restart`
starts a new one (the supervisor calls it: the sink type declares ``restartable``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as paho

from edge_agent.mqttclient import PUBLISH_ACCEPTED

if TYPE_CHECKING:
    from edge_agent.common.ratelimit import RateLimitedLog
    from edge_agent.metrics import AgentMetrics
    from edge_agent.mqttclient import MqttConnection
    from edge_agent.sinks.outbox import Outbox

logger = logging.getLogger(__name__)

MAINTAIN_EVERY_S = 10.0  # the idle pump lets the outbox drop events past its age bound this often
ERROR_PAUSE_S = 0.5  # after an error of the outbox itself, before the next try


@dataclass(frozen=True)
class Out:
    topic: str
    payload: bytes
    retain: bool
    kind: str  # "alert" | "state" | "status"
    sensor: str = ""
    seq: int = 0  # alerts: the outbox row


class AlertPump:
    """The pump half of :class:`~edge_agent.sinks.mqtt_alerts.MqttAlertSink` (its state lives there)."""

    name: str
    _cond: threading.Condition
    _conn: MqttConnection
    _outbox: Outbox
    _states: dict[str, Out]
    _inflight: dict[int, Out]
    _early_acks: set[int]
    _in_hand: Out | None
    _resending: bool
    _closing: bool
    _stop_pump: bool
    _inflight_max: int
    _pump_thread: threading.Thread | None
    _metrics: AgentMetrics
    _warn: RateLimitedLog
    _failures: object

    def _start_pump(self) -> None:
        self._pump_thread = threading.Thread(target=self._pump, name="mqtt-alerts-pump", daemon=True)
        self._pump_thread.start()

    def restart(self) -> bool:
        """Start the pump again if it died while open; True if it did (the supervisor counts it)."""
        thread = self._pump_thread
        if not self._conn.opened or self._closing or thread is None or thread.is_alive():
            return False
        with self._cond:
            if self._in_hand is not None:  # taken when the thread died: send it again
                if self._in_hand.kind == "alert":
                    self._outbox.untake(self._in_hand.seq)
                self._in_hand = None
        logger.error("alert sink: the pump thread died; starting it again")
        self._start_pump()
        return True

    def _pump(self) -> None:
        while True:
            try:
                if not self._pump_once():
                    return
            except Exception:  # e.g. the outbox's disk: nothing dropped, tried again
                self._thread_error("the alert outbox failed")
                with self._cond:
                    self._cond.wait(timeout=ERROR_PAUSE_S)

    def _pump_once(self) -> bool:
        """One turn: False once the pump is told to stop."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._stop_pump or self._can_publish() or self._outbox.unflushed(), timeout=MAINTAIN_EVERY_S
            )
            if self._stop_pump:
                return False
            out = self._next_out() if self._can_publish() else None
            self._in_hand = out
        # Disk and paho outside our lock: paho calls on_publish while holding its own message
        # lock, and on_publish takes ours (lock-order inversion -> deadlock; a slow fsync).
        self._outbox.flush()  # deletes of acknowledged rows; the age bound
        if out is None:
            return True
        try:
            published = self._publish(out)
        except Exception:  # this one message cannot be sent (e.g. a topic too long): dropped, counted
            self._thread_error(f"cannot publish a {out.kind} message, dropped")
            with self._cond:
                self._in_hand = None
                if out.kind == "alert":
                    self._outbox.ack(out.seq)
                    self._metrics.alerts_dropped.labels("unpublishable").inc()
                self._cond.notify_all()
            return True
        if not published:
            with self._cond:  # paho refused it (queue full): put it back, retry after the next ack
                if out.kind == "alert":
                    self._outbox.untake(out.seq)
                else:
                    self._states.setdefault(out.sensor, out)
                self._cond.wait(timeout=0.5)
        return True

    def _thread_error(self, what: str) -> None:
        self._metrics.overload.sink_thread_errors.labels(self.name).inc()
        self._warn.warning(f"pump:{what}", "alert sink: %s", what, exc_info=True)

    def _can_publish(self) -> bool:
        return (
            self._conn.is_connected()
            and not self._resending
            and len(self._inflight) < self._inflight_max
            and bool(self._outbox.untaken() or self._states)
        )

    def _next_out(self) -> Out:
        row = self._outbox.take()
        if row is None:
            return self._states.pop(next(iter(self._states)))
        return Out(row.topic, row.payload, False, "alert", seq=row.seq)

    def _publish(self, out: Out) -> bool:
        """Hand one message to paho and track its mid; False if paho refused it."""
        info = self._conn.client.publish(out.topic, out.payload, qos=1, retain=out.retain)
        with self._cond:
            self._in_hand = None
            if info.rc not in PUBLISH_ACCEPTED:
                self._failures.inc()  # type: ignore[attr-defined]
                self._warn.warning("refused", "alert sink: paho refused a publish: %s", paho.error_string(info.rc))
                return False
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                self._acknowledged(out)
            else:
                self._inflight[info.mid] = out
            return True

    def _acknowledged(self, out: Out) -> None:
        raise NotImplementedError  # the sink's
