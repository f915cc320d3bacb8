"""Typed, frozen configuration of the agent (``config.toml``), one dataclass per section.

The field names are the TOML keys. Single-field rules (bounds, choices) and whether a reload applies
a key live are declared on the field (:func:`edge_agent.config.rules.setting`); ``edge_agent.configload``
reads, validates (all errors at once, each naming the dotted key, the bad value and what is allowed)
and builds these objects. Each source type's section lives beside its source (``edge_agent.sources``)
and extends :class:`SourceSection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.common.paths import resolve_state_dir
from edge_agent.config.indicators import IndicatorsSection
from edge_agent.config.learn import LearnSection
from edge_agent.config.rules import TOPIC_LEVEL_RULE, setting, topic_level
from edge_agent.config.sensor_info import SensorInfo

DEFAULT_METRICS_PORT = 10041  # >= 10000 and not a well-known exporter's port
PORT = {"ge": 1, "le": 65535, "allowed": "allowed 1 to 65535"}
POSITIVE = {"gt": 0}
NOT_NEGATIVE = {"ge": 0}


@dataclass(frozen=True)
class AgentSection:
    id: str = setting("edge-agent", valid=topic_level, allowed=TOPIC_LEVEL_RULE)  # in MQTT topics: <prefix>/<id>/
    log_level: str = setting("info", live=True, choices=("debug", "info", "warning", "error"))
    state_dir: str = setting(
        ""
    )  # alert outbox; empty: $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/edge-agent/<id>
    heartbeat_s: float = setting(300.0, **NOT_NEGATIVE)  # one INFO line: sensors, windows/s, alerts; 0: off
    instance: int | None = setting(None, ge=0)  # this process's share of sources with instances > 1 (--instance)

    def state_path(self) -> Path:
        """The folder of the agent's state (the alert outbox): see :func:`edge_agent.common.paths.resolve_state_dir`."""
        return resolve_state_dir(self.state_dir, self.id)


@dataclass(frozen=True)
class MqttSection:
    """Broker connection shared by MQTT sources and the alert sink."""

    enabled: bool = False
    host: str = setting("127.0.0.1", valid=bool, allowed="a broker host name or address is required")
    port: int = setting(1883, **PORT)
    client_id: str = ""  # default: edge-agent-<agent.id>
    username: str = ""
    password_env: str = ""  # name of an environment variable that holds the password
    password_file: str = ""  # or a file (e.g. a systemd credential) that holds it
    keepalive_s: int = setting(30, **POSITIVE)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    topic_prefix: str = "edge-agent"
    reconnect_min_s: float = setting(1.0, **POSITIVE)
    reconnect_max_s: float = setting(30.0, **POSITIVE)
    alert_queue_max: int = setting(10_000, **POSITIVE)  # alerts held while the broker is away (oldest dropped)


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = setting(DEFAULT_METRICS_PORT, **PORT)


@dataclass(frozen=True)
class InferenceSection:
    threads: int = setting(1, **POSITIVE)  # torch.set_num_threads
    max_batch: int = setting(32, live=True, **POSITIVE)
    max_wait_s: float = setting(0.02, live=True, **NOT_NEGATIVE)  # longest a window waits for a batch to fill
    queue_windows: int = setting(512, **POSITIVE)  # bounded queue; overflow drops the oldest window


@dataclass(frozen=True)
class ModelSection:
    name: str
    path: str
    hop_samples: int | None = setting(None, **POSITIVE)  # default: the model's meta hop_samples


@dataclass(frozen=True)
class DecisionSection:
    """The alert rules (``edge_agent.pipeline.decision``); every key applies live on reload.

    The engine checks a section with the same declared rules (``rules.section_errors``).
    """

    confirm_k: int = setting(3, live=True, **POSITIVE)  # a fault needs k of the last n windows ...
    confirm_n: int = setting(5, live=True, **POSITIVE)
    min_confidence: float = setting(0.8, live=True, gt=0, le=1)  # ... each at or above this probability
    hold_off_s: float = setting(5.0, live=True, **POSITIVE)  # no confirmed fault for this long ends the alert
    cooldown_s: float = setting(30.0, live=True, **NOT_NEGATIVE)  # after an end, no new alert of the label
    max_duration_s: float = setting(3600.0, live=True, **POSITIVE)  # an alert older than this ends
    update_min_delta: float = setting(0.1, live=True, ge=0, le=1)  # an update needs this confidence change
    normal_labels: tuple[str, ...] = setting(("Normal", "healthy"), live=True)


@dataclass(frozen=True)
class SourceSection:
    """What every ``[[sources]]`` entry has; each source type extends it (see ``edge_agent.sources``).

    ``sample_rate_hz``, ``channels`` and ``scale`` mean what the type's section says.
    """

    type: str
    name: str
    models: tuple[str, ...]
    sample_rate_hz: float = setting(0.0, **NOT_NEGATIVE)
    channels: int = setting(1, **POSITIVE)
    scale: float = setting(1.0, not_value=0)
    indicators: IndicatorsSection | None = None  # [sources.indicators]; None: no vibration indicators
    learn: LearnSection | None = None  # [sources.learn]: learning on the gateway (None: by command, defaults)

    @property
    def known_sensors(self) -> tuple[str, ...]:
        """Sensor ids the configuration names (empty: the source discovers them)."""
        return ()

    @property
    def stream_format(self) -> str:
        """How the samples arrive, for the log (a payload format; default: the source type)."""
        return self.type

    @property
    def instance_count(self) -> int:
        """How many agent instances share its sensors (1: it runs in instance 0 only; config/instances.py)."""
        return 1

    def with_sensors(self, sensors: tuple[str, ...]) -> SourceSection:
        """The section with its named sensors cut to ``sensors`` (a type with an allow-list overrides it)."""
        return self


@dataclass(frozen=True)
class StreamsSection:
    """Stream supervision (``edge_agent.pipeline.supervision``): when a stream is reported as wrong."""

    rate_tolerance: float = setting(0.05, gt=0, le=1)  # |arrival rate / declared rate - 1| above this: rate_mismatch
    rate_interval_s: float = setting(10.0, gt=0)  # the arrival rate is measured over this much time
    clock_offset_max_s: float = setting(60.0, gt=0)  # |ts - the agent's clock| above this: clock_offset


@dataclass(frozen=True)
class HomeAssistantSection:
    """Home Assistant MQTT discovery (needs ``mqtt.enabled``): one device per sensor, see sinks/homeassistant.py."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"  # Home Assistant's discovery prefix (its MQTT integration setting)
    birth_topic: str = "homeassistant/status"  # where Home Assistant says `online`: discovery is sent again


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection = field(default_factory=AgentSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    decision: DecisionSection = field(default_factory=DecisionSection)
    models: tuple[ModelSection, ...] = ()
    sources: tuple[SourceSection, ...] = ()
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    streams: StreamsSection = field(default_factory=StreamsSection)
    sensors: tuple[SensorInfo, ...] = ()  # [sensors."<id>"]: machine, location, tags (config/sensor_info.py)

    def sensor_info(self, sensor: str) -> SensorInfo:
        """``sensor``'s ``[sensors]`` entry, or an empty one."""
        return next((info for info in self.sensors if info.id == sensor), SensorInfo(sensor))
