"""Issue 12: a seeded fuzz corpus of hostile payloads against MqttSource + router, in process.

Each message goes through the source's real message callback (``paho.MQTTMessage`` objects, no
broker) into the router. Asserted: nothing escapes as an exception, every payload is counted
(rejected under a reason or turned into a chunk), and a valid sensor interleaved with the
corpus keeps producing windows.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, parse_meta
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.sources.mqtt import MqttSource
from edge_agent.types import Chunk, Window

SEED = 12
PAYLOADS = 10_000
RATE_HZ = 12_000.0
WINDOW = 2048
HOP = 1024
PROBE_EVERY = 20
PROBE_SAMPLES = 1024
BIG_AT = (1_001, 4_003, 7_005)  # where the 4 MiB bodies go
ROUTER_REASONS = ("bad_ts", "too_many_samples", "wrong_rate")  # the router's bounds (pipeline/ingress.py)


def _model() -> LoadedModel:
    meta = parse_meta(
        {
            "schema": 1,
            "name": "bearing",
            "kind": "classifier",
            "labels": ["Normal", "IR007"],
            "sample_rate_hz": RATE_HZ,
            "window_samples": WINDOW,
            "hop_samples": HOP,
            "channels": 1,
            "input_units": "g",
            "normalisation": {"applied": "inside the graph"},
            "precision": "float32",
            "quantized_engine": None,
        },
        source="bearing.pt",
    )
    return LoadedModel(path=Path("bearing.pt"), module=None, meta=meta, sha256="b" * 64)  # type: ignore[arg-type]


def _hostile(rng: random.Random, now: float) -> tuple[str, bytes]:
    """One hostile (or odd but valid) message: (sensor topic level, payload)."""
    sensor = rng.choice([f"s{rng.randrange(40)}", "pümpe-ü", "a" * 65_515, "x+y", "", "é" * 30, "../etc"])
    kind = rng.randrange(14)
    samples = [rng.uniform(-1, 1) for _ in range(rng.choice([1, 16, 700, 1024]))]
    doc: dict[str, Any] = {"sample_rate_hz": RATE_HZ, "samples": samples, "ts": now}
    if kind == 0:
        return sensor, rng.randbytes(rng.randrange(1, 2000))
    if kind == 1:
        return sensor, json.dumps(doc).encode()[: rng.randrange(1, 200)]  # truncated JSON
    if kind == 2:
        doc["samples"] = [*samples[:-1], rng.choice([float("nan"), float("inf"), -float("inf")])]
    elif kind == 3:
        doc["sample_rate_hz"] = rng.choice([11_999, 1e-7, 0, -5, 1e308, "12000", 11_988.28, 6_000, 24_000, 48_000, 3e3])
    elif kind == 4:
        doc["samples"] = [samples, samples][: rng.choice([2, 2, 1])] * rng.choice([1, 2])  # channel counts
    elif kind == 5:
        return sensor, b"[" * rng.choice([100, 10_000, 100_000]) + b"]" * rng.randrange(3)  # deep nesting
    elif kind == 6:
        doc["ts"] = rng.choice([1e12, -1e12, 1e308, -1.0, now + 1e9, now - 1e9, "now", None, 10**400])
    elif kind == 7:
        doc["seq"] = rng.choice([-1, 1.5, "7", 2**80, True])
    elif kind == 8:
        doc["samples"] = [rng.choice([True, 1, "1", None, {}, [1]]) for _ in range(8)]
    elif kind == 9:
        return sensor, json.dumps(rng.choice([[], "x", 7, None, {"samples": {}}])).encode()
    elif kind == 10:
        return sensor, b""
    elif kind == 11:
        doc["samples"] = []
    return sensor, json.dumps(doc, allow_nan=True).encode()


def _big(n: int) -> bytes:
    """4 MiB bodies: valid ones just under the size limit (even ``n``), one over it (odd ``n``)."""
    body = b'{"sample_rate_hz": 12000, "samples": [' + b",".join([b"0.1"] * 1_040_000) + b"]}"
    return body if n % 2 == 0 else body + b" " * (5 * 1024 * 1024 - len(body))


def _message(sensor: str, payload: bytes) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=f"plant/{sensor}/vibration".encode())
    msg.payload = payload
    return msg


def test_ten_thousand_hostile_payloads_crash_nothing_are_all_counted_and_the_probe_keeps_windowing() -> None:
    metrics = AgentMetrics()
    cfg = parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/bearing.pt"}],
            "sources": [
                {
                    "type": "mqtt",
                    "name": "plant",
                    "topic": "plant/+/vibration",
                    "sensor_level": 1,
                    "models": ["bearing"],
                }
            ],
        },
        base_dir=Path("/"),
    )
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure({"bearing": _model()}, cfg)
    windows: dict[str, int] = {}

    def submit(_model_name: str, window: Window) -> None:
        windows[window.sensor] = windows.get(window.sensor, 0) + 1

    router = path.router(cfg.sources[0], submit, real_time=True)
    source = MqttSource(cfg.sources[0], cfg.mqtt, password=None, agent_id="fuzz", metrics=metrics, streams=router)
    emitted = 0

    def emit(chunk: Chunk) -> None:
        nonlocal emitted
        emitted += 1
        router(chunk)

    source._emit = emit  # what start() sets, without connecting to a broker
    rng = random.Random(SEED)
    now = time.time()
    probe_t_s, probe_sent = now, 0
    signal_g = np.sin(np.arange(PROBE_SAMPLES) * 0.3)
    for n in range(PAYLOADS):
        if n % PROBE_EVERY == 0:
            doc = {"seq": probe_sent, "ts": probe_t_s, "sample_rate_hz": RATE_HZ, "samples": signal_g.tolist()}
            source._on_message(None, None, _message("probe", json.dumps(doc).encode()))
            probe_t_s += PROBE_SAMPLES / RATE_HZ
            probe_sent += 1
        elif n in BIG_AT:
            source._on_message(None, None, _message(f"big{n}", _big(BIG_AT.index(n))))
        else:
            source._on_message(None, None, _message(*_hostile(rng, now)))

    assert source.internal_errors == 0  # nothing escaped (was: ZeroDivisionError for 1e-7 Hz)
    assert metrics.registry.get_sample_value("edge_agent_messages_received_total", {"source": "plant"}) == PAYLOADS
    errors = {
        sample.labels["reason"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "edge_agent_payload_errors_total" and sample.labels["source"] == "plant"
    }
    # no rate is configured: the parser takes any positive rate, every wrong_rate is the router's
    parse_rejected = sum(v for reason, v in errors.items() if reason not in ROUTER_REASONS)
    assert parse_rejected + emitted == PAYLOADS  # every payload: a reason, or a chunk
    for reason in ("not_json", "bad_field", "non_finite", "wrong_channels", "wrong_rate", "bad_ts", "bad_sensor_id"):
        assert errors.get(reason, 0) > 0, reason
    assert (errors.get("too_many_samples", 0), errors["too_large"]) == (2, 1)
    # the probe: every chunk after the first window's worth yields one window (hop = chunk length)
    assert windows.get("probe", 0) >= probe_sent - WINDOW // PROBE_SAMPLES
    probe_errors = {"sensor": "probe", "reason": "bad_ts"}
    assert metrics.registry.get_sample_value("edge_agent_sensor_payload_errors_total", probe_errors) == 0
