"""``[sensors."<sensor id>"]``: what a sensor is attached to, for the people who read its alerts.

One table per sensor id, for a sensor of any source (a replay or sound-card ``sensor``, one of an
MQTT source's ``sensors``, or one a wildcard topic will find)::

    [sensors."pump-3-de"]
    machine = "cooling water pump 3"     # the asset
    location = "hall 2, bay 4"           # where it is (Home Assistant's suggested area)
    tags = ["line-2", "critical-asset"]  # free

Alerts, the retained state topic, the log line and the Home Assistant device carry them. A reload
that changes them needs a restart (the Home Assistant device is announced at start).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edge_agent.config.rules import TOPIC_LEVEL_RULE, topic_level
from edge_agent.config.table import Table, read_table, show

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes
MAX_TEXT = 200  # characters of machine, location and each tag (they go into every alert)


@dataclass(frozen=True)
class SensorInfo:
    """A sensor's place in the plant; the id is the ``[sensors]`` table key (empty fields: not given)."""

    id: str = ""
    machine: str = ""
    location: str = ""
    tags: tuple[str, ...] = ()


def read_sensor_info(raw: Any, errors: list[str], sensors: tuple[str, ...] | None) -> tuple[SensorInfo, ...]:
    """``[sensors]`` as SensorInfo entries, every error appended to ``errors`` with its dotted key.

    ``sensors``: the sensor ids the sources name, or None when a source discovers sensors (any id may come).
    """
    if not isinstance(raw, dict):
        errors.append(f'sensors: {show(raw)} has the wrong type; expected tables [sensors."<sensor id>"]')
        return ()
    infos = []
    for sensor, fields_ in raw.items():
        prefix = f"sensors.{sensor}" if _BARE_KEY.fullmatch(sensor) else f'sensors."{sensor}"'
        if not topic_level(sensor):
            errors.append(f"{prefix}: {show(sensor)} is not allowed as a sensor id; {TOPIC_LEVEL_RULE}")
            continue
        if sensors is not None and sensor not in sensors:
            named = ", ".join(sensors) or "none"
            errors.append(f"{prefix}: {show(sensor)} is not a sensor of any source; sensors named: {named}")
            continue
        trimmed = {k: v for k, v in fields_.items() if k != "id"} if isinstance(fields_, dict) else fields_
        if isinstance(fields_, dict) and "id" in fields_:
            errors.append(f"{prefix}.id: unknown key; the sensor id is the table's name")
        table = read_table(SensorInfo, trimmed, prefix, errors, what="a table")
        if table is not None:
            check_sensor_info(table)
            infos.append(SensorInfo(**{**table.values, "id": sensor}))
    return tuple(infos)


def check_sensor_info(table: Table) -> None:
    """Lengths (each value goes into every alert) and no empty tag."""
    for name in ("machine", "location"):
        table.check(name, lambda v: len(v) <= MAX_TEXT, f"at most {MAX_TEXT} characters")
    table.check("tags", lambda v: all(0 < len(t) <= MAX_TEXT for t in v), f"tags of 1 to {MAX_TEXT} characters")
    table.check("tags", lambda v: len(set(v)) == len(v), "each tag once", reason="has a duplicate")
