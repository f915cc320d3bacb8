"""``[sources.learn]``: learning a healthy baseline on the gateway from the live stream of this source's sensors.

With ``at_start = true`` the sensors named by ``sensors`` (empty: every sensor the source names) start
learning when the agent starts; the other keys are also the defaults of ``edge-agent learn --sensor``
requests for this source's sensors (edge_agent.service.learning). Without the table, learning runs
only by command, with these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.common.learning import (
    DEFAULT_FALSE_RATE,
    DEFAULT_FRONTEND,
    DEFAULT_NETWORK,
    DEFAULT_STEPS,
    FRONTENDS,
    NETWORKS,
)
from edge_agent.config.rules import SENSOR_ID_RULE, sensor_id, setting
from edge_agent.config.table import check_rules, read_table, show


@dataclass(frozen=True)
class LearnSection:
    at_start: bool = False  # learn the sensors below when the agent starts
    sensors: tuple[str, ...] = ()  # which sensors at_start learns (empty: the source's configured sensors)
    duration_s: float = setting(600.0, gt=0, le=86_400)  # live stream recorded per run
    model: str = setting(DEFAULT_NETWORK, choices=NETWORKS)  # autoencoder type
    frontend: str = setting(DEFAULT_FRONTEND, choices=FRONTENDS)  # features inside the model
    false_rate: float = setting(
        DEFAULT_FALSE_RATE, gt=0, lt=0.5
    )  # target false-window rate on held-back healthy windows
    steps: int = setting(DEFAULT_STEPS, gt=0)  # optimiser steps of the trainer
    max_bytes: int = setting(64 * 1024 * 1024, gt=0)  # bound of the raw recording in the state folder
    stall_s: float = setting(10.0, gt=0)  # no window for this long while recording: the run fails


def read_learn(raw: Any, prefix: str, errors: list[str]) -> LearnSection | None:
    """``raw`` (the ``learn`` table of a source) as a section; appends every problem to ``errors``."""
    found = len(errors)
    table = read_table(LearnSection, raw, prefix, errors, what="a table ([sources.learn] or learn = { ... })")
    if table is None:
        return None
    check_rules(table, LearnSection)
    if table.ok("sensors"):
        for index, sensor in enumerate(table.values["sensors"]):
            if not sensor_id(sensor):
                table.bad.add("sensors")
                errors.append(f"{table.key('sensors')}[{index}]: {show(sensor)} is not allowed; {SENSOR_ID_RULE}")
    if table.bad or len(errors) > found:
        return None
    values = dict(table.values)
    values["sensors"] = tuple(values.get("sensors", ()))
    return LearnSection(**values)
