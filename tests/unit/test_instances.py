"""Agent instances (one process per core): the stable share of sensors, the check, each instance's own names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from edge_agent.cli import main
from edge_agent.config.instances import for_instance, share_of
from edge_agent.configload import ConfigError, parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.control import state_dir_of
from edge_agent.sources.mqtt import MqttSource
from edge_agent.types import Chunk

REPO = Path(__file__).resolve().parents[2]
SENSORS = [f"s{i}" for i in range(300)] + ["pump-7", "pümpe-ü", "a" * 128]


def _config(instance: int | None = None, **source: Any) -> dict[str, Any]:
    mqtt_source = {"type": "mqtt", "name": "plant", "topic": "plant/+/vibration", "models": ["bearing"], **source}
    data: dict[str, Any] = {
        "agent": {"id": "gw"},
        "mqtt": {"enabled": True, "host": "broker"},
        "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
        "sources": [mqtt_source],
    }
    if instance is not None:
        data["agent"]["instance"] = instance
    return data


def _errors(data: dict[str, Any], instance: int | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("/"), instance=instance)
    return caught.value.errors


def test_the_share_is_crc32_of_the_utf8_id_and_pinned() -> None:
    # pinned values: a change of the function would move sensors between running instances
    assert [share_of(s, 3) for s in ("s0", "s1", "s2", "s3", "pump-7", "pümpe-ü")] == [2, 1, 0, 1, 2, 0]
    assert [share_of(s, 2) for s in ("s0", "pump-7")] == [0, 1]
    assert all(share_of(s, 1) == 0 for s in SENSORS)


def test_the_share_is_the_same_in_processes_with_other_hash_seeds() -> None:
    here = [share_of(s, k) for s in SENSORS for k in (2, 3, 7)]
    code = (
        "import json, sys; from edge_agent.config.instances import share_of; "
        "print(json.dumps([share_of(s, k) for s in json.load(sys.stdin) for k in (2, 3, 7)]))"
    )
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(SENSORS), env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here, seed
    # and hash() itself would not have been: two seeds disagree on some id
    code = "import json, sys; print(json.dumps([hash(s) % 7 for s in json.load(sys.stdin)]))"
    seeded = [
        subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(SENSORS),
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert seeded[0] != seeded[1]


def _message(sensor: str, payload: bytes) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=f"plant/{sensor}/vibration".encode())
    msg.payload = payload
    return msg


def _source(instances: int, instance: int, **extra: Any) -> tuple[MqttSource, AgentMetrics, list[str]]:
    cfg = parse_config(_config(instance, instances=instances, **extra), base_dir=Path("/"))
    metrics = AgentMetrics()
    source = MqttSource(
        cfg.sources[0], cfg.mqtt, password=None, agent_id=cfg.agent.id, metrics=metrics, instance=instance
    )
    emitted: list[str] = []

    def emit(chunk: Chunk) -> None:
        emitted.append(chunk.sensor)

    source._emit = emit
    return source, metrics, emitted


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("instances", [2, 3, 5])
def test_every_sensor_is_taken_by_exactly_one_instance_and_the_others_count_it_foreign(instances: int) -> None:
    payload = json.dumps({"sample_rate_hz": 12000, "samples": [0.1] * 64}).encode()
    taken: dict[str, list[int]] = {s: [] for s in SENSORS}
    for instance in range(instances):
        source, metrics, emitted = _source(instances, instance)
        for sensor in SENSORS:
            source._on_message(None, None, _message(sensor, payload))  # type: ignore[arg-type]
        for sensor in emitted:
            taken[sensor].append(instance)
        foreign = _value(metrics, "edge_agent_messages_foreign_total", source="plant")
        assert foreign == len(SENSORS) - len(emitted)
        assert _value(metrics, "edge_agent_messages_received_total", source="plant") == len(SENSORS)
        assert source.internal_errors == 0
    assert {s: len(i) for s, i in taken.items()} == {s: 1 for s in SENSORS}
    assert all(i == [share_of(s, instances)] for s, i in taken.items())


def test_a_foreign_message_is_dropped_before_decoding_and_is_no_payload_error() -> None:
    source, metrics, emitted = _source(2, 0)
    mine = next(s for s in SENSORS if share_of(s, 2) == 0)
    theirs = next(s for s in SENSORS if share_of(s, 2) == 1)
    source._on_message(None, None, _message(theirs, b"\xff not json"))  # type: ignore[arg-type]
    assert _value(metrics, "edge_agent_messages_foreign_total", source="plant") == 1
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="not_json") == 0
    source._on_message(None, None, _message(mine, b"\xff not json"))  # type: ignore[arg-type]
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="not_json") == 1
    assert emitted == []


def test_foreign_sensors_do_not_use_up_max_sensors() -> None:
    payload = json.dumps({"sample_rate_hz": 12000, "samples": [0.1] * 64}).encode()
    source, _metrics, emitted = _source(2, 1, max_sensors=3)
    for sensor in SENSORS:
        source._on_message(None, None, _message(sensor, payload))  # type: ignore[arg-type]
    assert len(emitted) == 3 and all(share_of(s, 2) == 1 for s in emitted)


def test_an_allow_list_is_cut_to_the_instance_and_the_rest_counted_foreign() -> None:
    named = SENSORS[:10]
    for instance in (0, 1):
        cfg = parse_config(_config(instance, instances=2, sensors=named), base_dir=Path("/"))
        assert cfg.sources[0].known_sensors == tuple(s for s in named if share_of(s, 2) == instance)
    source, metrics, _ = _source(2, 0, sensors=named)
    source._on_message(None, None, _message(next(s for s in named if share_of(s, 2) == 1), b"{}"))  # type: ignore[arg-type]
    assert _value(metrics, "edge_agent_messages_foreign_total", source="plant") == 1
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="unknown_sensor") == 0


def test_an_instance_past_the_sources_instances_is_refused_naming_key_and_value() -> None:
    assert _errors(_config(instances=2), instance=2) == [
        "agent.instance: 2 is out of range; sources[0].instances = 2 allows 0 to 1 "
        "(an instance at or past every source's instances has nothing to process)"
    ]
    assert _errors(_config(2, instances=2)) == _errors(_config(instances=2), instance=2)
    assert _errors(_config(instances=2), instance=-1) == ["agent.instance: -1 is out of range; must be >= 0"]
    assert _errors(_config(instances=0)) == ["sources[0].instances: 0 is out of range; must be >= 1 and <= 256"]


def test_an_instance_whose_metrics_port_would_pass_65535_is_refused() -> None:
    data = _config(instances=2)
    data["metrics"] = {"port": 65535}
    assert _errors(data, instance=1) == [
        "agent.instance: 1 is out of range; instance N serves /metrics on metrics.port + N, "
        "and metrics.port = 65535 allows 0 to 0"
    ]
    assert parse_config(data, base_dir=Path("/"), instance=0).metrics.port == 65535


def test_learn_finds_the_state_folder_of_the_instance_that_owns_the_sensor(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = (
        f'[agent]\nstate_dir = "{tmp_path}"\n[mqtt]\nenabled = true\n[[models]]\nname = "bearing"\npath = "m.pt"\n'
        '[[sources]]\ntype = "mqtt"\nname = "plant"\ntopic = "plant/+/vibration"\nmodels = ["bearing"]\n'
    )
    path.write_text(text)
    assert state_dir_of(str(path), "s0") == tmp_path  # one agent: its own folder
    path.write_text(text + "instances = 2\n")
    assert [state_dir_of(str(path), s) for s in ("s0", "pump-7")] == [tmp_path / "instance-0", tmp_path / "instance-1"]


def test_a_shared_source_needs_the_instance_index() -> None:
    assert _errors(_config(instances=2)) == [
        "sources[0].instances: 2 needs the instance index of this process; "
        "set agent.instance or run with --instance N (0 to 1)"
    ]


def test_check_config_refuses_a_bad_instance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[mqtt]\nenabled = true\n[[models]]\nname = "bearing"\npath = "m.pt"\n'
        '[[sources]]\ntype = "mqtt"\nname = "plant"\ntopic = "plant/+/vibration"\nmodels = ["bearing"]\ninstances = 2\n'
    )
    assert main(["check-config", str(path), "--skip-model-files", "--instance", "1"]) == 0
    assert main(["check-config", str(path), "--skip-model-files", "--instance", "2"]) == 2
    assert "agent.instance: 2 is out of range; sources[0].instances = 2 allows 0 to 1" in capsys.readouterr().err


def test_each_instance_has_its_own_id_client_id_state_dir_and_metrics_port(tmp_path: Path) -> None:
    data = _config(instances=2)
    data["agent"]["state_dir"] = str(tmp_path)
    data["mqtt"]["client_id"] = "plant-gw"
    data["metrics"] = {"port": 10041}
    configs = [parse_config(data, base_dir=Path("/"), instance=i) for i in (0, 1)]
    assert [c.agent.id for c in configs] == ["gw-0", "gw-1"]
    assert [c.mqtt.client_id for c in configs] == ["plant-gw-0", "plant-gw-1"]
    assert [c.agent.state_path() for c in configs] == [tmp_path / "instance-0", tmp_path / "instance-1"]
    assert [c.metrics.port for c in configs] == [10041, 10042]
    del data["mqtt"]["client_id"], data["agent"]["state_dir"]
    default = parse_config(data, base_dir=Path("/"), instance=1)
    assert default.mqtt.client_id == "" and default.agent.state_dir == ""  # defaults derive from the id gw-1


def test_without_an_instance_the_config_is_unchanged() -> None:
    cfg = parse_config(_config(), base_dir=Path("/"))
    assert cfg.agent.instance is None and cfg.agent.id == "gw" and for_instance(cfg) is cfg


def test_a_source_without_instances_runs_in_instance_0_only() -> None:
    data = _config(instances=2)
    data["sources"].append({"type": "replay", "name": "bench", "sensor": "r", "path": "r.npz", "models": ["bearing"]})
    names = [[s.name for s in parse_config(data, base_dir=Path("/"), instance=i).sources] for i in (0, 1)]
    assert names == [["plant", "bench"], ["plant"]]
