"""The ``mqtt`` source's section and its check (beside ``mqtt.py``, which imports paho)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from edge_agent.config.rules import SENSOR_ID_RULE, sensor_id, setting
from edge_agent.config.sections import SourceSection
from edge_agent.config.table import (
    SourceContext,
    Table,
    check_rules,
    required,
    show,
    topic_filter,
)
from edge_agent.sources.payloads import FORMATS

BINARY_FORMATS = tuple(f for f in FORMATS if f != "json")
SEQ_COUNTS = ("messages", "samples")  # seq + 1 per message, or seq + the previous message's samples
MAX_INSTANCES = 256  # agent processes sharing one source's sensors (one per core)
RECEIVE = ("thread", "process")  # paho in this process, or in a receive process of its own (sources/mqtt_process.py)
QOS_LEVELS = (0, 1)  # QoS 2 stalled under sustained load (ENVIRONMENT.md)


@dataclass(frozen=True)
class MqttSourceSection(SourceSection):
    """``topic`` (wildcards allowed), ``sensor_level`` (index of the topic level that names the sensor),
    ``format`` json | f32le | i16le; for binary formats ``sample_rate_hz``, ``channels`` and ``scale``
    (sensor units per count) come from here. Sensor ids are bounded by ``sensors`` or ``max_sensors``.
    """

    topic: str = ""
    sensor_level: int = setting(1, ge=0)
    format: str = setting("json", choices=FORMATS)
    qos: int = setting(0, choices=QOS_LEVELS, note=" (QoS 2 stalls under load)")
    sensors: tuple[str, ...] = ()  # accepted sensor ids (empty: any, up to max_sensors)
    max_sensors: int = setting(1000, gt=0)  # new sensor ids past this are refused (metric label bound)
    seq_counts: str = setting("messages", choices=SEQ_COUNTS)  # what a JSON seq counts (README, "Payloads")
    instances: int = setting(1, ge=1, le=MAX_INSTANCES)  # agent instances sharing its sensors (config/instances.py)
    subscribe_own: bool = False  # instances > 1 + sensors: subscribe to this instance's sensors' topics only
    receive: str = setting("thread", choices=RECEIVE)  # "process": read and shed off the inference core
    receive_cpu: int = setting(-1, ge=-1, le=4095)  # receive = "process": the CPU it runs on (-1: the agent's)
    change_threshold: float = setting(0.0, ge=0.0, le=1000.0)  # ingress change detector (sources/change.py); 0: off

    @property
    def known_sensors(self) -> tuple[str, ...]:
        return self.sensors

    @property
    def stream_format(self) -> str:
        return self.format

    @property
    def instance_count(self) -> int:
        return self.instances

    def with_sensors(self, sensors: tuple[str, ...]) -> MqttSourceSection:
        return replace(self, sensors=sensors)


def check_mqtt_source(table: Table, context: SourceContext) -> None:
    check_rules(table, MqttSourceSection, inherited=False)
    if table.ok("sensors"):
        for index, sensor in enumerate(table.values["sensors"]):
            if not sensor_id(sensor):
                table.bad.add("sensors")
                table.errors.append(f"{table.key('sensors')}[{index}]: {show(sensor)} is not allowed; {SENSOR_ID_RULE}")
    if not context.mqtt_enabled:
        table.fail("type", "is not allowed while mqtt.enabled = false", "set mqtt.enabled = true in [mqtt]")
    required(table, "topic", "mqtt sources need a topic filter, e.g. 'plant/+/vibration'")
    table.check("topic", lambda v: "\0" not in v, "a topic must not hold a NUL character", reason="is not allowed")
    rule = "'+' and '#' must fill a whole level, '#' only the last"
    table.check("topic", topic_filter, rule, reason="is not a valid topic filter")
    if table.ok("topic", "sensor_level"):
        topic = table.values["topic"]
        levels = topic.split("/")
        top = len(levels) - 1 - (levels[-1] == "#")
        allowed = f"topic {topic!r} has levels 0 to {top}" if top >= 0 else f"topic {topic!r} names no sensor level"
        table.check("sensor_level", lambda v: v <= top, allowed)
    if table.ok("receive", "receive_cpu") and table.values["receive"] != "process":
        needs = "receive_cpu places a receive process; set receive = 'process' or leave it at -1"
        table.check("receive_cpu", lambda v: v < 0, needs, reason="is not used")
    if table.ok("receive", "format", "change_threshold") and table.values["receive"] == "thread":
        needs = (
            "with receive = 'thread' the change detector decodes every message on the inference core, too dear "
            "for JSON (~50 us, as much as shedding saves); use receive = 'process' or a binary format"
        )
        table.check(
            "change_threshold", lambda v: v == 0 or table.values["format"] != "json", needs, reason="is too dear"
        )
    if table.ok("format") and table.values["format"] in BINARY_FORMATS:
        needs = f"format {table.values['format']!r} needs sample_rate_hz > 0"
        table.check("sample_rate_hz", lambda v: v > 0, needs)
    if table.ok("subscribe_own", "instances", "sensors", "topic", "sensor_level"):
        v = table.values
        plus = sensor_wildcard(v["topic"], v["sensor_level"])
        needs = "subscribe_own needs instances > 1, a sensors list and a '+' at sensor_level of the topic"
        usable = lambda on: not on or (v["instances"] > 1 and bool(v["sensors"]) and plus)  # noqa: E731
        table.check("subscribe_own", usable, needs, reason="cannot apply")


def sensor_wildcard(topic: str, sensor_level: int) -> bool:
    """True if the topic filter has a single-level wildcard ``+`` at the sensor's level."""
    levels = topic.split("/")
    return sensor_level < len(levels) and levels[sensor_level] == "+"


def mqtt_rate_hz(section: MqttSourceSection) -> float | None:
    """The input rate known before start: a binary format's ``sample_rate_hz`` (JSON carries its own)."""
    return section.sample_rate_hz if section.format in BINARY_FORMATS else None
