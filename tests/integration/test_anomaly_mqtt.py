"""An agent with a classifier and an anomaly model on one MQTT sensor, against the real broker.

The anomaly model is learned with ``edge-agent learn`` from a healthy generated tone; the classifier
is a scripted model that always says ``Normal`` (a closed-set classifier that cannot name the
change). The healthy tone raises no alert; the tone with a new harmonic raises an ``anomaly`` alert
that validates against docs/alert.schema.json and says it is an unknown condition on this machine.
"""

from __future__ import annotations

import json
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as paho
import pytest
import torch
from torch import nn

from edge_agent.cli import main
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "alert.schema.json").read_text())
RATE_HZ = 8000
WINDOW = 512
CHUNK = 512
AGENT = "anomaly-agent"
SENSOR = "pump-1"


def tone(seconds: float, *, harmonic: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t + rng.uniform(0, 6)) + harmonic * np.sin(2 * np.pi * 1320 * t)
    return (x + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


class SaysNormal(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 2)
        logits[:, 0] = 5.0
        return logits


def classifier_file(path: Path) -> Path:
    meta = {
        "schema": 1,
        "name": "closed-set",
        "kind": "classifier",
        "labels": ["Normal", "IR007"],
        "sample_rate_hz": RATE_HZ,
        "window_samples": WINDOW,
        "hop_samples": WINDOW,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
    }
    torch.jit.save(torch.jit.script(SaysNormal()), str(path), _extra_files={"meta.json": json.dumps(meta)})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    healthy = folder / "healthy.wav"
    pcm = np.clip(np.round(tone(12.0) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(healthy), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE_HZ)
        handle.writeframes(pcm.tobytes())
    out = folder / "baseline.pt"
    args = ["learn", "--out", str(out), "--window-samples", str(WINDOW), "--steps", "300", "--quiet", str(healthy)]
    assert main(args) == 0
    return classifier_file(folder / "classifier.pt"), out


@pytest.fixture
def agent(broker: Any, models: tuple[Path, Path]) -> Iterator[App]:
    classifier, baseline = models
    config = parse_config(
        {
            "agent": {"id": AGENT},
            "mqtt": {"enabled": True, "host": broker.host, "port": broker.port},
            "metrics": {"enabled": False},
            "decision": {"hold_off_s": 1.0, "cooldown_s": 0.0},
            "models": [{"name": "bearing", "path": str(classifier)}, {"name": "baseline", "path": str(baseline)}],
            "sources": [
                {
                    "type": "mqtt",
                    "name": "plant",
                    "topic": "plant/+/vibration",
                    "sensors": [SENSOR],
                    "qos": 1,
                    "models": ["bearing", "baseline"],
                }
            ],
        },
        base_dir=REPO,
    )
    app = App(config, metrics=AgentMetrics())
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, name="agent")
    runner.start()
    try:
        yield app
    finally:
        app.stop_requested.set()
        runner.join(timeout=30)


class Stream:
    def __init__(self, broker: Any) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="anomaly-test-publisher")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.seq, self.t_s = 0, time.time()

    def play(self, signal: np.ndarray, speed: float = 4.0) -> None:
        for start in range(0, signal.size - CHUNK + 1, CHUNK):
            payload = {"seq": self.seq, "ts": self.t_s, "sample_rate_hz": RATE_HZ}
            payload["samples"] = signal[start : start + CHUNK].tolist()
            self.client.publish(f"plant/{SENSOR}/vibration", json.dumps(payload), qos=1).wait_for_publish(5)
            self.seq += 1
            self.t_s += CHUNK / RATE_HZ
            time.sleep(CHUNK / RATE_HZ / speed)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def processed(app: App, model: str) -> float:
    return app.metrics.registry.get_sample_value("edge_agent_windows_processed_total", {"model": model}) or 0.0


def test_a_new_harmonic_raises_an_anomaly_alert_and_the_healthy_tone_none(
    broker: Any, agent: App, subscriber: Callable[..., Any], until: Callable[..., None]
) -> None:
    alert_topic = f"edge-agent/{AGENT}/{SENSOR}/alert"
    watch = subscriber(alert_topic)
    source_up = {"source": "plant"}
    until(lambda: agent.metrics.registry.get_sample_value("edge_agent_source_up", source_up) == 1, 30.0, "source up")
    stream = Stream(broker)
    try:
        healthy = tone(4.0, seed=7)
        stream.play(healthy)
        expected = (healthy.size - WINDOW) // (WINDOW // 2)  # the learned model's hop: half a window
        until(lambda: processed(agent, "baseline") >= expected, 30.0, f"the healthy windows scored: {expected}")
        until(lambda: processed(agent, "bearing") >= healthy.size // WINDOW - 1, 30.0, "the healthy windows classified")
        assert watch.payloads(alert_topic) == []  # the healthy tone raises none
        stream.play(tone(3.0, harmonic=0.05, seed=8))
        watch.wait_for(lambda c: c.payloads(alert_topic), 30.0, "an anomaly alert")
    finally:
        stream.close()
    first = json.loads(watch.payloads(alert_topic)[0])
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(first)
    assert (first["type"], first["kind"], first["label"], first["model"]["name"]) == (
        "new",
        "anomaly",
        "anomalous",
        "baseline",
    )
    assert first["anomaly"]["score"] > first["anomaly"]["threshold"]
    assert first["anomaly"]["unknown_condition"] is True and first["anomaly"]["classifier_label"] == "Normal"
    assert first["description"].startswith("unknown condition on this machine")
    score = agent.metrics.registry.get_sample_value("edge_agent_anomaly_score", {"sensor": SENSOR, "model": "baseline"})
    assert score is not None and np.isfinite(score)
