"""Issue 12 with a real broker: one sender cannot silence the others.

Hostile payloads (rates of 11,999 Hz and 1e-7 Hz, ``ts`` of 1e12, -1e12 and 1e308, one 4 MiB valid
payload) are each counted under their reason while a valid sensor keeps alerting; an alert the
pump cannot publish costs that alert only; a pump thread that dies is started again by the
supervisor.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from conftest import wait_until

from edge_agent.common.paths import data_root
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App
from edge_agent.sinks.mqtt_alerts import MqttAlertSink
from edge_agent.sinks.outbox import open_outbox
from edge_agent.types import AlertEvent

MODEL = Path(__file__).resolve().parents[2] / "models" / "drsn_cw_cwru.pt"
AGENT = "hostile-agent"
PREFIX = f"edge-agent/{AGENT}"
RATE_HZ = 12_000
CHUNK_SAMPLES = 1024


def held_out(key: str) -> np.ndarray:
    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz", allow_pickle=False) as pack:
        signal_g = pack[key]
    return signal_g[round(0.8 * signal_g.size) :]


def _config(broker: Any, tmp_path: Path) -> dict[str, Any]:
    return {
        "agent": {"id": AGENT, "state_dir": str(tmp_path / "state")},
        "mqtt": {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min_s": 0.1},
        "metrics": {"enabled": False},
        "decision": {"hold_off_s": 1.0, "cooldown_s": 0.0},
        "models": [{"name": "bearing", "path": str(MODEL)}],
        "sources": [
            {
                "type": "mqtt",
                "name": "plant",
                "topic": "plant/+/vibration",
                "sensor_level": 1,
                "models": ["bearing"],
            }
        ],
    }


@pytest.fixture
def running(broker: Any, tmp_path: Path) -> Iterator[tuple[App, AgentMetrics, paho.Client]]:
    metrics = AgentMetrics()
    app = App(parse_config(_config(broker, tmp_path), base_dir=tmp_path), metrics=metrics)
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, daemon=True)
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-hostile-pub")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    runner.start()
    wait_until(lambda: metrics.registry.get_sample_value("edge_agent_source_up", {"source": "plant"}) == 1, 30, "up")
    yield app, metrics, publisher
    app.stop_requested.set()
    runner.join(15)
    publisher.loop_stop()
    publisher.disconnect()


def _value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _payload(samples: np.ndarray | list[float], rate_hz: float, ts: float | None = None) -> bytes:
    doc: dict[str, Any] = {"sample_rate_hz": rate_hz, "samples": list(map(float, samples))}
    if ts is not None:
        doc["ts"] = ts
    return json.dumps(doc).encode()


def _play_fault(publisher: paho.Client, sensor: str, seconds: float) -> None:
    signal_g = held_out("105")  # IR007
    t_s = time.time()
    for start in range(0, min(signal_g.size, int(seconds * RATE_HZ)) - CHUNK_SAMPLES + 1, CHUNK_SAMPLES):
        chunk = signal_g[start : start + CHUNK_SAMPLES]
        publisher.publish(f"plant/{sensor}/vibration", _payload(chunk, RATE_HZ, t_s), qos=1)
        t_s += CHUNK_SAMPLES / RATE_HZ
        time.sleep(CHUNK_SAMPLES / RATE_HZ / 2)


def _alerts(watch: Any, sensor: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in watch.payloads(f"{PREFIX}/{sensor}/alert")]


def test_hostile_payloads_are_counted_by_reason_while_a_valid_sensor_alerts(running, subscriber) -> None:
    app, metrics, publisher = running
    watch = subscriber(f"{PREFIX}/#")
    now = time.time()
    chunk = np.zeros(CHUNK_SAMPLES)
    big = b'{"sample_rate_hz": 12000, "samples": [' + b",".join([b"0.1"] * 1_040_000) + b"]}"
    assert len(big) <= 4 * 1024 * 1024  # a valid payload just under the size limit
    hostile = [
        ("rate-a", _payload(chunk, 11_999, now), "wrong_rate"),
        ("rate-b", _payload(chunk, 1e-7, now), "wrong_rate"),
        ("ts-a", _payload(chunk, RATE_HZ, 1e12), "bad_ts"),
        ("ts-b", _payload(chunk, RATE_HZ, -1e12), "bad_ts"),
        ("ts-c", _payload(chunk, RATE_HZ, 1e308), "bad_ts"),
        ("big", big, "too_many_samples"),
    ]
    for sensor, payload, _reason in hostile:
        publisher.publish(f"plant/{sensor}/vibration", payload, qos=1).wait_for_publish(10)
    wait_until(
        lambda: _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="too_many_samples") == 1, 30
    )
    for sensor, _payload_bytes, reason in hostile:  # said per sensor
        assert _value(metrics, "edge_agent_sensor_payload_errors_total", sensor=sensor, reason=reason) == 1, sensor
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="wrong_rate") == 2
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="too_many_samples") == 1
    assert _value(metrics, "edge_agent_payload_errors_total", source="plant", reason="wrong_channels") == 0
    assert _value(metrics, "edge_agent_windows_dropped_total", reason="queue_full") == 0
    assert app.sources[0].internal_errors == 0  # nothing escaped as an exception (was: ZeroDivisionError)
    _play_fault(publisher, "probe", 6.0)
    watch.wait_for(lambda c: len(_alerts(c, "probe")) >= 1, timeout_s=30, what="an alert of the valid sensor")
    assert _alerts(watch, "probe")[0]["type"] == "new"


def _event(n: int) -> AlertEvent:
    return AlertEvent(
        type="new",
        id=f"pumpA-fault-{n}",
        sensor="pumpA",
        kind="fault",
        label="inner_race",
        confidence=0.9,
        started_at=1_795_860_000.0 + n,
        window_start=1_795_860_000.0 + n,
        window_end=1_795_860_000.1 + n,
        model_name="drsn_cw",
        model_sha256="ab" * 32,
        probabilities={"Normal": 0.1, "inner_race": 0.9},
    )


def test_an_alert_the_pump_cannot_publish_costs_only_that_alert(mqtt_config, subscriber, tmp_path: Path) -> None:
    # A stored row whose topic paho refuses (ValueError in the pump thread: it used to end the
    # thread, and no alert of any sensor went out afterwards).
    path = tmp_path / "outbox.sqlite"
    stored = open_outbox(path, metrics=AgentMetrics(), max_count=100)
    stored.append(f"{PREFIX}/bad/+/alert", b"{}", event_type="new", alert_id="poisoned")
    stored.close()
    watch = subscriber(f"{PREFIX}/#")
    metrics = AgentMetrics()
    sink = MqttAlertSink(mqtt_config(), password=None, agent_id=AGENT, metrics=metrics, outbox_path=path)
    sink.open()
    try:
        for n in range(3):
            sink.send(_event(n))
        watch.wait_for(lambda c: len(_alerts(c, "pumpA")) == 3, timeout_s=15, what="the next alerts")
        assert [a["id"] for a in _alerts(watch, "pumpA")] == [f"pumpA-fault-{n}" for n in range(3)]
        assert sink.alive()
        assert _value(metrics, "edge_agent_sink_thread_errors_total", sink="mqtt") == 1
        assert _value(metrics, "edge_agent_alerts_dropped_total", reason="unpublishable") == 1
    finally:
        sink.close(timeout_s=1.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread we kill
def test_a_dead_pump_thread_is_started_again_by_the_supervisor(running, subscriber) -> None:
    app, metrics, _publisher = running
    watch = subscriber(f"{PREFIX}/#")
    sink = next(s for s in app.sinks if isinstance(s, MqttAlertSink))
    wait_until(sink.connected.is_set, 15, "the sink to connect")

    real_pump_once, died = sink._pump_once, threading.Event()

    def die_once() -> bool:
        # the first call raises what no handler in the thread catches (the thread ends); a restarted
        # thread runs the real pump (the supervisor may restart it before this test looks again)
        if not died.is_set():
            died.set()
            raise SystemExit
        return real_pump_once()

    sink._pump_once = die_once  # type: ignore[method-assign]
    sink._wake()
    wait_until(died.is_set, 10, "the pump thread to die")
    wait_until(lambda: _value(metrics, "edge_agent_sink_thread_restarts_total", sink="mqtt") == 1, 10, "a restart")
    assert sink.alive() and app.problem() is None
    sink.send(_event(7))
    watch.wait_for(lambda c: len(_alerts(c, "pumpA")) == 1, timeout_s=15, what="an alert after the restart")
