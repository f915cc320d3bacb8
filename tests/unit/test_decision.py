"""DecisionEngine: k-of-n confirmation, update rules, hold-off, max duration, cooldown, health.

Scenarios are tables of steps on a fake clock; each step lists the events it must produce as
``(type, label, id)``. Ids come from a counter (``a1``, ``a2``, ...), so "stable within an episode,
distinct across episodes" is visible in every table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.config import DecisionSection
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.types import AlertEvent, Prediction, Window

BASE = DecisionSection(
    confirm_k=3,
    confirm_n=5,
    min_confidence=0.8,
    hold_off_s=5.0,
    cooldown_s=30.0,
    max_duration_s=3600.0,
    update_min_delta=0.1,
    normal_labels=("Normal", "healthy"),
)
Expected = list[tuple[str, str, str]]  # (type, label, id)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def prediction(
    label: str, confidence: float = 0.9, *, sensor: str = "s1", model: str = "m", t: float = 0.0
) -> Prediction:
    window = Window(sensor, 1000.0 + t, 1001.0 + t, np.zeros((1, 4), np.float32))
    rest = (1.0 - confidence) / 2
    probabilities = {label: confidence, "other": rest, "Normal": rest}
    return Prediction(sensor, model, window, probabilities, label, confidence)


@dataclass(frozen=True)
class P:
    """At clock ``t``, a prediction ``label`` with ``conf`` for ``sensor``/``model``; then the events."""

    t: float
    label: str
    conf: float = 0.9
    expect: Expected = field(default_factory=list)
    sensor: str = "s1"
    model: str = "m"


@dataclass(frozen=True)
class Tick:
    t: float
    expect: Expected = field(default_factory=list)


@dataclass(frozen=True)
class Health:
    t: float
    label: str
    active: bool
    expect: Expected = field(default_factory=list)
    sensor: str = "s1"


def make_engine(config: DecisionSection, metrics: AgentMetrics | None = None) -> tuple[DecisionEngine, FakeClock]:
    clock = FakeClock()
    ids = (f"a{i}" for i in itertools.count(1))
    return DecisionEngine(config, clock=clock, id_factory=lambda: next(ids), metrics=metrics), clock


def run(config: DecisionSection, steps: list[P | Tick | Health]) -> list[AlertEvent]:
    """Play the steps; check each step's events; return all events."""
    engine, clock = make_engine(config)
    every: list[AlertEvent] = []
    for i, step in enumerate(steps):
        clock.now = step.t
        if isinstance(step, P):
            events = engine.update(prediction(step.label, step.conf, sensor=step.sensor, model=step.model, t=step.t))
        elif isinstance(step, Tick):
            events = engine.tick(step.t)
        else:
            events = engine.health(step.sensor, step.label, step.active, step.t)
        assert [(e.type, e.label, e.id) for e in events] == step.expect, f"step {i}: {step}"
        every += events
    return every


def ps(labels: str, start: float = 0.0, conf: float = 0.9) -> list[P]:
    """One prediction per second from ``start``: ``F`` = fault "IR", ``N`` = "Normal", ``O`` = "OR"."""
    names = {"F": "IR", "N": "Normal", "O": "OR"}
    return [P(start + i, names[c], conf) for i, c in enumerate(labels)]


def expect_at(steps: list[P], index: int, events: Expected) -> list[P]:
    steps = list(steps)
    steps[index] = replace(steps[index], expect=events)
    return steps


CASES: dict[str, tuple[DecisionSection, list[P | Tick | Health]]] = {
    "confirmed exactly at the k-th vote": (BASE, expect_at(ps("FFNF"), 3, [("new", "IR", "a1")])),
    "votes that slid out of the last n do not count": (
        BASE,
        expect_at(ps("FNNNFFF"), 6, [("new", "IR", "a1")]),  # at step 5 only 2 of the last 5 vote
    ),
    "below min_confidence does not vote": (
        BASE,
        [*ps("FFFFF", conf=0.79), *expect_at(ps("FFF", start=5, conf=0.8), 2, [("new", "IR", "a1")])],
    ),
    "normal labels never alert": (BASE, ps("NNNNNNNN", conf=0.99) + [P(8 + i, "healthy", 0.99) for i in range(5)]),
    "flapping gives one alert": (
        BASE,
        expect_at(ps("FNFNFNFNFNFNFNFNFNFN"), 4, [("new", "IR", "a1")]),
    ),
    "update only on a material confidence change": (
        replace(BASE, confirm_k=1, confirm_n=1),
        [
            P(0, "IR", 0.85, [("new", "IR", "a1")]),
            P(1, "IR", 0.90),
            P(2, "IR", 0.94),
            P(3, "IR", 0.95, [("update", "IR", "a1")]),  # exactly update_min_delta
            P(4, "IR", 0.90),
            P(5, "IR", 0.84, [("update", "IR", "a1")]),
        ],
    ),
    "update on a label change, same id": (
        replace(BASE, confirm_k=2, confirm_n=3),
        [
            P(0, "IR"),
            P(1, "IR", expect=[("new", "IR", "a1")]),
            P(2, "OR"),  # IR still confirmed: kept
            P(3, "OR", expect=[("update", "OR", "a1")]),
            P(4, "OR"),
        ],
    ),
    "end after hold-off, found by tick": (
        BASE,
        [
            *expect_at(ps("FFFNN"), 2, [("new", "IR", "a1")]),  # k-of-n still holds at t=3 and t=4
            Tick(8.9),
            Tick(9.0, [("end", "IR", "a1")]),
            Tick(20.0),
        ],
    ),
    "end after hold-off, found by the next prediction": (
        BASE,
        [*expect_at(ps("FFFN"), 2, [("new", "IR", "a1")]), P(9.5, "Normal", expect=[("end", "IR", "a1")])],
    ),
    "max duration ends, a new alert follows the cooldown": (
        replace(BASE, confirm_k=1, confirm_n=1, max_duration_s=10.0, cooldown_s=3.0),
        [
            *expect_at(ps("F" * 10), 0, [("new", "IR", "a1")]),
            P(10, "IR", expect=[("end", "IR", "a1")]),
            P(11, "IR"),
            P(12, "IR"),
            P(13, "IR", expect=[("new", "IR", "a2")]),
        ],
    ),
    "cooldown blocks a re-alert of the same label": (
        BASE,
        [
            *expect_at(ps("FFF"), 2, [("new", "IR", "a1")]),
            Tick(7.0, [("end", "IR", "a1")]),
            *ps("F" * 29, start=8),  # confirmed all along, but within the cooldown (until 37)
            P(37, "IR", expect=[("new", "IR", "a2")]),
        ],
    ),
    "cooldown is per label": (
        BASE,
        [
            *expect_at(ps("FFF"), 2, [("new", "IR", "a1")]),
            Tick(7.0, [("end", "IR", "a1")]),
            *expect_at(ps("OOO", start=8), 2, [("new", "OR", "a2")]),
        ],
    ),
    "stale votes are cleared when predictions stop": (
        BASE,
        [*ps("FF"), *expect_at(ps("FFF", start=100), 2, [("new", "IR", "a1")])],
    ),
    "models on one sensor keep separate histories": (
        replace(BASE, confirm_k=3, confirm_n=3),
        [
            P(0, "IR", model="m1"),
            P(0.5, "Normal", model="m2"),
            P(1, "IR", model="m1"),
            P(1.5, "Normal", model="m2"),
            P(2, "IR", model="m1", expect=[("new", "IR", "a1")]),
        ],
    ),
    "two sensors are independent": (
        BASE,
        [
            P(0, "IR"),
            P(0, "OR", sensor="s2"),
            P(1, "IR"),
            P(1, "OR", sensor="s2"),
            P(2, "IR", expect=[("new", "IR", "a1")]),
            P(2, "Normal", sensor="s2"),  # s2 has 2 of 3: no alert; s1's alert does not count for it
            P(3, "OR", sensor="s2", expect=[("new", "OR", "a2")]),
            *[P(4 + i, "IR") for i in range(4)],  # s1 keeps confirming; s2 is quiet
            P(8, "Normal", sensor="s2", expect=[("end", "OR", "a2")]),  # 5 s after its last confirmation
            P(8, "IR"),
            P(9, "IR"),
            Tick(9.5),
            Tick(14.0, [("end", "IR", "a1")]),
        ],
    ),
    "health alerts: new, end, cooldown, restart by tick, max duration": (
        replace(BASE, max_duration_s=100.0),
        [
            Health(0, "silent", True, [("new", "silent", "a1")]),
            Health(1, "silent", True),
            Health(2, "silent", False, [("end", "silent", "a1")]),
            Health(3, "silent", True),  # cooldown until 32
            Tick(31.9),
            Tick(32.0, [("new", "silent", "a2")]),
            Health(40, "silent", True),
            Tick(132.0, [("end", "silent", "a2")]),
            Tick(162.0, [("new", "silent", "a3")]),
        ],
    ),
    "health and fault alerts live side by side": (
        BASE,
        [
            Health(0, "silent", True, [("new", "silent", "a1")]),
            *expect_at(ps("FFF", start=1), 2, [("new", "IR", "a2")]),
            Health(4, "silent", False, [("end", "silent", "a1")]),
            Tick(8.0, [("end", "IR", "a2")]),
        ],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_scenario(name: str) -> None:
    config, steps = CASES[name]
    run(config, steps)


def test_new_event_fields() -> None:
    engine, clock = make_engine(BASE)
    events = []
    for i, conf in enumerate((0.9, 0.8, 1.0)):
        clock.now = 50.0 + i
        events += engine.update(prediction("IR", conf, t=i), model_sha256="abc")
    (new,) = events
    assert new.type == "new" and new.kind == "fault" and new.sensor == "s1" and new.label == "IR"
    assert new.confidence == pytest.approx(0.9)  # mean of the confirming votes
    assert new.started_at == 52.0  # the decision time (clock)
    assert (new.window_start, new.window_end) == (1002.0, 1003.0)  # the deciding window
    assert new.probabilities == {"IR": 1.0, "other": 0.0, "Normal": 0.0}
    assert (new.model_name, new.model_sha256, new.ended_at) == ("m", "abc", None)
    assert engine.active("s1") == new
    clock.now = 60.0
    (end,) = engine.tick(60.0)
    assert end.type == "end" and end.id == new.id and end.started_at == 52.0
    assert end.ended_at == 57.0  # last confirmation (52) + hold-off (5), whenever the tick runs
    assert engine.active("s1") is None


def test_end_times() -> None:
    events = run(
        replace(BASE, confirm_k=1, confirm_n=1, max_duration_s=10.0),
        [*expect_at(ps("F" * 12), 0, [("new", "IR", "a1")])[:10], P(12, "IR", expect=[("end", "IR", "a1")])],
    )
    assert events[-1].ended_at == 10.0  # started_at + max_duration_s, not the time it was found


def test_default_ids_are_distinct_hex() -> None:
    engine = DecisionEngine(replace(BASE, confirm_k=1, confirm_n=1, cooldown_s=0.0), clock=lambda: 0.0)
    first = engine.update(prediction("IR"))[0]
    engine.tick(100.0)
    second = DecisionEngine(BASE).health("s1", "silent", True, 0.0)[0]
    assert len(first.id) == 32 and int(first.id, 16) >= 0
    assert first.id != second.id


def test_metrics() -> None:
    metrics = AgentMetrics(CollectorRegistry())
    engine, _ = make_engine(replace(BASE, confirm_k=1, confirm_n=1), metrics)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    engine.update(prediction("IR"))
    assert value("edge_agent_alerts_total", sensor="s1", label="IR", type="new") == 1
    assert value("edge_agent_alert_active", sensor="s1", kind="fault") == 1
    engine.health("s1", "silent", True, 1.0)
    assert value("edge_agent_alert_active", sensor="s1", kind="health") == 1
    engine.tick(10.0)
    assert value("edge_agent_alerts_total", sensor="s1", label="IR", type="end") == 1
    assert value("edge_agent_alert_active", sensor="s1", kind="fault") == 0
    assert value("edge_agent_alert_active", sensor="s1", kind="health") == 1
    engine.health("s1", "silent", False, 11.0)
    assert value("edge_agent_alerts_total", sensor="s1", label="silent", type="end") == 1
    assert value("edge_agent_alert_active", sensor="s1", kind="health") == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"confirm_k": 0}, "confirm_k"),
        ({"confirm_k": 6}, "confirm_k"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"hold_off_s": -1.0}, "hold_off_s"),
        ({"cooldown_s": float("nan")}, "cooldown_s"),
        ({"update_min_delta": -0.1}, "update_min_delta"),
        ({"max_duration_s": 0.0}, "max_duration_s"),
    ],
)
def test_bad_config_raises(change: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecisionEngine(replace(BASE, **change))
