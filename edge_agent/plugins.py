"""The explicit list of sources and sinks (Telegraf's plugin contract): config section -> object.

Each plugin module is imported only when configured, so a machine without PortAudio or paho can
still run the other paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edge_agent.config import AgentConfig, SourceSection
from edge_agent.configload import resolve_state_dir
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel
from edge_agent.sinks.log import LogAlertSink

SOURCE_TYPES = ("replay", "mqtt", "soundcard")


def build_source(
    section: SourceSection,
    config: AgentConfig,
    *,
    metrics: AgentMetrics,
    password: str | None,
    on_finished: Callable[[], None],
) -> object:
    """A source with ``start(emit)`` / ``stop()`` for one ``[[sources]]`` section (not started)."""
    if section.type == "replay":
        from edge_agent.sources.replay import ReplaySource

        return ReplaySource(section, metrics=metrics, on_finished=on_finished)
    if section.type == "mqtt":
        from edge_agent.sources.mqtt import MqttSource

        return MqttSource(section, config.mqtt, password=password, agent_id=config.agent.id, metrics=metrics)
    if section.type == "soundcard":
        from edge_agent.sources.soundcard import SoundcardSource

        return SoundcardSource(section, metrics=metrics)
    raise ValueError(f"sources.{section.name}.type: unknown source type {section.type!r}, allowed: {SOURCE_TYPES}")


def check_channels(config: AgentConfig, models: Mapping[str, LoadedModel]) -> None:
    """A live source's configured channel count must match its models' (``ValueError`` naming both values)."""
    for index, source in enumerate(config.sources):
        for model_name in source.models:
            loaded = models[model_name]
            if source.type in ("mqtt", "soundcard") and source.channels != loaded.channels:
                raise ValueError(
                    f"sources[{index}].channels = {source.channels}, but model {model_name!r} "
                    f"({loaded.path}) takes {loaded.channels} channel(s) (meta.json channels)"
                )


def build_sinks(
    config: AgentConfig,
    *,
    metrics: AgentMetrics,
    password: str | None,
    echo: Callable[[str], None] | None,
) -> list[object]:
    """Every configured sink with ``open()`` / ``send(event)`` / ``close()`` (not opened): the log always."""
    sinks: list[object] = [LogAlertSink(echo=echo)]
    if config.mqtt.enabled:
        from edge_agent.sinks.mqtt_alerts import MqttAlertSink
        from edge_agent.sinks.outbox import OUTBOX_FILE

        outbox = resolve_state_dir(config.agent) / OUTBOX_FILE
        sinks.append(
            MqttAlertSink(config.mqtt, password=password, agent_id=config.agent.id, metrics=metrics, outbox_path=outbox)
        )
    if config.homeassistant.enabled:
        from edge_agent.sinks.homeassistant import discovery_sink

        sinks.append(discovery_sink(config, password=password, metrics=metrics))
    return sinks


def sink_name(sink: object) -> str:
    """A sink's metric label: its ``name`` attribute (log, mqtt, homeassistant), else its class name."""
    return str(getattr(sink, "name", type(sink).__name__))
