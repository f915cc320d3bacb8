"""Several agent processes on one gateway, one per core ("instances"): which sensors each one takes.

An MQTT source with ``instances = K`` is shared by the agent instances 0 to K-1 (``agent.instance`` or
``--instance N``): sensor ``s`` belongs to instance :func:`share_of` ``(s, K)``, a CRC-32 of its UTF-8 id
modulo K (stable across processes, machines and ``PYTHONHASHSEED``, unlike ``hash()``). Every instance
subscribes to the same topics and drops the other instances' messages by their topic, before decoding.
A source with ``instances = 1`` (every sound-card and replay source: a device is opened by one
process, a recording has fixed sensors) runs in instance 0 only.

An instance has names of its own so that two never collide: the agent id ``<agent.id>-<N>`` (topics,
retained state and availability, the default MQTT client id and state folder), ``mqtt.client_id`` (if
set) ``<client_id>-<N>``, an explicit ``agent.state_dir`` gets the subfolder ``instance-<N>``, and
``/metrics`` listens on ``metrics.port + N``. :func:`for_instance` applies all of it to a checked config.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from pathlib import Path

from edge_agent.config.sections import AgentConfig, SourceSection
from edge_agent.config.table import Table

logger = logging.getLogger(__name__)

INSTANCE_KEY = "agent.instance"


def share_of(sensor: str, instances: int) -> int:
    """The instance (0 to ``instances`` - 1) that processes ``sensor``: CRC-32 of its UTF-8 bytes mod ``instances``."""
    return zlib.crc32(sensor.encode("utf-8")) % instances


def source_instances(table: Table) -> int:
    """A checked source table's ``instances`` (1 for the source types without the key)."""
    value = table.values.get("instances", 1)
    return value if isinstance(value, int) and table.ok("instances") else 1


def instance_errors(agent: Table | None, sources: list[Table], metrics: Table | None = None) -> list[str]:
    """``agent.instance`` against the sources' ``instances``: given when a source is shared, and in range;
    ``metrics.port`` + the instance a port."""
    if agent is None or not agent.ok("instance"):
        return []
    instance = agent.values["instance"]
    if (
        instance is not None
        and metrics is not None
        and metrics.ok("port")
        and metrics.values["port"] + instance > 65535
    ):
        port = metrics.values["port"]
        return [
            f"{INSTANCE_KEY}: {instance} is out of range; instance N serves /metrics on metrics.port + N, and "
            f"metrics.port = {port} allows 0 to {65535 - port}"
        ]
    counts = [(table, source_instances(table)) for table in sources]
    shared = [(table, count) for table, count in counts if count > 1]
    if instance is None:
        return [
            f"{table.key('instances')}: {count} needs the instance index of this process; "
            f"set {INSTANCE_KEY} or run with --instance N (0 to {count - 1})"
            for table, count in shared
        ]
    most = max((count for _table, count in counts), default=1)
    if instance < most:
        return []
    widest = next((table.key("instances") for table, count in shared if count == most), "every source's instances")
    return [
        f"{INSTANCE_KEY}: {instance} is out of range; {widest} = {most} allows 0 to {most - 1} "
        "(an instance at or past every source's instances has nothing to process)"
    ]


def for_instance(config: AgentConfig) -> AgentConfig:
    """This instance's view of a checked config (unchanged when ``agent.instance`` is unset): see the module."""
    instance = config.agent.instance
    if instance is None:
        return config
    agent = config.agent
    state_dir = str(Path(agent.state_dir) / f"instance-{instance}") if agent.state_dir else ""
    mqtt = config.mqtt
    client_id = f"{mqtt.client_id}-{instance}" if mqtt.client_id else ""
    sources = tuple(s for s in (_own_part(source, instance) for source in config.sources) if s is not None)
    return dataclasses.replace(
        config,
        agent=dataclasses.replace(agent, id=f"{agent.id}-{instance}", state_dir=state_dir),
        mqtt=dataclasses.replace(mqtt, client_id=client_id),
        metrics=dataclasses.replace(config.metrics, port=config.metrics.port + instance),
        sources=sources,
    )


def _own_part(source: SourceSection, instance: int) -> SourceSection | None:
    """``source`` as this instance runs it (its allow-list cut to its own sensors), or None if it has no share."""
    if instance >= source.instance_count:
        return None
    named = source.known_sensors
    if source.instance_count == 1 or not named:
        return source
    own = tuple(sensor for sensor in named if share_of(sensor, source.instance_count) == instance)
    if not own:
        logger.info("source %s: no sensor of its list is instance %d's", source.name, instance)
        return None
    return source.with_sensors(own)
