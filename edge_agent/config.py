"""Typed, frozen configuration of the agent (``config.toml``), one dataclass per section.

The field names are the TOML keys; ``edge_agent.configload`` reads, validates (all errors at
once, each naming the dotted key, the bad value and what is allowed) and builds these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_METRICS_PORT = 10041  # >= 10000 and not a well-known exporter's port


@dataclass(frozen=True)
class AgentSection:
    id: str = "edge-agent"  # used in MQTT topics: <prefix>/<id>/...
    log_level: str = "info"  # debug | info | warning | error
    state_dir: str = ""  # alert outbox; empty: $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/edge-agent/<id>


@dataclass(frozen=True)
class MqttSection:
    """Broker connection shared by MQTT sources and the alert sink."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # default: edge-agent-<agent.id>
    username: str = ""
    password_env: str = ""  # name of an environment variable that holds the password
    password_file: str = ""  # or a file (e.g. a systemd credential) that holds it
    keepalive_s: int = 30
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    topic_prefix: str = "edge-agent"
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    alert_queue_max: int = 10_000  # alerts held while the broker is away (oldest dropped past it)


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = DEFAULT_METRICS_PORT


@dataclass(frozen=True)
class InferenceSection:
    threads: int = 1  # torch.set_num_threads
    max_batch: int = 32
    max_wait_s: float = 0.02  # longest a window waits for a batch to fill
    queue_windows: int = 512  # bounded queue; overflow drops the oldest window


@dataclass(frozen=True)
class ModelSection:
    name: str
    path: str
    hop_samples: int | None = None  # default: the model's meta hop_samples


@dataclass(frozen=True)
class DecisionSection:
    confirm_k: int = 3  # a fault needs k of the last n windows ...
    confirm_n: int = 5
    min_confidence: float = 0.8  # ... each at or above this probability
    hold_off_s: float = 5.0  # no confirmed fault for this long ends the alert
    cooldown_s: float = 30.0  # after an end, no new alert of the same label for this long
    max_duration_s: float = 3600.0  # an alert older than this ends (and may start again)
    update_min_delta: float = 0.1  # an update needs a confidence change of at least this
    normal_labels: tuple[str, ...] = ("Normal", "healthy")


@dataclass(frozen=True)
class SourceSection:
    """One input. ``type`` picks the source: ``mqtt``, ``replay`` or ``soundcard``.

    mqtt: ``topic`` (wildcards allowed), ``sensor_level`` (index of the topic level that names
    the sensor), ``format`` json | f32le | i16le; for binary formats ``sample_rate_hz``,
    ``channels`` and ``scale`` (sensor units per count) come from here.
    replay: ``path`` (WAV, NPY, CSV or the CWRU npz), ``records`` (npz keys in play order),
    ``start_fraction`` (skip the first part of each record), ``speed`` (1.0 real time, 0 as fast
    as possible), ``loop``, ``chunk_samples``.
    soundcard: ``sensor``, ``device`` (a unique part of the device name, or its index as digits;
    empty: the default input), ``sample_rate_hz`` (0: the device's default), ``channels``,
    ``dtype``, ``chunk_samples`` (frames per block), ``latency_s`` (0: PortAudio's safe default),
    ``scale`` (sensor units at full scale), ``silence_floor_dbfs`` / ``silence_after_s`` (the
    ``silent`` health alert; 0 s disables it).
    """

    type: str
    name: str
    models: tuple[str, ...]
    sensor: str = ""  # replay: the sensor id it plays as
    sensors: tuple[str, ...] = ()  # mqtt: accepted sensor ids (empty: any, up to max_sensors)
    max_sensors: int = 1000  # mqtt: new sensor ids past this are refused (metric label bound)
    # mqtt
    topic: str = ""
    sensor_level: int = 1
    format: str = "json"
    qos: int = 0
    # binary payloads, replay of raw files
    sample_rate_hz: float = 0.0
    channels: int = 1
    scale: float = 1.0
    # replay
    path: str = ""
    records: tuple[str, ...] = ()
    start_fraction: float = 0.0
    speed: float = 1.0
    loop: bool = False
    chunk_samples: int = 1024  # replay: samples per step; soundcard: frames per block
    # soundcard
    device: str = ""  # name (a unique part of it) or index as digits; empty: the default input device
    dtype: str = "float32"  # float32 | int16 | int32: the sample format asked of the device
    latency_s: float = 0.0  # suggested input latency; 0: PortAudio's default ("high", robust)
    silence_floor_dbfs: float = -80.0  # a block below this level counts as silence
    silence_after_s: float = 10.0  # silence (or no samples) this long raises a `silent` health alert; 0: off

    @property
    def known_sensors(self) -> tuple[str, ...]:
        """Sensor ids the configuration names: ``sensor`` (replay, soundcard) or ``sensors`` (mqtt; may be empty)."""
        return (self.sensor,) if self.sensor else self.sensors


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
