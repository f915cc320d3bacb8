"""The agent on its replay source with the shipped model: alerts, and /metrics linted by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, without_noise_floor

from edge_agent.common.paths import data_root
from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
CWRU = "${EDGE_AGENT_DATA}/cwru/cwru_12k_de_dev.npz"


def replay_config(records: list[str], *, speed: float, port: int, loop: bool = False) -> dict[str, object]:
    return {
        "agent": {"id": "test-agent"},
        "metrics": {"enabled": True, "listen": "127.0.0.1", "port": port},
        "decision": {"hold_off_s": 0.5, "cooldown_s": 0.0},
        "models": [{"name": "bearing", "path": str(MODEL)}],
        "sources": [
            {
                "type": "replay",
                "name": "replay",
                "sensor": "motor-1",
                "path": CWRU,
                "records": records,
                "start_fraction": 0.8,
                "speed": speed,
                "loop": loop,
                "models": ["bearing"],
            }
        ],
    }


def test_fault_record_raises_an_alert_with_its_label() -> None:
    lines: list[str] = []
    config = parse_config(replay_config(["097", "105"], speed=0.0, port=free_port()), base_dir=REPO)
    app = App(config, metrics=AgentMetrics(), echo=lines.append)
    timer = threading.Timer(60.0, app.stop_requested.set)  # bound the test even if the run never ends
    timer.start()
    try:
        assert app.run() == 0
    finally:
        timer.cancel()
    new = [line for line in lines if line.startswith("NEW")]
    assert len(new) == 1, lines
    assert "fault motor-1: IR007" in new[0]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by `make test`")
def test_metrics_scraped_during_a_run_pass_promtool() -> None:
    port = free_port()
    config = parse_config(replay_config(["097", "105"], speed=4.0, port=port, loop=True), base_dir=REPO)
    app = App(config, metrics=AgentMetrics())
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, name="agent")
    runner.start()
    try:
        exposition = b""
        for _ in range(100):  # until a few windows went through the model
            threading.Event().wait(0.1)
            try:
                exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            except OSError:
                continue
            if re.search(rb'edge_agent_windows_processed_total\{model="bearing"\} [1-9]', exposition):
                break
    finally:
        app.stop_requested.set()
        runner.join(timeout=10)
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    text = exposition.decode()
    for name in (
        "edge_agent_build_info",
        "edge_agent_model_info",
        "edge_agent_samples_received_total",
        "edge_agent_inference_duration_seconds_bucket",
        "edge_agent_end_to_end_latency_seconds_bucket",
        "edge_agent_class_probability",
        'edge_agent_source_up{source="replay"} 1.0',
        'edge_agent_last_sample_timestamp_seconds{sensor="motor-1"}',
    ):
        assert name in text, name


def test_one_sensor_runs_two_models() -> None:
    data = replay_config(["097", "105"], speed=0.0, port=free_port())
    data["metrics"] = {"enabled": False}
    data["models"] = [
        {"name": "bearing", "path": str(MODEL)},
        {"name": "bearing_float", "path": str(MODEL.with_name("drsn_cw_cwru_float.pt"))},
    ]
    data["sources"][0]["models"] = ["bearing", "bearing_float"]
    metrics = AgentMetrics()
    app = App(parse_config(data, base_dir=REPO), metrics=metrics)
    timer = threading.Timer(60.0, app.stop_requested.set)
    timer.start()
    try:
        assert app.run() == 0
    finally:
        timer.cancel()
    processed = {
        model: metrics.registry.get_sample_value("edge_agent_windows_processed_total", {"model": model})
        for model in ("bearing", "bearing_float")
    }
    assert processed["bearing"] == processed["bearing_float"] > 0, processed
    # the sensor's samples are counted once, not once per model: whole 1024-sample chunks of each tail
    with np.load(data_root() / "cwru" / "cwru_12k_de_dev.npz") as pack:
        tails = [pack[key].size - round(0.8 * pack[key].size) for key in ("097", "105")]
    expected = sum(tail // 1024 * 1024 for tail in tails)
    assert metrics.registry.get_sample_value("edge_agent_samples_received_total", {"sensor": "motor-1"}) == expected


def test_healthy_while_running_and_not_when_inference_is_stuck() -> None:
    import dataclasses

    import torch

    config = parse_config(replay_config(["097"], speed=1.0, port=free_port(), loop=True), base_dir=REPO)
    app = App(config, metrics=AgentMetrics())
    app.start()
    release = threading.Event()
    try:
        assert app.healthy(max_stall_s=0.5)
        loaded = app.models["bearing"]

        def stuck_model(inputs: torch.Tensor) -> torch.Tensor:  # a model call that never returns
            release.wait(30)
            return torch.zeros(inputs.shape[0], len(loaded.labels))

        app.models["bearing"] = dataclasses.replace(loaded, module=stuck_model, meta=without_noise_floor(loaded.meta))
        deadline = time.monotonic() + 10
        while app.healthy(max_stall_s=0.5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not app.healthy(max_stall_s=0.5)
    finally:
        release.set()
        app.stop()
    assert not app.healthy()  # the worker thread is gone
