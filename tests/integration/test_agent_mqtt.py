"""End to end with a real broker: the agent as a subprocess, CWRU streams in, alerts out."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import numpy as np
import paho.mqtt.client as paho
import pytest

from edge_agent.common.paths import data_root
from tests.integration.agent_process import agent_process, mqtt_section

REPO = Path(__file__).resolve().parents[2]
# The tail these tests' agent configs share: the CWRU bearing model on one JSON mqtt source `plant`
# (plant/<sensor>/vibration, QoS 1) and a short hold-off; each appends its own source keys, then `models`.
PLANT_SOURCE = f"""[decision]
hold_off_s = 1.0
cooldown_s = 0.0
[[models]]
name = "bearing"
path = "{REPO / "models" / "drsn_cw_cwru.pt"}"
[[sources]]
type = "mqtt"
name = "plant"
topic = "plant/+/vibration"
sensor_level = 1
format = "json"
qos = 1
"""
SCHEMA = json.loads((REPO / "docs" / "alert.schema.json").read_text())
PREFIX = "edge-agent/e2e-agent"
CHUNK_SAMPLES = 1024
RATE_HZ = 12_000


def held_out(key: str) -> np.ndarray:
    """The last 20 % of a record in the pack: data no shipped model was trained on."""
    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz", allow_pickle=False) as pack:
        signal_g = pack[key]
    return signal_g[round(0.8 * signal_g.size) :]


def agent_config(path: Path, broker_port: int) -> Path:
    path.write_text(
        f"""
[agent]
id = "e2e-agent"
{mqtt_section(broker_port)}[metrics]
enabled = false
{PLANT_SOURCE}models = ["bearing"]
"""
    )
    return path


class Stream:
    """Publishes one sensor's samples as JSON chunks with continuous seq and ts."""

    def __init__(self, client: paho.Client, sensor: str) -> None:
        self.client, self.sensor = client, sensor
        self.seq, self.t_s = 0, time.time()

    def chunks(self, signal_g: np.ndarray) -> Iterator[bytes]:
        for start in range(0, signal_g.size - CHUNK_SAMPLES + 1, CHUNK_SAMPLES):
            samples = signal_g[start : start + CHUNK_SAMPLES]
            yield json.dumps(
                {"seq": self.seq, "ts": self.t_s, "sample_rate_hz": RATE_HZ, "samples": samples.tolist()}
            ).encode()
            self.seq += 1
            self.t_s += CHUNK_SAMPLES / RATE_HZ

    def publish(self, payload: bytes) -> None:
        self.client.publish(f"plant/{self.sensor}/vibration", payload, qos=1)


def play(streams: list[tuple[Stream, np.ndarray]], *, speed: float = 2.0) -> None:
    """Interleave the sensors' chunks at ``speed`` times real time."""
    iterators = [(stream, stream.chunks(signal_g)) for stream, signal_g in streams]
    while iterators:
        started = time.monotonic()
        for stream, chunks in list(iterators):
            payload = next(chunks, None)
            if payload is None:
                iterators.remove((stream, chunks))
            else:
                stream.publish(payload)
        time.sleep(max(0.0, CHUNK_SAMPLES / RATE_HZ / speed - (time.monotonic() - started)))


@pytest.fixture
def agent(tmp_path: Path, broker) -> Iterator[subprocess.Popen[bytes]]:
    config = agent_config(tmp_path / "agent.toml", broker.port)
    with agent_process(config, tmp_path / "agent.log") as proc:
        yield proc


def alerts(collector, sensor: str) -> list[dict[str, object]]:
    return [json.loads(p) for p in collector.payloads(f"{PREFIX}/{sensor}/alert")]


def test_fault_alert_lifecycle_state_status_and_last_will(
    broker, agent, subscriber, until: Callable[..., None]
) -> None:
    watch = subscriber(f"{PREFIX}/#")
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"online", timeout_s=60, what="agent online")
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-publisher")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        a, b = Stream(publisher, "motor-a"), Stream(publisher, "motor-b")
        fault, healthy = held_out("105"), held_out("097")  # IR007 and Normal
        play([(a, fault), (b, np.tile(healthy, 2))])
        watch.wait_for(lambda c: len(alerts(c, "motor-a")) >= 1, timeout_s=20, what="a new alert for motor-a")
        first = alerts(watch, "motor-a")[0]
        assert (first["type"], first["label"], first["kind"], first["sensor"]) == ("new", "IR007", "fault", "motor-a")
        state = json.loads(watch.last(f"{PREFIX}/motor-a/state"))
        assert (state["label"], state["alert_id"]) == ("IR007", first["id"])
        play([(a, np.tile(healthy, 3)), (b, np.tile(healthy, 3))])  # motor A recovers
        watch.wait_for(lambda c: any(e["type"] == "end" for e in alerts(c, "motor-a")), timeout_s=20, what="end")
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    events = alerts(watch, "motor-a")
    assert {e["id"] for e in events} == {first["id"]}, events  # one episode, one id
    assert events[-1]["type"] == "end" and events[-1]["ended_at"] is not None
    assert alerts(watch, "motor-b") == []
    for event in events:
        jsonschema.validate(event, SCHEMA)
    assert json.loads(watch.last(f"{PREFIX}/motor-a/state"))["label"] is None
    agent.send_signal(signal.SIGKILL)
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"offline", timeout_s=30, what="Last Will 'offline'")


def test_sigterm_stops_within_5_s_and_publishes_stopped(agent, subscriber) -> None:
    watch = subscriber(f"{PREFIX}/status")
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"online", timeout_s=60, what="agent online")
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0
    assert time.monotonic() - started < 5.0
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"stopped", timeout_s=5, what="'stopped'")
