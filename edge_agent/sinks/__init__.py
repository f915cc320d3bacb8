"""Sinks deliver alert events: ``open()``, ``send(event)`` (never blocks on I/O), ``close()`` (the app
passes no argument; ``log`` and ``mqtt`` take an optional ``timeout_s``).

A sink is one module and one line in :data:`SINKS`: when it is enabled, its factory (which imports
the module, e.g. paho, only then) and the optional capabilities it declares: ``sensor_aware``
(:class:`SensorAware`: told each sensor a source finds, with its models) and ``clears_state``
(:class:`StateClearing`: told each sensor that becomes known, to clear a retained state left from
before a restart). The log sink is always on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from edge_agent.config.sections import AgentConfig
from edge_agent.types import AlertEvent

if TYPE_CHECKING:
    from edge_agent.metrics import AgentMetrics

CLOSE_TIMEOUT_S = 2.0


@runtime_checkable
class Sink(Protocol):
    name: str  # the metric label (log, mqtt, homeassistant)

    def open(self) -> None: ...

    def send(self, event: AlertEvent) -> None: ...

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None: ...

    def alive(self) -> bool: ...


@runtime_checkable
class SensorAware(Sink, Protocol):
    def add_sensor(self, sensor: str, models: tuple[str, ...]) -> None: ...


@runtime_checkable
class StateClearing(Sink, Protocol):
    def clear_state(self, sensor: str) -> None: ...


@dataclass(frozen=True)
class SinkBuild:
    """What a factory gets besides the configuration."""

    metrics: AgentMetrics
    password: str | None
    echo: Callable[[str], None] | None
    anomaly_models: frozenset[str] = frozenset()  # [[models]] names of kind anomaly (Home Assistant entities)


@dataclass(frozen=True)
class SinkType:
    enabled: Callable[[AgentConfig], bool]
    build: Callable[[AgentConfig, SinkBuild], Sink]
    sensor_aware: bool = False
    clears_state: bool = False


@dataclass
class Sinks:
    """The configured sinks (not opened) and the ones with each declared capability."""

    all: list[Sink] = field(default_factory=list)
    sensor_aware: list[SensorAware] = field(default_factory=list)
    state_clearing: list[StateClearing] = field(default_factory=list)


def _build_log(config: AgentConfig, build: SinkBuild) -> Sink:
    from edge_agent.sinks.log import LogAlertSink

    return LogAlertSink(echo=build.echo)


def _build_mqtt(config: AgentConfig, build: SinkBuild) -> Sink:
    from edge_agent.sinks.mqtt_alerts import MqttAlertSink
    from edge_agent.sinks.outbox import OUTBOX_FILE

    outbox = config.agent.state_path() / OUTBOX_FILE
    return MqttAlertSink(
        config.mqtt,
        password=build.password,
        agent_id=config.agent.id,
        metrics=build.metrics,
        outbox_path=outbox,
        sensors=config.sensors,
    )


def _build_homeassistant(config: AgentConfig, build: SinkBuild) -> Sink:
    from edge_agent.sinks.homeassistant import discovery_sink

    return discovery_sink(config, password=build.password, metrics=build.metrics, anomaly_models=build.anomaly_models)


SINKS: dict[str, SinkType] = {
    "log": SinkType(lambda config: True, _build_log),
    "mqtt": SinkType(lambda config: config.mqtt.enabled, _build_mqtt, clears_state=True),
    "homeassistant": SinkType(lambda config: config.homeassistant.enabled, _build_homeassistant, sensor_aware=True),
}


def build_sinks(config: AgentConfig, build: SinkBuild) -> Sinks:
    """Every enabled sink (not opened), sorted into the capabilities their types declare (no probing)."""
    sinks = Sinks()
    for kind in SINKS.values():
        if not kind.enabled(config):
            continue
        sink = kind.build(config, build)
        sinks.all.append(sink)
        if kind.sensor_aware:
            sinks.sensor_aware.append(cast(SensorAware, sink))
        if kind.clears_state:
            sinks.state_clearing.append(cast(StateClearing, sink))
    return sinks
