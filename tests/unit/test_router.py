"""The data path outside App: routing, sensor discovery, each sensor's series once, the sink fan-out's counters."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.config import AgentConfig
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, parse_meta
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.fanout import SinkFanout
from edge_agent.sinks import Sinks
from edge_agent.types import AlertEvent, Chunk, Prediction, Window

WINDOW = 8
EVENT = AlertEvent("new", "a1", "pump-1", "fault", "IR007", 0.9, 1.0, 1.0, 1.1)


def value(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


class CollectingSink:
    name = "collecting"

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []
        self.cleared: list[str] = []
        self.added: list[tuple[str, tuple[str, ...]]] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)

    def clear_state(self, sensor: str) -> None:
        self.cleared.append(sensor)

    def add_sensor(self, sensor: str, models: tuple[str, ...]) -> None:
        self.added.append((sensor, models))


class BrokenSink(CollectingSink):
    name = "broken"

    def send(self, event: AlertEvent) -> None:
        raise RuntimeError("sink bug")

    def clear_state(self, sensor: str) -> None:
        raise RuntimeError("sink bug")


class CountingMetrics(AgentMetrics):
    """Counts the series initialisations (the seam under test is who calls them, and how often)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[str, ...]] = Counter()

    def init_sensor(self, sensor: str) -> None:
        self.calls["sensor", sensor] += 1
        super().init_sensor(sensor)

    def init_sensor_model(self, sensor: str, model: str, labels: tuple[str, ...], normal: tuple[str, ...]) -> None:
        self.calls["model", sensor, model] += 1
        super().init_sensor_model(sensor, model, labels, normal)

    def init_source(self, source: str) -> None:
        self.calls["source", source] += 1
        super().init_source(source)


def loaded(name: str, labels: list[str], *, noise_floor: bool = False) -> LoadedModel:
    document: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "kind": "classifier",
        "labels": labels,
        "sample_rate_hz": 100,
        "window_samples": WINDOW,
        "hop_samples": WINDOW,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
    }
    if noise_floor:
        document["noise_floor"] = {"method": "noise_floor", "with_logits": "forward_with_noise_floor", "units": ["b"]}
    meta = parse_meta(document, source=f"{name}.pt")
    return LoadedModel(path=Path(f"{name}.pt"), module=None, meta=meta, sha256=name[0] * 64)  # type: ignore[arg-type]


MODELS = {"bearing": loaded("bearing", ["Normal", "IR007"]), "second": loaded("second", ["healthy", "loose"])}


def mqtt_source(name: str, sensors: list[str], models: list[str]) -> dict[str, Any]:
    return {"type": "mqtt", "name": name, "topic": f"{name}/+/v", "sensors": sensors, "models": models}


def config() -> AgentConfig:
    return parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}, {"name": "second", "path": "/m/second.pt"}],
            "sources": [
                mqtt_source("vib", ["pump-1", "pump-2"], ["bearing"]),
                mqtt_source("vib2", ["pump-1"], ["bearing", "second"]),
                mqtt_source("any", [], ["bearing", "second"]),
            ],
        },
        base_dir=Path("/"),
    )


T0 = time.time()  # signal times near the agent's clock (a ts far from it is rejected: bad_ts)


def chunk(sensor: str, seq: int, channels: int = 1) -> Chunk:
    return Chunk(sensor, T0 + seq * WINDOW / 100, 100.0, np.zeros((channels, WINDOW), np.float32), seq=seq)


def datapath(metrics: AgentMetrics, sinks: list[Any]) -> tuple[DataPath, AgentConfig]:
    cfg = config()
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure(MODELS, cfg)
    path.fanout.open(Sinks(list(sinks), sensor_aware=list(sinks), state_clearing=list(sinks)))  # test sinks do both
    return path, cfg


def test_each_sink_counts_its_events_and_its_failures_apart() -> None:
    metrics = AgentMetrics()
    broken, collecting = BrokenSink(), CollectingSink()
    fanout = SinkFanout(metrics)
    fanout.open(Sinks(all=[broken, collecting], state_clearing=[broken, collecting]))
    for sink in ("broken", "collecting"):
        assert value(metrics, "edge_agent_sink_events_total", sink=sink) == 0
        assert value(metrics, "edge_agent_sink_errors_total", sink=sink) == 0
    fanout.send([EVENT, EVENT, EVENT])
    assert collecting.events == [EVENT, EVENT, EVENT]
    assert value(metrics, "edge_agent_sink_events_total", sink="broken") == 3
    assert value(metrics, "edge_agent_sink_errors_total", sink="broken") == 3
    assert value(metrics, "edge_agent_sink_events_total", sink="collecting") == 3
    assert value(metrics, "edge_agent_sink_errors_total", sink="collecting") == 0
    fanout.announce("pump-1")  # a failing announcement is a failure of that sink, not an event
    assert value(metrics, "edge_agent_sink_errors_total", sink="broken") == 4
    assert value(metrics, "edge_agent_sink_events_total", sink="broken") == 3
    assert collecting.cleared == ["pump-1"]


def test_one_sensor_in_two_sources_gets_its_series_once_and_a_found_sensor_once() -> None:
    metrics = CountingMetrics()
    sink = CollectingSink()
    path, cfg = datapath(metrics, [sink])
    submitted: list[tuple[str, Window]] = []
    routes = {s.name: path.router(s, lambda model, window: submitted.append((model, window))) for s in cfg.sources}
    assert metrics.calls["sensor", "pump-1"] == 1 and metrics.calls["sensor", "pump-2"] == 1
    assert metrics.calls["model", "pump-1", "bearing"] == 1 and metrics.calls["model", "pump-1", "second"] == 1
    assert all(metrics.calls["source", name] == 1 for name in ("vib", "vib2", "any"))
    assert sink.cleared == ["pump-1", "pump-2"] and sink.added == []  # configured: no alert survives a restart

    routes["any"](chunk("pump-3", 0))  # a wildcard topic finds a sensor
    routes["any"](chunk("pump-3", 1))
    routes["any"](chunk("pump-1", 0))  # known with both models from the other sources: nothing new
    routes["any"](chunk("pump-2", 0))  # known; "second" is new for it
    assert metrics.calls["sensor", "pump-3"] == 1 and metrics.calls["model", "pump-3", "bearing"] == 1
    assert metrics.calls["sensor", "pump-1"] == 1 and metrics.calls["model", "pump-1", "second"] == 1
    assert metrics.calls["model", "pump-2", "second"] == 1
    assert sink.cleared == ["pump-1", "pump-2", "pump-3"]  # once per sensor: an open alert is never cleared
    assert sink.added == [("pump-3", ("bearing", "second")), ("pump-2", ("second",))]
    assert [w.sensor for model, w in submitted if model == "bearing"] == ["pump-3", "pump-3", "pump-1", "pump-2"]
    assert value(metrics, "edge_agent_samples_received_total", sensor="pump-3") == 2 * WINDOW

    routes["vib2"](chunk("pump-1", 1, channels=2))  # wrong channel count: counted once per model, skipped
    assert value(metrics, "edge_agent_payload_errors_total", source="vib2", reason="wrong_channels") == 2


def test_a_configured_sensor_whose_payloads_are_all_rejected_still_has_its_series() -> None:
    metrics = AgentMetrics()
    path, cfg = datapath(metrics, [])
    path.router(cfg.sources[0], lambda model, window: None)  # no chunk of pump-2 ever reaches the router
    for name in ("samples_received", "signal_seconds", "windows", "stream_gaps"):
        assert value(metrics, f"edge_agent_{name}_total", sensor="pump-2") == 0, name
    assert value(metrics, "edge_agent_alert_active", sensor="pump-2", kind="fault") == 0
    assert value(metrics, "edge_agent_predictions_total", sensor="pump-2", model="bearing", label="Normal") == 0
    assert value(metrics, "edge_agent_alerts_total", sensor="pump-2", label="IR007", type="new") == 0
    assert value(metrics, "edge_agent_alerts_total", sensor="pump-2", label="Normal", type="new") is None
    assert value(metrics, "edge_agent_payload_errors_total", source="vib", reason="not_json") == 0


def test_a_reload_with_new_labels_or_normal_labels_creates_the_series_they_need() -> None:
    metrics = CountingMetrics()
    path, cfg = datapath(metrics, [])
    path.router(cfg.sources[0], lambda model, window: None)
    before = metrics.calls["model", "pump-2", "bearing"]
    path.configure(MODELS, cfg)  # nothing changed: nothing made again
    assert metrics.calls["model", "pump-2", "bearing"] == before
    relabelled = {**MODELS, "bearing": loaded("bearing", ["Normal", "IR007", "OR021"])}
    path.retire_labels(MODELS, {"bearing": relabelled["bearing"]})
    path.configure(relabelled, cfg)
    assert value(metrics, "edge_agent_predictions_total", sensor="pump-2", model="bearing", label="OR021") == 0
    normal = parse_config({**_data(), "decision": {"normal_labels": ["IR007"]}}, base_dir=Path("/"))
    path.configure(relabelled, normal)
    assert value(metrics, "edge_agent_alerts_total", sensor="pump-2", label="Normal", type="new") == 0


def _data() -> dict[str, Any]:
    return {
        "mqtt": {"enabled": True, "host": "broker"},
        "models": [{"name": "bearing", "path": "/m/bearing.pt"}, {"name": "second", "path": "/m/second.pt"}],
        "sources": [mqtt_source("vib", ["pump-2"], ["bearing"])],
    }


def test_a_sensor_admitted_before_a_valid_payload_has_its_series_its_silent_alarm_and_is_announced() -> None:
    metrics, sink = CountingMetrics(), CollectingSink()
    path, cfg = datapath(metrics, [sink])
    router = path.router(cfg.sources[2], lambda model, window: None)  # the wildcard source
    for _ in range(5):
        router.rejected("newcomer", "not_json")  # admitted by the source, every payload bad
    assert metrics.calls["sensor", "newcomer"] == 1
    assert ("newcomer", ("bearing", "second")) in sink.added
    assert value(metrics, "edge_agent_last_sample_timestamp_seconds", sensor="newcomer") == 0.0
    assert value(metrics, "edge_agent_sensor_payload_errors_total", sensor="newcomer", reason="not_json") == 5
    assert value(metrics, "edge_agent_stream_problem", sensor="newcomer", reason="all_rejected") == 1


def test_a_chunk_no_model_takes_is_a_rejection_of_its_sensor() -> None:
    metrics = AgentMetrics()
    path, cfg = datapath(metrics, [CollectingSink()])
    router = path.router(cfg.sources[0], lambda model, window: None)
    router(chunk("pump-1", 0, channels=2))
    assert value(metrics, "edge_agent_sensor_payload_errors_total", sensor="pump-1", reason="wrong_channels") == 1
    assert value(metrics, "edge_agent_payload_errors_total", source="vib", reason="wrong_channels") == 1
    router(chunk("pump-1", 1))
    assert value(metrics, "edge_agent_windows_total", sensor="pump-1") == 1


def test_a_stream_problem_is_a_health_alert_so_the_state_topic_shows_it() -> None:
    # Issue 11: data kept arriving, nothing was analysed, and the retained state (Home Assistant)
    # kept showing the sensor healthy. A stream problem now opens a health alert `stream_<reason>`.
    metrics, sink = AgentMetrics(), CollectingSink()
    path, cfg = datapath(metrics, [sink])
    router = path.router(cfg.sources[2], lambda model, window: None)  # the wildcard source
    for _ in range(5):
        router.rejected("newcomer", "not_json")
    path.tick([], now=1_000.0)
    started = [(e.type, e.kind, e.label) for e in sink.events if e.sensor == "newcomer"]
    assert started == [("new", "health", "stream_all_rejected")]
    path.tick([], now=1_001.0)  # still on: no second event
    assert len([e for e in sink.events if e.sensor == "newcomer"]) == 1
    router.supervisor.active.discard(("newcomer", "all_rejected"))  # the problem is over
    path.tick([], now=1_002.0)
    assert [(e.type, e.label) for e in sink.events if e.sensor == "newcomer"][-1] == ("end", "stream_all_rejected")


def test_a_model_with_a_noise_floor_gets_its_series_at_nan_and_the_prediction_sets_it() -> None:
    metrics = AgentMetrics()
    cfg = config()
    floored = loaded("bearing", ["Normal", "IR007"], noise_floor=True)
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure({**MODELS, "bearing": floored}, cfg)
    path.fanout.open(Sinks([], sensor_aware=[], state_clearing=[]))
    path.router(cfg.sources[0], lambda model, window: None)
    start = value(metrics, "edge_agent_noise_floor", sensor="pump-2", model="bearing")
    assert start is not None and math.isnan(start)  # no window yet: not a noiseless 0
    assert value(metrics, "edge_agent_noise_floor", sensor="pump-1", model="second") is None  # has no method
    window = Window("pump-2", 1.0, 2.0, np.zeros((1, WINDOW), np.float32))
    probabilities = {"Normal": 0.9, "IR007": 0.1}
    path.on_prediction(Prediction("pump-2", "bearing", window, probabilities, "Normal", 0.9, noise_floor=1.7))
    assert value(metrics, "edge_agent_noise_floor", sensor="pump-2", model="bearing") == pytest.approx(1.7)
    path.retire_labels({"bearing": floored}, {"bearing": MODELS["bearing"]})  # reloaded without the method
    assert value(metrics, "edge_agent_noise_floor", sensor="pump-2", model="bearing") is None
