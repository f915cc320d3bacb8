"""One place that builds paho-mqtt clients from :class:`MqttSection`: :class:`MqttConnection`.

Every MQTT plugin (the ``mqtt`` source, the ``mqtt`` alert sink, the ``homeassistant`` sink) holds one
:class:`MqttConnection`: its own client id, tracker and gauge, open/close and ``connected``.

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

# what a QoS 1 publish() may return and still be delivered: NO_CONN means queued in paho, sent on reconnect
PUBLISH_ACCEPTED = (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN)


@dataclass(frozen=True)
class LastWill:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = True


def base_client_id(mqtt: MqttSection, agent_id: str) -> str:
    """The configured client id, or ``edge-agent-<agent id>``; each client appends its own suffix."""
    return mqtt.client_id or f"edge-agent-{agent_id}"


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


class MqttConnection:
    """One plugin's paho client and its :class:`ConnectionTracker`: built and started by :meth:`open`.

    The client id is ``<mqtt.client_id or edge-agent-<agent id>>-<client_suffix>``; ``metric_client``
    (default: ``client_suffix``) labels the ``mqtt_connected`` gauge. ``on_connected`` runs in paho's thread after every
    successful CONNACK (subscribe or publish ``online`` there); ``on_disconnected`` after every loss.
    The password is used, never logged. :meth:`close` disconnects cleanly (no Last Will) once; it
    does nothing before :meth:`open` or a second time.
    """

    def __init__(
        self,
        mqtt: MqttSection,
        *,
        agent_id: str,
        client_suffix: str,
        password: str | None,
        metrics: AgentMetrics,
        metric_client: str = "",
        will: LastWill | None = None,
        on_connected: Callable[[paho.Client], None] | None = None,
        on_disconnected: Callable[[], None] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.client_id = f"{base_client_id(mqtt, agent_id)}-{client_suffix}"
        self.metric_client = metric_client or client_suffix
        self._password = password
        self._metrics = metrics
        self._will = will
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._client: paho.Client | None = None
        self._tracker: ConnectionTracker | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """True from :meth:`open` on (also after :meth:`close`)."""
        return self._client is not None

    @property
    def client(self) -> paho.Client:
        """The paho client (publish, subscribe); ``RuntimeError`` before :meth:`open`."""
        if self._client is None:
            raise RuntimeError(f"mqtt client {self.metric_client} not opened")
        return self._client

    @property
    def connected(self) -> threading.Event:
        """Set while connected (for tests and readiness checks); ``RuntimeError`` before :meth:`open`."""
        if self._tracker is None:
            raise RuntimeError(f"mqtt client {self.metric_client} not opened")
        return self._tracker.connected

    def is_connected(self) -> bool:
        """Connected now; False before :meth:`open` and after :meth:`close`."""
        return self._tracker is not None and self._tracker.connected.is_set()

    def alive(self) -> bool:
        """False once paho's network thread has died while open; broker outages do not count."""
        return self._tracker is None or self._tracker.alive()

    def open(self, configure: Callable[[paho.Client], None] | None = None) -> paho.Client:
        """Build the client, let ``configure`` add its own callbacks and limits, connect in the background.

        Returns at once, broker up or not: paho's loop connects and reconnects with the
        ``reconnect_min_s`` .. ``reconnect_max_s`` backoff.
        """
        if self._client is not None:
            raise RuntimeError(f"mqtt client {self.metric_client} already opened")
        client, tracker = self._build()
        if configure is not None:
            configure(client)
        self._client, self._tracker = client, tracker
        mqtt = self.mqtt
        client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
        client.loop_start()
        # paho names its network thread after the client id; kept for liveness checks (watchdog)
        name = f"paho-mqtt-client-{self.client_id}"
        tracker.loop_thread = next((t for t in threading.enumerate() if t.name == name), None)
        return client

    def close(self) -> None:
        """Disconnect cleanly (no Last Will) and join paho's thread; idempotent, a no-op before open."""
        if self._client is None or self._tracker is None or self._closed:
            return
        self._closed = True
        self._tracker.stopped()
        self._client.disconnect()
        self._client.loop_stop()

    def _build(self) -> tuple[paho.Client, ConnectionTracker]:
        mqtt = self.mqtt
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        tracker = ConnectionTracker(self.metric_client, self._metrics, self.client_id)
        if mqtt.username:
            client.username_pw_set(mqtt.username, self._password or None)
        if mqtt.tls:
            client.tls_set(
                ca_certs=mqtt.ca_file or None, certfile=mqtt.cert_file or None, keyfile=mqtt.key_file or None
            )
        if self._will is not None:
            will = self._will
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.reconnect_delay_set(mqtt.reconnect_min_s, mqtt.reconnect_max_s)  # type: ignore[arg-type]
        on_connected, on_disconnected = self._on_connected, self._on_disconnected

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


def _guarded(name: str, what: str, hook: Callable[..., None], *args: Any) -> None:
    # An exception escaping a paho callback kills the network thread (no more reconnects), so a
    # failing hook is logged with its traceback and the connection carries on.
    try:
        hook(*args)
    except Exception:
        logger.exception("mqtt client %s: %s hook failed", name, what)
