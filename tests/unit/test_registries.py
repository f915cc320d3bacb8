"""The plugin registries and their contracts (issue 9, items 1 and 2).

Every registered source and sink is built from its section through its registry (not started) and
checked against its Protocol; the capabilities a type declares are the ones its objects have. The
decision engine and the loader refuse the same values (one set of limits, declared on the fields),
and the reload planner's live keys come from the same declaration.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig, DecisionSection
from edge_agent.config.rules import live_keys
from edge_agent.configload import ConfigError, parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.service.reload import LIVE_KEYS
from edge_agent.sinks import SINKS, SensorAware, Sink, SinkBuild, StateClearing, build_sinks
from edge_agent.sources import SOURCES, HealthReporting, Source, SourceBuild, build_source

PACKAGE = Path(__file__).resolve().parents[2] / "edge_agent"
SOURCE_TABLES: dict[str, dict[str, Any]] = {
    "mqtt": {"topic": "plant/+/vibration", "format": "f32le", "sample_rate_hz": 12000.0},
    "replay": {"sensor": "motor-1", "path": "data.npz"},
    "soundcard": {"sensor": "pump-1", "device": "USB Audio", "sample_rate_hz": 48000.0},
}


def _config(tmp_path: Path) -> AgentConfig:
    sources = [{"type": kind, "name": kind, "models": ["m"], **table} for kind, table in SOURCE_TABLES.items()]
    data = {
        "mqtt": {"enabled": True, "port": 1},
        "homeassistant": {"enabled": True},
        "models": [{"name": "m", "path": "m.pt"}],
        "sources": sources,
    }
    return parse_config(data, base_dir=tmp_path)


def test_every_source_type_has_a_table_here() -> None:
    assert sorted(SOURCE_TABLES) == sorted(SOURCES)


@pytest.mark.parametrize("kind", SOURCES)
def test_each_source_type_builds_from_its_section_and_keeps_its_contract(tmp_path: Path, kind: str) -> None:
    config = _config(tmp_path)
    (section,) = [s for s in config.sources if s.type == kind]
    spec = SOURCES[kind]
    assert type(section) is spec.section
    source = build_source(section, SourceBuild(config, AgentMetrics(), None, lambda: None))
    assert isinstance(source, Source)
    assert isinstance(source, HealthReporting) == spec.reports_health
    source.stop()  # unstarted: a no-op


def test_each_sink_type_builds_and_declares_what_it_can_do(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sinks = build_sinks(config, SinkBuild(AgentMetrics(), None, None))
    assert [sink.name for sink in sinks.all] == list(SINKS)
    for kind, sink in zip(SINKS.values(), sinks.all, strict=True):
        assert isinstance(sink, Sink)
        assert isinstance(sink, SensorAware) == kind.sensor_aware, sink.name
        assert isinstance(sink, StateClearing) == kind.clears_state, sink.name
        sink.close(0.1)  # unopened: a no-op, one signature everywhere
    assert [s.name for s in sinks.sensor_aware] == ["homeassistant"]
    assert [s.name for s in sinks.state_clearing] == ["mqtt"]


def test_only_the_log_sink_without_mqtt(tmp_path: Path) -> None:
    source = {"type": "replay", "name": "r", "models": ["m"], "sensor": "s", "path": "d.npz"}
    config = parse_config({"models": [{"name": "m", "path": "m.pt"}], "sources": [source]}, base_dir=tmp_path)
    assert [s.name for s in build_sinks(config, SinkBuild(AgentMetrics(), None, None)).all] == ["log"]


# --- one set of limits -------------------------------------------------------------------------

BAD_DECISIONS = [
    ("min_confidence", 0.0),  # the engine took 0 (every prediction would vote)
    ("min_confidence", 1.5),
    ("hold_off_s", 0.0),  # the engine took 0
    ("hold_off_s", -1.0),
    ("cooldown_s", -1.0),
    ("update_min_delta", 1.5),  # the engine took any value >= 0
    ("update_min_delta", -0.1),
    ("max_duration_s", 0.0),
    ("confirm_k", 0),
    ("confirm_k", 6),  # > confirm_n (5)
    ("confirm_n", 0),
]
GOOD_DECISIONS = [("min_confidence", 1.0), ("update_min_delta", 0.0), ("update_min_delta", 1.0), ("cooldown_s", 0.0)]


@pytest.mark.parametrize(("key", "value"), BAD_DECISIONS)
def test_engine_and_loader_refuse_the_same_decision_values(tmp_path: Path, key: str, value: float) -> None:
    data = {
        "decision": {key: value},
        "models": [{"name": "m", "path": "m.pt"}],
        "sources": [{"type": "replay", "name": "r", "models": ["m"], "sensor": "s", "path": "d.npz"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    assert any(line.startswith(f"decision.{key}: ") for line in info.value.errors), info.value.errors
    with pytest.raises(ValueError, match=rf"decision\.{key}: "):
        DecisionEngine(DecisionSection(**{key: value}))
    with pytest.raises(ValueError, match=rf"decision\.{key}: "):
        DecisionEngine(DecisionSection()).reconfigure(DecisionSection(**{key: value}))


@pytest.mark.parametrize(("key", "value"), GOOD_DECISIONS)
def test_engine_and_loader_accept_the_same_boundaries(tmp_path: Path, key: str, value: float) -> None:
    data = {
        "decision": {key: value},
        "models": [{"name": "m", "path": "m.pt"}],
        "sources": [{"type": "replay", "name": "r", "models": ["m"], "sensor": "s", "path": "d.npz"}],
    }
    assert getattr(parse_config(data, base_dir=tmp_path).decision, key) == value
    DecisionEngine(DecisionSection(**{key: value}))


def test_reload_live_keys_come_from_the_field_declarations() -> None:
    assert LIVE_KEYS["agent"] == ("log_level",)
    assert LIVE_KEYS["inference"] == ("max_batch", "max_wait_s")
    assert LIVE_KEYS["decision"] == tuple(f.name for f in dataclasses.fields(DecisionSection))
    assert LIVE_KEYS["mqtt"] == LIVE_KEYS["metrics"] == LIVE_KEYS["homeassistant"] == ()
    assert all(LIVE_KEYS[name] == live_keys(type(getattr(AgentConfig(), name))) for name in LIVE_KEYS)


# --- no capability probing ---------------------------------------------------------------------


def _probes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.func.id}")
    return found


def test_the_runtime_never_probes_for_capabilities() -> None:
    """hasattr(x, ...) or getattr(x, ..., default) on our objects: capabilities are declared in the registries.

    sources/devices.py reads a private flag of the sounddevice module (not a plugin capability).
    """
    runtime = [p for p in PACKAGE.rglob("*.py") if p.parts[-2] not in ("nn", "training")]
    probes = [hit for path in runtime if path.name != "devices.py" for hit in _probes(path)]
    assert probes == []


def test_the_registries_import_no_optional_library() -> None:
    """paho and sounddevice are imported by a factory, when a configured plugin needs them; torch never here."""
    code = (
        "import sys, edge_agent.configload, edge_agent.sources, edge_agent.sinks, edge_agent.service.preflight; "
        "print(sorted(m for m in ('paho', 'sounddevice', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
