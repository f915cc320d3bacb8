"""What a reload applies live, what needs a restart, and what makes it refuse (no torch: a fake model loader)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, DecisionSection
from edge_agent.configload import parse_config
from edge_agent.modelfile import LoadedModel, parse_meta
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.service.reload import ReloadError, plan_reload
from edge_agent.types import Prediction, Window

META = {"window_samples": 2048, "channels": 1, "sample_rate_hz": 12000.0, "labels": ["Normal", "IR007"]}
BASE_META = {  # the rest of a valid meta.json (ModelMeta needs every required key)
    "schema": 1,
    "name": "bearing",
    "kind": "classifier",
    "hop_samples": 1024,
    "input_units": "g",
    "normalisation": {"applied": "inside the graph"},
    "precision": "float32",
    "quantized_engine": None,
}


def config(**changes: Any) -> AgentConfig:
    data: dict[str, Any] = {
        "mqtt": {"enabled": True, "host": "broker"},
        "decision": {"min_confidence": 0.8},
        "models": [{"name": "bearing", "path": "/m/a.pt"}],
        "sources": [{"type": "mqtt", "name": "vib", "topic": "plant/+/vibration", "models": ["bearing"]}],
    }
    for section, values in changes.items():
        data[section] = values if isinstance(values, list) else {**data.get(section, {}), **values}
    return parse_config(data, base_dir=Path("/"))


def model(path: str, sha256: str, **meta: Any) -> LoadedModel:
    typed = parse_meta({**BASE_META, **META, **meta}, source=path)
    return LoadedModel(path=Path(path), module=None, meta=typed, sha256=sha256)  # type: ignore[arg-type]


FILES = {"/m/a.pt": model("/m/a.pt", "a" * 64), "/m/b.pt": model("/m/b.pt", "b" * 64)}


def load(path: str) -> LoadedModel:
    if path not in FILES:
        raise FileNotFoundError(f"{path}: no such file")
    return FILES[path]


RUNNING = {"bearing": FILES["/m/a.pt"]}


def test_decision_settings_apply_live() -> None:
    plan = plan_reload(config(), config(decision={"min_confidence": 0.9, "hold_off_s": 1.0}), RUNNING, load=load)
    assert plan.changed_keys == ("decision.min_confidence", "decision.hold_off_s")
    assert plan.restart_keys == ()
    assert plan.config.decision.min_confidence == 0.9
    assert plan.models == {}  # the same file (same sha256): nothing to swap


def test_restart_only_keys_are_named_and_keep_their_running_values() -> None:
    sources = [{"type": "mqtt", "name": "vib", "topic": "site/+/vibration", "models": ["bearing"]}]
    new = config(mqtt={"host": "other"}, inference={"queue_windows": 64, "max_batch": 8}, sources=sources)
    plan = plan_reload(config(), new, RUNNING, load=load)
    assert plan.restart_keys == ("mqtt.host", "inference.queue_windows", "sources[0].topic")
    assert plan.changed_keys == ("inference.max_batch",)
    assert plan.config.mqtt.host == "broker"
    assert plan.config.inference.queue_windows == 512 and plan.config.inference.max_batch == 8
    assert plan.config.sources == config().sources


def test_a_changed_model_file_is_swapped() -> None:
    plan = plan_reload(config(), config(models=[{"name": "bearing", "path": "/m/b.pt"}]), RUNNING, load=load)
    assert plan.models == {"bearing": FILES["/m/b.pt"]}
    assert plan.changed_keys == ("models[0].path (sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb)",)
    assert plan.config.models[0].path == "/m/b.pt"


def test_a_model_with_another_input_shape_needs_a_restart() -> None:
    FILES["/m/wide.pt"] = model("/m/wide.pt", "c" * 64, window_samples=4096)
    plan = plan_reload(config(), config(models=[{"name": "bearing", "path": "/m/wide.pt"}]), RUNNING, load=load)
    assert plan.models == {}
    assert plan.restart_keys == ("models[0].path (/m/wide.pt: window_samples 4096 (running 2048))",)
    assert plan.config.models[0].path == "/m/a.pt"


def test_a_model_file_that_cannot_be_loaded_refuses_the_reload() -> None:
    new = config(models=[{"name": "bearing", "path": "/m/missing.pt"}], decision={"min_confidence": 0.9})
    with pytest.raises(ReloadError) as caught:
        plan_reload(config(), new, RUNNING, load=load)
    assert caught.value.errors == ["models[0].path: '/m/missing.pt' cannot be loaded: /m/missing.pt: no such file"]


def test_renamed_models_need_a_restart() -> None:
    new = config(
        models=[{"name": "bearing2", "path": "/m/a.pt"}],
        sources=[{"type": "mqtt", "name": "vib", "topic": "plant/+/vibration", "models": ["bearing2"]}],
    )
    plan = plan_reload(config(), new, RUNNING, load=load)
    assert plan.restart_keys == ("sources[0].models", "models (names)")
    assert plan.config.models == config().models


def prediction(i: int, label: str, confidence: float = 0.95) -> Prediction:
    window = Window("s1", float(i), float(i) + 0.1, None)  # type: ignore[arg-type]
    others = 1.0 - confidence
    probabilities = {"Normal": others, "IR007": others}
    probabilities[label] = confidence
    return Prediction("s1", "m", window, probabilities, label, confidence, 0.0)


def test_decision_reconfigure_keeps_the_open_alert_and_the_newest_votes() -> None:
    now = [100.0]
    engine = DecisionEngine(DecisionSection(confirm_k=2, confirm_n=4), clock=lambda: now[0])
    events = [e for i in range(3) for e in engine.update(prediction(i, "IR007"))]
    assert [e.type for e in events] == ["new"]
    alert_id = events[0].id
    engine.reconfigure(DecisionSection(confirm_k=1, confirm_n=2, min_confidence=0.99))
    assert engine.active("s1") is not None and engine.active("s1").id == alert_id  # type: ignore[union-attr]
    assert engine.update(prediction(3, "Normal")) == []  # still confirmed: one of the 2 newest votes
    with pytest.raises(ValueError, match="confirm_k"):
        engine.reconfigure(dataclasses.replace(engine.config, confirm_k=3))
    assert engine.config.confirm_n == 2  # a refused configuration leaves the old one
