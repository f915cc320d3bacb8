"""``homeassistant`` sink: Home Assistant MQTT discovery for every sensor (``[homeassistant]``).

Per sensor one Home Assistant *device* with three entities, all read from the sensor's retained
state topic ``<prefix>/<agent_id>/<sensor>/state`` (``{"label", "kind", "confidence", "since",
"alert_id"}``, published by the ``mqtt`` alert sink) through a ``value_template``:

- ``binary_sensor`` ``<sensor>_fault`` (``device_class: problem``): ``ON`` while a fault alert is open;
- ``sensor`` ``<sensor>_label``: the open alert's label (a fault class, or ``silent`` for a health
  alert), ``none`` while no alert is open;
- ``sensor`` ``<sensor>_confidence``: the open alert's confidence in %, unknown while none is open;
- on a sensor that runs an anomaly model, ``binary_sensor`` ``<sensor>_anomaly`` (``device_class:
  problem``): ``ON`` while an anomaly alert is open (whatever else the state shows), and ``sensor``
  ``<sensor>_anomaly_score``: that alert's latest score (the state's ``anomaly.score``), unknown without one.

Every entity has the state document as attributes: the open alert's ``description`` and
``severity``, the sensor's ``machine``, ``location`` and ``tags`` (``[sensors]``). A sensor with a
``machine`` is a device named ``<machine> (<sensor>)``, one with a ``location`` suggests it as the
device's area.

Availability is the agent's status topic: ``online`` is available; ``offline`` (Last Will) and
``stopped`` are not. Discovery configs go to
``<discovery_prefix>/<component>/<agent_id>/<sensor>_<entity>/config``, retained, QoS 1, on every
connect and again whenever Home Assistant announces itself with ``online`` on its birth topic
(after a restart it may have lost them). Sensors known from the configuration are announced at
once; a sensor an MQTT source discovers later (a wildcard topic) is announced when its first
samples arrive, right after the alert sink has published its no-alert state. The sink uses a
client of its own (``<client id>-homeassistant``, no Last Will: availability comes from the alert
sink's status topic); alert events themselves need nothing here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho

import edge_agent
from edge_agent.config import AgentConfig, HomeAssistantSection, MqttSection
from edge_agent.config.sensor_info import SensorInfo
from edge_agent.metrics import AgentMetrics
from edge_agent.mqttclient import PUBLISH_ACCEPTED, MqttConnection
from edge_agent.types import AlertEvent

logger = logging.getLogger(__name__)

_METRIC_CLIENT = "homeassistant"
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")  # node_id and object_id allow only these characters
AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"  # `stopped` is offline too
FAULT_TEMPLATE = "{{ 'ON' if value_json.kind == 'fault' else 'OFF' }}"
LABEL_TEMPLATE = "{{ value_json.label if value_json.label is not none else 'none' }}"
# "None" makes Home Assistant set the sensor to unknown
CONFIDENCE_TEMPLATE = "{{ (value_json.confidence * 100) | round(1) if value_json.confidence is not none else None }}"
ANOMALY_TEMPLATE = "{{ 'ON' if value_json.anomaly is defined else 'OFF' }}"  # the state has it while one is open
ANOMALY_SCORE_TEMPLATE = "{{ value_json.anomaly.score if value_json.anomaly is defined else None }}"


def discovery_id(text: str) -> str:
    """``text`` as a discovery node or object id: characters other than ``[a-zA-Z0-9_-]`` become ``_``,
    and then a short hash of ``text`` keeps ids apart that would otherwise collide (``pump.1``, ``pump_1``)."""
    safe = _ID_UNSAFE.sub("_", text)
    if safe == text:
        return text
    return f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def discovery_messages(
    ha: HomeAssistantSection,
    *,
    topic_prefix: str,
    agent_id: str,
    sensor: str,
    models: tuple[str, ...],
    info: SensorInfo | None = None,
    anomaly: bool = False,
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config document for one sensor's device and its three entities (five when
    ``anomaly``: the sensor runs an anomaly model)."""
    base = f"{topic_prefix}/{agent_id}"
    node = discovery_id(agent_id)
    unique = f"edge-agent_{agent_id}_{sensor}"
    common = {
        "state_topic": f"{base}/{sensor}/state",
        "json_attributes_topic": f"{base}/{sensor}/state",
        "qos": 1,
        "availability": [
            {
                "topic": f"{base}/status",
                "value_template": AVAILABILITY_TEMPLATE,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "device": {
            "identifiers": [unique],
            "name": sensor,
            "manufacturer": "edge-agent",
            "model": f"condition monitoring ({', '.join(models)})" if models else "condition monitoring",
            "sw_version": edge_agent.__version__,
        },
        "origin": {"name": "edge-agent", "sw_version": edge_agent.__version__},
    }
    if info is not None and info.machine:
        common["device"]["name"] = f"{info.machine} ({sensor})"
    if info is not None and info.location:
        common["device"]["suggested_area"] = info.location
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("binary_sensor", "fault"): {"name": "Fault", "device_class": "problem", "value_template": FAULT_TEMPLATE},
        ("sensor", "label"): {"name": "Alert label", "icon": "mdi:tag-outline", "value_template": LABEL_TEMPLATE},
        ("sensor", "confidence"): {
            "name": "Alert confidence",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:gauge",
            "value_template": CONFIDENCE_TEMPLATE,
        },
    }
    if anomaly:
        entities[("binary_sensor", "anomaly")] = {
            "name": "Anomaly",
            "device_class": "problem",
            "value_template": ANOMALY_TEMPLATE,
        }
        entities[("sensor", "anomaly_score")] = {
            "name": "Anomaly score",
            "state_class": "measurement",
            "icon": "mdi:chart-bell-curve",
            "value_template": ANOMALY_SCORE_TEMPLATE,
        }
    messages = {}
    for (component, entity), fields in entities.items():
        object_id = f"{discovery_id(sensor)}_{entity}"
        topic = f"{ha.discovery_prefix}/{component}/{node}/{object_id}/config"
        messages[topic] = {**fields, "unique_id": f"{unique}_{entity}", **common}
    return messages


class HomeAssistantDiscoverySink:
    """Publishes (and republishes) the discovery configs; see the module docstring."""

    name = "homeassistant"

    def __init__(
        self,
        ha: HomeAssistantSection,
        mqtt: MqttSection,
        *,
        password: str | None,
        agent_id: str,
        sensors: Mapping[str, tuple[str, ...]],
        metrics: AgentMetrics,
        places: tuple[SensorInfo, ...] = (),  # [sensors]: machine, location of the devices
        anomaly_models: frozenset[str] = frozenset(),  # model names of kind anomaly: their sensors get two entities
    ) -> None:
        self._anomaly_models = anomaly_models
        self._ha = ha
        self._places = {info.id: info for info in places}
        self._mqtt = mqtt
        self._agent_id = agent_id
        self._sensors: dict[str, tuple[str, ...]] = dict(sensors)  # sensor -> its models
        self._lock = threading.Lock()
        self._conn = MqttConnection(
            mqtt,
            agent_id=agent_id,
            client_suffix=_METRIC_CLIENT,
            password=password,
            metrics=metrics,
            on_connected=self._on_connected,
        )
        self._failures = metrics.mqtt_publish_failures.labels(_METRIC_CLIENT)
        self.announcements = 0  # times the whole set was published (connects and birth messages)

    @property
    def connected(self) -> threading.Event:
        return self._conn.connected

    def alive(self) -> bool:
        return self._conn.alive()

    def open(self) -> None:
        """Connect in the background; the configs go out on every connect."""
        if self._conn.opened:
            raise RuntimeError("Home Assistant sink already opened")

        def configure(client: paho.Client) -> None:
            client.on_message = self._on_message

        self._conn.open(configure)
        logger.info("Home Assistant discovery under %s/ for %d sensors", self._ha.discovery_prefix, len(self._sensors))

    def send(self, event: AlertEvent) -> None:
        """Announce a sensor seen for the first time (an MQTT source's sensor that is not configured)."""
        self.add_sensor(event.sensor, (event.model_name,) if event.model_name else ())

    def add_sensor(self, sensor: str, models: tuple[str, ...]) -> None:
        """Announce ``sensor`` unless it is known (the agent calls this when a source first hears a sensor)."""
        with self._lock:
            if sensor in self._sensors:
                return
            self._sensors[sensor] = models
        self._announce([sensor])

    def close(self, timeout_s: float = 2.0) -> None:
        """Disconnect (nothing is queued: ``timeout_s`` is unused); the configs stay retained (the entities turn
        unavailable through the status topic)."""
        self._conn.close()

    # --- paho callbacks (paho's network thread) ---

    def _on_connected(self, client: paho.Client) -> None:
        client.subscribe(self._ha.birth_topic, qos=1)
        self._announce()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        # A retained `online` arrives on every subscribe: the configs just went out on that connect.
        if message.payload == b"online" and not message.retain:
            logger.info("Home Assistant is online (%s): publishing discovery again", message.topic)
            self._announce()

    def _announce(self, sensors: list[str] | None = None) -> None:
        """Publish the discovery configs of ``sensors`` (default: all), retained, QoS 1."""
        if not self._conn.opened:
            return
        client = self._conn.client
        with self._lock:
            chosen = {s: self._sensors[s] for s in (sensors if sensors is not None else self._sensors)}
        for sensor, models in chosen.items():
            messages = discovery_messages(
                self._ha,
                topic_prefix=self._mqtt.topic_prefix,
                agent_id=self._agent_id,
                sensor=sensor,
                models=models,
                info=self._places.get(sensor),
                anomaly=any(model in self._anomaly_models for model in models),
            )
            for topic, document in messages.items():
                info = client.publish(topic, json.dumps(document, sort_keys=True), qos=1, retain=True)
                if info.rc not in PUBLISH_ACCEPTED:
                    self._failures.inc()
                    logger.warning("Home Assistant discovery: paho refused %s: %s", topic, paho.error_string(info.rc))
        if sensors is None:
            self.announcements += 1


def discovery_sink(
    config: AgentConfig,
    *,
    password: str | None,
    metrics: AgentMetrics,
    anomaly_models: frozenset[str] = frozenset(),
) -> HomeAssistantDiscoverySink:
    """The sink for an agent's configuration: every configured sensor with the models that run on it."""
    sensors: dict[str, tuple[str, ...]] = {}
    for section in config.sources:
        for sensor in section.known_sensors:
            sensors[sensor] = tuple(dict.fromkeys(sensors.get(sensor, ()) + section.models))
    return HomeAssistantDiscoverySink(
        config.homeassistant,
        config.mqtt,
        password=password,
        agent_id=config.agent.id,
        sensors=sensors,
        metrics=metrics,
        places=config.sensors,
        anomaly_models=anomaly_models,
    )
