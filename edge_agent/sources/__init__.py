"""Sources turn the outside world into :class:`edge_agent.types.Chunk` s.

A source type is one module and one line in :data:`SOURCES`: its frozen section (a
:class:`~edge_agent.config.SourceSection`), the check that validates it, a factory and what it
declares it can do. The factory imports the source's module when a configured source needs it
(paho, sounddevice), so a machine without an optional library can still run the others. Beside them: the MQTT
payload parser (``payloads``), PortAudio's device list (``devices``, also ``edge-agent devices``)
and the audio level and silence detector (``audio_health``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from edge_agent.config.sections import AgentConfig, SourceSection
from edge_agent.config.table import Inspection, SourceContext, Table
from edge_agent.sources.mqtt_config import MqttSourceSection, check_mqtt_source, mqtt_rate_hz
from edge_agent.sources.replay import ReplaySection, check_replay_source, inspect_replay
from edge_agent.sources.soundcard_config import SoundcardSection, check_soundcard_source, soundcard_rate_hz
from edge_agent.types import Chunk, StreamEvents

if TYPE_CHECKING:
    from edge_agent.metrics import AgentMetrics

HealthCondition = tuple[str, str, bool]  # (sensor, label, active)


@runtime_checkable
class Source(Protocol):
    """``start(emit)`` returns at once (``emit`` runs on the source's thread); ``stop()`` is idempotent."""

    name: str

    def start(self, emit: Callable[[Chunk], None]) -> None: ...

    def stop(self) -> None: ...

    def alive(self) -> bool:
        """False once the source's thread died (the watchdog); an absent device or broker does not count."""
        ...


@runtime_checkable
class HealthReporting(Source, Protocol):
    """A source that watches conditions of its own (``reports_health``): polled on every tick."""

    def health(self) -> list[HealthCondition]: ...


@dataclass(frozen=True)
class SourceBuild:
    """What a factory gets besides the section."""

    config: AgentConfig
    metrics: AgentMetrics
    password: str | None
    on_finished: Callable[[], None]
    streams: StreamEvents | None = None  # the source's router: admitted sensors and rejected payloads


@dataclass(frozen=True)
class SourceType:
    """One ``type = "..."`` of ``[[sources]]``.

    ``check(table, context)`` runs after the common field rules; ``inspect(section, key)`` returns the
    start-time problems visible before start (a missing file), the input rate and the shortest recording
    when known (:class:`~edge_agent.config.table.Inspection`). ``finite`` says whether a configured source
    ends by itself, ``live_channels`` whether its ``channels`` must equal its models' channels,
    ``reports_health`` whether it is a :class:`HealthReporting` source, ``loops`` whether ``run --loop``
    applies (``loop = true``), ``real_time`` whether it delivers at the signal's own pace (the stream
    supervision's clock and arrival-rate checks apply).
    """

    section: type[SourceSection]
    check: Callable[[Table, SourceContext], None]
    build: Callable[[Any, SourceBuild], Source]
    inspect: Callable[[Any, str], Inspection]
    finite: Callable[[Any], bool] = lambda section: False
    live_channels: bool = False
    reports_health: bool = False
    loops: bool = False
    real_time: Callable[[Any], bool] = lambda section: True


def _build_replay(section: ReplaySection, build: SourceBuild) -> Source:
    from edge_agent.sources.replay import ReplaySource

    return ReplaySource(section, metrics=build.metrics, on_finished=build.on_finished)


def _build_mqtt(section: MqttSourceSection, build: SourceBuild) -> Source:
    from edge_agent.sources.mqtt import MqttSource

    config = build.config
    return MqttSource(
        section,
        config.mqtt,
        password=build.password,
        agent_id=config.agent.id,
        metrics=build.metrics,
        streams=build.streams,
        instance=config.agent.instance or 0,
    )


def _build_soundcard(section: SoundcardSection, build: SourceBuild) -> Source:
    from edge_agent.sources.soundcard import SoundcardSource

    return SoundcardSource(section, metrics=build.metrics)


def _rate_only(rate_hz: Callable[[Any], float | None]) -> Callable[[Any, str], Inspection]:
    return lambda section, key: Inspection(rate_hz=rate_hz(section))


SOURCES: dict[str, SourceType] = {
    "mqtt": SourceType(MqttSourceSection, check_mqtt_source, _build_mqtt, _rate_only(mqtt_rate_hz), live_channels=True),
    "replay": SourceType(
        ReplaySection,
        check_replay_source,
        _build_replay,
        inspect_replay,
        finite=lambda section: not section.loop,
        loops=True,
        real_time=lambda section: section.speed == 1,
    ),
    "soundcard": SourceType(
        SoundcardSection,
        check_soundcard_source,
        _build_soundcard,
        _rate_only(soundcard_rate_hz),
        live_channels=True,
        reports_health=True,
    ),
}


def build_source(section: SourceSection, build: SourceBuild) -> Source:
    """The source of one validated ``[[sources]]`` section (not started)."""
    return SOURCES[section.type].build(section, build)


def health_reporting(section: SourceSection, source: Source) -> list[HealthReporting]:
    """``[source]`` when its type declares ``reports_health`` (no probing), else ``[]``."""
    return [cast(HealthReporting, source)] if SOURCES[section.type].reports_health else []
