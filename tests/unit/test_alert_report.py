"""Alerts a maintenance planner can act on (issue 11 item 3), without a broker.

Label descriptions and severities from the model meta, the sensor's machine, location and tags in
every output (alert payload, state document, log line, Home Assistant device), an ``end`` with its own
closing evidence, and the series that name the fault label in Prometheus. The payloads come from the
real decision engine and data path and are validated against docs/alert.schema.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from edge_agent.config import AgentConfig, HomeAssistantSection
from edge_agent.configload import ConfigError, parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, parse_meta, read_meta
from edge_agent.modelmeta import LabelInfo
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.service.reload import plan_reload
from edge_agent.sinks.alert_schema import alert_payload, encode, load_schema, sensor_state
from edge_agent.sinks.homeassistant import discovery_messages
from edge_agent.sinks.log import LogAlertSink
from edge_agent.types import AlertEvent, Prediction, Window

REPO = Path(__file__).resolve().parents[2]
T0 = 1_795_860_000.0  # 2026-11-28T10:00:00Z
LABELS = ["Normal", "IR007", "IR021"]
LABEL_INFO = {
    "Normal": {"description": "no bearing fault (normal baseline)", "severity": "none"},
    "IR007": {"description": "inner-race fault, 0.18 mm (0.007 in)", "severity": "warning"},
}
PUMP = {"machine": "cooling water pump 3", "location": "hall 2, bay 4", "tags": ["line-2", "critical-asset"]}


def document(**extra: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "name": "bearing",
        "kind": "classifier",
        "labels": LABELS,
        "sample_rate_hz": 12000,
        "window_samples": 8,
        "hop_samples": 8,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
        **extra,
    }


def loaded(**extra: Any) -> LoadedModel:
    meta = parse_meta(document(**extra), source="bearing.pt")
    return LoadedModel(path=Path("bearing.pt"), module=None, meta=meta, sha256="b" * 64)  # type: ignore[arg-type]


def config(sensors: dict[str, Any] | None = None, **decision: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "mqtt": {"enabled": True, "host": "broker"},
        "decision": {"confirm_k": 2, "confirm_n": 3, "hold_off_s": 5.0, "update_min_delta": 0.05, **decision},
        "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
        "sources": [
            {"type": "mqtt", "name": "vib", "topic": "plant/+/v", "sensors": ["pump-3"], "models": ["bearing"]}
        ],
    }
    if sensors is not None:
        data["sensors"] = sensors
    return parse_config(data, base_dir=Path("/"))


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


class Collecting:
    name = "collecting"

    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    def open(self) -> None: ...

    def close(self, timeout_s: float = 2.0) -> None: ...

    def alive(self) -> bool:
        return True

    def send(self, event: AlertEvent) -> None:
        self.events.append(event)


def predict(label: str, p: float, t: float, sensor: str = "pump-3") -> Prediction:
    rest = (1.0 - p) / (len(LABELS) - 1)
    probabilities = {name: (p if name == label else rest) for name in LABELS}
    window = Window(sensor, T0 + t, T0 + t + 0.17, np.zeros((1, 8), np.float32))
    return Prediction(sensor, "bearing", window, probabilities, label, p)


def run_episode(cfg: AgentConfig, model: LoadedModel) -> tuple[list[AlertEvent], list[str], AgentMetrics]:
    """Real engine and data path: IR007 confirmed, stronger, then normal windows until the hold-off ends it."""
    metrics, clock, collected, lines = AgentMetrics(), Clock(), Collecting(), []
    path = DataPath(metrics, DecisionEngine(cfg.decision, clock=clock, metrics=metrics))
    path.configure({"bearing": model}, cfg)
    path.sensors.add("pump-3", ["bearing"])  # what the router does for a configured sensor
    path.fanout.open([collected, LogAlertSink(echo=lines.append)])
    steps = [("IR007", 0.85), ("IR007", 0.87), ("IR007", 0.99), ("IR007", 0.99), ("Normal", 0.97), ("Normal", 0.98)]
    for index, (label, p) in enumerate(steps):
        clock.now = T0 + index
        path.on_prediction(predict(label, p, index))
        if index == 2:
            assert (
                metrics.registry.get_sample_value(
                    "edge_agent_fault_active", {"sensor": "pump-3", "model": "bearing", "label": "IR007"}
                )
                == 1
            )
    path.tick((), T0 + 20)  # the hold-off ran out
    return collected.events, lines, metrics


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


# --- label descriptions from the meta ---


def test_meta_label_info_is_typed_and_a_label_without_it_reads_as_itself() -> None:
    meta = parse_meta(document(label_info=LABEL_INFO), source="m.pt")
    assert meta.describe("IR007") == LabelInfo("inner-race fault, 0.18 mm (0.007 in)", "warning")
    assert meta.describe("IR021") == LabelInfo("IR021", None)  # not described: the label, no severity
    assert parse_meta(document(), source="m.pt").describe("IR007") == LabelInfo("IR007")


@pytest.mark.parametrize(
    ("label_info", "message"),
    [
        ([1], r"key 'label_info' must be an object"),
        ({"XX": {"description": "x"}}, r"key 'label_info.XX' is not one of the labels"),
        ({"IR007": {"severity": "warning"}}, r"'label_info.IR007' must be an object with a non-empty 'description'"),
        ({"IR007": {"description": "x", "severity": "urgent"}}, r"'label_info.IR007.severity' is 'urgent'; supported"),
    ],
)
def test_bad_label_info_names_the_key(label_info: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_meta(document(label_info=label_info), source="m.pt")


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("drsn_cw_cwru.pt", 10),
        ("drsn_cw_cwru_float.pt", 10),
        ("drsn_cw_bldc_audio.pt", 3),
        ("drsn_cw_bldc_audio_float.pt", 3),
    ],
)
def test_every_shipped_model_describes_every_label(name: str, labels: int) -> None:
    meta = read_meta(REPO / "models" / name)
    assert set(meta.label_info) == set(meta.labels) and len(meta.labels) == labels
    assert all(info.severity is not None for info in meta.label_info.values())
    if "cwru" in name:
        assert meta.describe("IR007") == LabelInfo("inner-race fault, 0.18 mm (0.007 in)", "warning")
        assert meta.describe("OR021@6") == LabelInfo("outer-race fault at 6 o'clock, 0.53 mm (0.021 in)", "critical")
        assert meta.describe("Normal").severity == "none"
    else:
        assert meta.describe("propeller").description.startswith("propeller fault")


def test_the_shipped_hashes_in_the_model_card_are_the_files() -> None:
    import hashlib

    card = (REPO / "models" / "README.md").read_text()
    for path in sorted((REPO / "models").glob("*.pt")):
        assert f"`{path.name}` | `{hashlib.sha256(path.read_bytes()).hexdigest()}`" in card, path.name


# --- the whole episode through the real engine, data path and sinks ---


def test_new_update_end_validate_and_carry_description_severity_and_the_sensor_place(validator) -> None:
    events, lines, _ = run_episode(config({"pump-3": PUMP}), loaded(label_info=LABEL_INFO))
    assert [e.type for e in events] == ["new", "update", "end"]
    docs = [json.loads(encode(alert_payload(e, "gw-1"))) for e in events]
    for doc in docs:
        validator.validate(doc)
        assert doc["schema"] == 2
        assert (doc["label"], doc["description"], doc["severity"]) == (
            "IR007",
            "inner-race fault, 0.18 mm (0.007 in)",
            "warning",
        )
        assert (doc["machine"], doc["location"], doc["tags"]) == (PUMP["machine"], PUMP["location"], PUMP["tags"])
    for line in lines:  # the log line (console echo) names them too
        assert "inner-race fault, 0.18 mm (0.007 in) [warning]" in line
        assert "machine 'cooling water pump 3' at 'hall 2, bay 4' tags line-2,critical-asset" in line
    state = sensor_state(events[0], T0, config({"pump-3": PUMP}).sensor_info("pump-3"))
    assert {k: state[k] for k in ("label", "description", "severity", "machine", "location", "tags")} == {
        "label": "IR007",
        "description": "inner-race fault, 0.18 mm (0.007 in)",
        "severity": "warning",
        **PUMP,
    }
    cleared = sensor_state(None, T0, config({"pump-3": PUMP}).sensor_info("pump-3"))  # no alert open
    assert (cleared["label"], cleared["description"], cleared["machine"], cleared["tags"]) == (
        None,
        None,
        PUMP["machine"],
        PUMP["tags"],
    )


def test_the_end_reports_its_own_closing_evidence(validator) -> None:
    """Fails on the old engine, whose end was a copy of the last update (window, probabilities, confidence)."""
    events, lines, _ = run_episode(config(), loaded(label_info=LABEL_INFO))
    new, update, end = (json.loads(encode(alert_payload(e, "gw-1"))) for e in events)
    validator.validate(end)
    closing = predict("Normal", 0.98, 5)  # the last window the model saw before the hold-off ended the episode
    assert (events[2].window_start, events[2].window_end) == (closing.window.t_start, closing.window.t_end)
    assert end["window"] != update["window"]
    assert end["probabilities"] == pytest.approx(closing.probabilities, abs=1e-6)
    assert end["confidence"] == pytest.approx(closing.probabilities["IR007"], abs=1e-6)  # what is left of the fault
    # the highest k-of-n confidence of the episode: (0.87 + 0.99 + 0.99) / 3 when the update was published
    assert end["peak_confidence"] == pytest.approx(0.95, abs=1e-6) == update["confidence"]
    assert end["duration_s"] == pytest.approx(8.0)  # opened at T0 + 1; confirmed last at T0 + 4, plus the 5 s hold-off
    assert (new["duration_s"], update["duration_s"]) == (None, None)
    assert lines[-1].startswith("END") and "; peak 0.95 over 8.0 s" in lines[-1]


def test_confidence_is_the_confirmation_mean_and_the_window_probability_is_apart() -> None:
    events, _, _ = run_episode(config(), loaded())
    new = events[0]
    assert new.probabilities["IR007"] == pytest.approx(0.87)  # the deciding window
    assert new.confidence == pytest.approx((0.85 + 0.87) / 2)  # the mean of the confirming votes (schema: confidence)
    description = load_schema()["properties"]["confidence"]["description"]
    assert "differs from probabilities[label]" in description


def test_a_model_without_label_info_keeps_working_with_the_label_as_description(validator) -> None:
    events, lines, _ = run_episode(config(), loaded())
    doc = alert_payload(events[0], "gw-1")
    validator.validate(json.loads(encode(doc)))
    assert (doc["description"], doc["severity"], doc["machine"], doc["tags"]) == ("IR007", "critical", None, [])
    assert "fault pump-3: IR007 (0.86) [critical] id=" in lines[0]


def test_every_schema_field_has_a_description() -> None:
    schema = load_schema()

    def undocumented(node: dict[str, Any], path: str) -> list[str]:
        missing = []
        for name, sub in node.get("properties", {}).items():
            if "description" not in sub:
                missing.append(f"{path}{name}")
            missing += undocumented(sub, f"{path}{name}.")
        return missing

    assert undocumented(schema, "") == []
    # every key is on every alert, but the anomaly object: only on (and required by) kind anomaly, so that
    # fault and health payloads, and those stored before it existed, stay valid and unchanged (schema 2)
    assert set(schema["required"]) == set(schema["properties"]) - {"anomaly"}
    assert schema["allOf"] == [
        {
            "if": {"properties": {"kind": {"const": "anomaly"}}, "required": ["kind"]},
            "then": {"required": ["anomaly"]},
            "else": {"not": {"required": ["anomaly"]}},
        }
    ]


# --- Prometheus: the series that name the fault label ---


def test_the_fault_series_name_the_label_and_stay_within_the_meta_labels() -> None:
    _, _, metrics = run_episode(config(), loaded(label_info=LABEL_INFO))
    get = metrics.registry.get_sample_value
    active = {"sensor": "pump-3", "model": "bearing"}
    assert get("edge_agent_fault_active", {**active, "label": "IR007"}) == 0  # ended
    assert get("edge_agent_fault_active", {**active, "label": "IR021"}) == 0  # created at zero with the sensor
    assert get("edge_agent_fault_active", {**active, "label": "Normal"}) is None  # normal labels never alert
    info = {"model": "bearing", "label": "IR007", "description": "inner-race fault, 0.18 mm (0.007 in)"}
    assert get("edge_agent_label_info", {**info, "severity": "warning"}) == 1
    assert (
        get(
            "edge_agent_label_info",
            {"model": "bearing", "label": "IR021", "description": "IR021", "severity": "critical"},
        )
        == 1
    )
    labels = {
        s.labels["label"] for f in metrics.registry.collect() for s in f.samples if s.name == "edge_agent_fault_active"
    }
    assert labels == {"IR007", "IR021"}


# --- Home Assistant device ---


def test_home_assistant_device_is_named_by_its_machine_and_placed_in_its_location() -> None:
    ha = HomeAssistantSection(enabled=True)
    info = config({"pump-3": PUMP}).sensor_info("pump-3")
    messages = discovery_messages(
        ha, topic_prefix="edge-agent", agent_id="gw-1", sensor="pump-3", models=("bearing",), info=info
    )
    for doc in messages.values():
        assert doc["device"]["name"] == "cooling water pump 3 (pump-3)"
        assert doc["device"]["suggested_area"] == "hall 2, bay 4"
        assert (
            doc["json_attributes_topic"] == "edge-agent/gw-1/pump-3/state"
        )  # description, severity, tags as attributes
    plain = discovery_messages(ha, topic_prefix="edge-agent", agent_id="gw-1", sensor="pump-3", models=("bearing",))
    assert all(doc["device"]["name"] == "pump-3" and "suggested_area" not in doc["device"] for doc in plain.values())


# --- the [sensors] section ---


def test_sensor_section_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        config({"pump-9": {"machine": "x"}, "pump-3": {"machine": 3, "tags": ["a", "a"], "area": "x"}})
    errors = info.value.errors
    assert "sensors.pump-9: 'pump-9' is not a sensor of any source; sensors named: pump-3" in errors
    assert "sensors.pump-3.machine: 3 has the wrong type; expected a string" in errors
    assert "sensors.pump-3.tags: ['a', 'a'] has a duplicate; each tag once" in errors
    assert any(e.startswith("sensors.pump-3.area: unknown key") for e in errors)


def test_a_wildcard_source_lets_any_sensor_id_carry_a_place() -> None:
    cfg = parse_config(
        {
            "mqtt": {"enabled": True},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [{"type": "mqtt", "name": "vib", "topic": "plant/+/v", "models": ["bearing"]}],
            "sensors": {"found later": {"location": "roof"}},
        },
        base_dir=Path("/"),
    )
    assert cfg.sensor_info("found later").location == "roof"
    assert cfg.sensor_info("other").machine == ""


def test_a_reload_that_changes_a_sensor_place_needs_a_restart() -> None:
    running, new = config({"pump-3": PUMP}), config({"pump-3": {**PUMP, "machine": "pump 4"}})
    model = loaded()
    plan = plan_reload(running, new, {"bearing": model}, load=lambda path: model)
    assert "sensors (machine, location, tags)" in plan.restart_keys
    assert plan.config.sensors == running.sensors


def test_a_maximum_duration_end_reports_the_last_window_before_the_deadline() -> None:
    cfg = config(max_duration_s=3.0)
    clock = Clock()
    engine = DecisionEngine(cfg.decision, clock=clock)
    events: list[AlertEvent] = []
    for index, p in enumerate([0.9, 0.9, 0.92, 0.97]):
        clock.now = T0 + index
        events += engine.update(predict("IR007", p, index))
    events += engine.tick(T0 + 10)
    end = events[-1]
    assert (end.type, end.ended_at) == ("end", T0 + 1 + 3.0)  # opened at T0 + 1
    assert end.window_start == T0 + 3  # the last window seen before the deadline, not the new's (T0 + 1)
    assert end.confidence == pytest.approx(0.97) and end.probabilities["IR007"] == pytest.approx(0.97)
    assert end.peak_confidence == pytest.approx((0.9 + 0.92 + 0.97) / 3)


def test_the_exporters_table_describes_the_labels_it_knows_in_label_order() -> None:
    from edge_agent.training.label_info import CWRU_LABEL_INFO, label_info

    assert list(label_info(["IR021", "custom", "Normal"], CWRU_LABEL_INFO)) == ["IR021", "Normal"]
    assert CWRU_LABEL_INFO["B014"] == {
        "description": "ball (rolling-element) fault, 0.36 mm (0.014 in)",
        "severity": "warning",
    }
