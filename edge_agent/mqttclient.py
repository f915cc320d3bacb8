"""One place that builds paho-mqtt clients from :class:`MqttSection` (sources and the alert sink).

paho 2.x facts this relies on (see ENVIRONMENT.md): ``connect()`` raises when the broker is down
and never retries, so clients use ``connect_async()`` + ``loop_start()``; the loop then retries
with the ``reconnect_delay_set`` backoff by itself, but does not resubscribe (callers subscribe in
their ``on_connect`` hook). An exception escaping a callback stops paho's network thread, so
hooks run inside a guard here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from edge_agent.config import MqttSection
from edge_agent.metrics import AgentMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastWill:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = True


def base_client_id(mqtt: MqttSection, agent_id: str) -> str:
    """The configured client id, or ``edge-agent-<agent id>``; each client appends its own suffix."""
    return mqtt.client_id or f"edge-agent-{agent_id}"


def opened(tracker: ConnectionTracker | None) -> ConnectionTracker:
    """A sink's tracker once ``open()`` made it; ``RuntimeError`` before (for its ``connected`` property)."""
    if tracker is None:
        raise RuntimeError("sink not opened")
    return tracker


class ConnectionTracker:
    """Connection state of one client: an Event, the ``mqtt_connected`` gauge, one log line per change."""

    def __init__(self, name: str, metrics: AgentMetrics, client_id: str = "") -> None:
        self.name = name
        self.client_id = client_id
        self.loop_thread: threading.Thread | None = None  # paho's network thread, once started
        self.connected = threading.Event()
        self._gauge = metrics.mqtt_connected.labels(name)
        self._gauge.set(0)
        self._state = "starting"
        self._lock = threading.Lock()

    def up(self) -> bool:
        """Mark connected; False (and nothing changes) once stopped."""
        if not self._change("connected", ""):
            return False
        self.connected.set()
        self._gauge.set(1)
        return True

    def down(self, why: str) -> None:
        if self._change("down", why):
            self.connected.clear()
            self._gauge.set(0)

    def alive(self) -> bool:
        """False once paho's network thread has died (it would neither receive nor reconnect)."""
        return self.loop_thread is None or self.loop_thread.is_alive() or self._state == "stopped"

    def stopped(self) -> None:
        """Terminal: the clean disconnect that follows is not reported as an outage."""
        self._change("stopped", "")
        self.connected.clear()
        self._gauge.set(0)

    def _change(self, state: str, why: str) -> bool:
        """Record the new state (logging it if it changed); False once stopped."""
        with self._lock:
            if self._state == "stopped":
                return False
            if state == self._state:
                return True
            self._state = state
        if state == "connected":
            logger.info("mqtt client %s: connected", self.name)
        elif state == "stopped":
            logger.info("mqtt client %s: stopped", self.name)
        else:
            logger.warning("mqtt client %s: not connected (%s); retrying in the background", self.name, why)
        return True


def create_client(
    mqtt: MqttSection,
    *,
    client_id: str,
    password: str | None,
    metrics: AgentMetrics,
    metric_client: str,
    will: LastWill | None = None,
    on_connected: Callable[[paho.Client], None] | None = None,
    on_disconnected: Callable[[], None] | None = None,
) -> tuple[paho.Client, ConnectionTracker]:
    """A configured, not yet started client and its tracker (``metric_client`` labels the gauge).

    ``on_connected`` runs in paho's thread after every successful CONNACK (subscribe or publish
    ``online`` there); ``on_disconnected`` after every loss. The password is used, never logged.
    """
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    tracker = ConnectionTracker(metric_client, metrics, client_id)
    if mqtt.username:
        client.username_pw_set(mqtt.username, password or None)
    if mqtt.tls:
        client.tls_set(ca_certs=mqtt.ca_file or None, certfile=mqtt.cert_file or None, keyfile=mqtt.key_file or None)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.reconnect_delay_set(mqtt.reconnect_min_s, mqtt.reconnect_max_s)  # type: ignore[arg-type]

    def on_connect(c: paho.Client, _u: Any, _flags: Any, reason: paho.ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            tracker.down(f"refused by the broker: {reason}")
            return
        if tracker.up() and on_connected is not None:
            _guarded(tracker.name, "on_connect", on_connected, c)

    def on_disconnect(_c: paho.Client, _u: Any, _flags: Any, reason: paho.ReasonCode, _props: Any) -> None:
        tracker.down(f"disconnected: {reason}")
        if on_disconnected is not None:
            _guarded(tracker.name, "on_disconnect", on_disconnected)

    def on_connect_fail(_c: paho.Client, _u: Any) -> None:
        tracker.down(f"broker {mqtt.host}:{mqtt.port} unreachable")

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    return client, tracker


def start_client(client: paho.Client, mqtt: MqttSection, tracker: ConnectionTracker) -> None:
    """Start connecting in paho's own thread; returns at once, even when the broker is down."""
    client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
    client.loop_start()
    # paho names its network thread after the client id; kept for liveness checks (watchdog)
    name = f"paho-mqtt-client-{tracker.client_id}"
    tracker.loop_thread = next((t for t in threading.enumerate() if t.name == name), None)


def stop_client(client: paho.Client, tracker: ConnectionTracker) -> None:
    """Disconnect cleanly (no Last Will) and join paho's thread."""
    tracker.stopped()
    client.disconnect()
    client.loop_stop()


def _guarded(name: str, what: str, hook: Callable[..., None], *args: Any) -> None:
    # An exception escaping a paho callback kills the network thread (no more reconnects), so a
    # failing hook is logged with its traceback and the connection carries on.
    try:
        hook(*args)
    except Exception:
        logger.exception("mqtt client %s: %s hook failed", name, what)
