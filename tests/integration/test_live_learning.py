"""Learning on the gateway against the real broker: a sensor learns its healthy stream (a generated tone, a
short recording, few optimiser steps) while the agent runs; the validated model is swapped in without a
window lost; a trainer that is killed leaves the old model; the control command is refused without permission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from edge_agent.configload import load_config
from edge_agent.service.app import App
from edge_agent.service.control import send_command

REPO = Path(__file__).resolve().parents[2]
RATE_HZ = 4000
CHUNK_SAMPLES = 400  # 0.1 s
WINDOW, HOP = 256, 128


def tone(seconds: float, start_s: float = 0.0, seed: int = 0) -> np.ndarray:
    t = start_s + np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    noise = 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


def learn_from_file(out: Path, tmp_path: Path) -> None:
    """The first baseline, learned from a recorded file (the anomaly model the agent starts with)."""
    recording = tmp_path / "first.npy"
    np.save(recording, tone(20.0, seed=1))
    command = [sys.executable, "-m", "edge_agent", "learn", str(recording), f"--out={out}", "--quiet"]
    command += [f"--sample-rate-hz={RATE_HZ}", f"--window-samples={WINDOW}", f"--hop-samples={HOP}", "--steps=30"]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO, timeout=300)


def write_config(tmp_path: Path, port: int, model: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[agent]
id = "learner"
state_dir = "{tmp_path / "state"}"
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
enabled = false
[[models]]
name = "pump-anomaly"
path = "{model}"
[[sources]]
type = "mqtt"
name = "plant"
topic = "plant/+/sound"
sensor_level = 1
format = "f32le"
sample_rate_hz = {RATE_HZ}
qos = 1
sensors = ["pump"]
models = ["pump-anomaly"]
"""
    )
    return path


class Publisher:
    """Publishes the tone in real time (0.1 s chunks, QoS 1) until stopped; counts the samples sent."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="tone-publisher")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tone", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            chunk = tone(CHUNK_SAMPLES / RATE_HZ, self.samples / RATE_HZ)
            self.client.publish("plant/pump/sound", chunk.tobytes(), qos=1).wait_for_publish(5.0)
            self.samples += CHUNK_SAMPLES
            next_s += CHUNK_SAMPLES / RATE_HZ
            self._stop.wait(max(0.0, next_s - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def agent(broker, tmp_path: Path) -> Iterator[tuple[App, Path]]:  # type: ignore[no-untyped-def]
    model = tmp_path / "state" / "learned" / "pump.pt"  # the learned file is the configured model
    model.parent.mkdir(parents=True)
    learn_from_file(model, tmp_path)
    path = write_config(tmp_path, broker.port, model)
    app = App(load_config(path), read_config=lambda: load_config(path))
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, name="agent", daemon=True)
    runner.start()
    try:
        yield app, tmp_path / "state"
    finally:
        app.stop_requested.set()
        runner.join(timeout=20.0)


STATE_TOPIC = "edge-agent/learner/pump/state"


def shown(collector) -> object:  # type: ignore[no-untyped-def]
    """The label the sensor's retained state shows (None: no alert), or "" before the first state."""
    last = collector.last(STATE_TOPIC)
    return json.loads(last)["label"] if last else ""


def value(app: App, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_sensor_learns_its_live_stream_and_the_model_swaps_in_without_losing_a_window(
    agent: tuple[App, Path],
    broker,
    subscriber,
    until: Callable[..., None],  # type: ignore[no-untyped-def]
) -> None:
    app, state_dir = agent
    states = subscriber(STATE_TOPIC)
    until(lambda: app.worker is not None and app.learning.server.alive(), 30.0, "the agent to start")
    old_sha = app.models["pump-anomaly"].sha256
    publisher = Publisher(broker.port)
    try:
        until(lambda: value(app, "edge_agent_windows_total", sensor="pump") > 10, 20.0, "windows")
        request = {"command": "learn", "sensor": "pump", "duration_s": 8, "steps": 30}
        reply = send_command(state_dir, request)
        assert reply["ok"], reply
        run = app.learning.manager.runs["pump"]
        states.wait_for(lambda c: shown(c) == "learning", 10.0, "the state topic to show learning")
        until(lambda: run.state in ("idle", "failed"), 180.0, "the learning run to end")
        assert run.state == "idle" and run.message.startswith("learned"), run.message
        assert app.models["pump-anomaly"].sha256 != old_sha  # swapped in, no restart
        assert value(app, "edge_agent_learning_state", sensor="pump", state="idle") == 1
        assert value(app, "edge_agent_learning_seconds", sensor="pump") >= 0.8 * 8
        assert value(app, "edge_agent_learning_last_success_timestamp_seconds", sensor="pump") > 0
        states.wait_for(lambda c: shown(c) is None, 10.0, "the state topic to show no alert again")
        time.sleep(1.0)  # windows keep coming through the new model
    finally:
        publisher.stop()
    cut = lambda: value(app, "edge_agent_windows_total", sensor="pump")  # noqa: E731
    processed = lambda: value(app, "edge_agent_windows_processed_total", model="pump-anomaly")  # noqa: E731
    until(lambda: processed() == cut(), 10.0, "every window cut to be scored")
    samples = value(app, "edge_agent_samples_received_total", sensor="pump")
    assert samples == publisher.samples  # every sample sent arrived ...
    assert cut() == 1 + (samples - WINDOW) // HOP  # ... every window was cut from them ...
    assert value(app, "edge_agent_windows_dropped_total", reason="queue_full") == 0  # ... and scored
    assert value(app, "edge_agent_stream_gaps_total", sensor="pump") == 0


def test_a_killed_trainer_leaves_the_old_model_and_others_are_refused(
    agent: tuple[App, Path],
    broker,
    subscriber,
    until: Callable[..., None],  # type: ignore[no-untyped-def]
) -> None:
    app, state_dir = agent
    states = subscriber(STATE_TOPIC)
    until(lambda: app.worker is not None and app.learning.server.alive(), 30.0, "the agent to start")
    learned = state_dir / "learned" / "pump.pt"
    old_sha, old_bytes = app.models["pump-anomaly"].sha256, learned.read_bytes()
    publisher = Publisher(broker.port)
    try:
        until(lambda: value(app, "edge_agent_windows_total", sensor="pump") > 10, 20.0, "windows")
        app.learning.server.allowed_uids = frozenset({54321})  # the caller is not the agent's user
        reply = send_command(state_dir, {"command": "learn", "sensor": "pump", "duration_s": 4})
        assert not reply["ok"] and "permission denied" in reply["message"]
        assert "pump" not in app.learning.manager.runs
        app.learning.server.allowed_uids = frozenset({0, os.getuid()})
        reply = send_command(state_dir, {"command": "learn", "sensor": "pump", "duration_s": 4, "steps": 100000})
        assert reply["ok"], reply
        run = app.learning.manager.runs["pump"]
        until(lambda: run.state == "training" and run.process is not None, 30.0, "the trainer to start")
        run.process.kill()
        until(lambda: run.state == "failed", 30.0, "the run to fail")
        states.wait_for(lambda c: shown(c) == "learning_failed", 10.0, "the state topic to show the failure")
        assert "killed by signal 9" in run.message
        assert app.models["pump-anomaly"].sha256 == old_sha and learned.read_bytes() == old_bytes
        assert value(app, "edge_agent_learning_state", sensor="pump", state="failed") == 1
    finally:
        publisher.stop()
