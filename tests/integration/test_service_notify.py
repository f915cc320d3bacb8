"""systemd readiness and watchdog, in-process: the agent on a replay source with the shipped model, a
real AF_UNIX notify socket bound by the test, and fakes only at seams we own (a model call that
blocks, a source whose thread dies)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import wait_until, without_noise_floor
from notify_socket import NotifyListener
from prometheus_client.parser import text_string_to_metric_families
from test_agent_replay import MODEL, free_port, replay_config

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App
from edge_agent.service.sdnotify import WATCHDOG_MIN_STALL_S, Notifier

WATCHDOG_USEC = 600_000  # a ping every 0.3 s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    notify = NotifyListener(tmp_path / "notify.sock")
    yield notify
    notify.close()


def start_agent(config_data: dict[str, object], listener: NotifyListener) -> tuple[App, threading.Thread]:
    notifier = Notifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    app = App(parse_config(config_data, base_dir=Path("/")), metrics=AgentMetrics(), notifier=notifier)
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, name="agent", daemon=True)
    runner.start()
    return app, runner


def stop_agent(app: App, runner: threading.Thread, listener: NotifyListener) -> None:
    app.stop_requested.set()
    runner.join(timeout=15)
    assert not runner.is_alive()
    stopping = listener.wait_for("STOPPING=1", 5)
    assert "WATCHDOG=1" not in listener.texts()[stopping:]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ready_only_after_the_model_is_loaded_and_everything_started(listener: NotifyListener, tmp_path: Path) -> None:
    port = free_port()
    model_path = tmp_path / "late" / "bearing.pt"  # not there yet: the agent waits and retries
    data = replay_config(["097"], speed=1.0, port=port, loop=True)
    data["models"] = [{"name": "bearing", "path": str(model_path)}]
    app, runner = start_agent(data, listener)
    try:
        listener.wait_for("STATUS=waiting for model files", 10)
        time.sleep(1.5)  # it keeps waiting: no READY=1, no pings while the model is missing
        assert not any("READY=1" in text or text == "WATCHDOG=1" for text in listener.texts()), listener.texts()
        assert port_open(port)  # /metrics is up early (model_load_errors_total is worth watching)
        model_path.parent.mkdir()
        shutil.copy(MODEL, model_path)
        ready = listener.wait_for("READY=1", 15)
        # at READY=1: models loaded and warm, the worker runs, the exporter listens, the source runs
        assert "bearing" in app.models and app.worker is not None and app.worker.alive()
        assert port_open(port)
        assert app.metrics.registry.get_sample_value("edge_agent_source_up", {"source": "replay"}) == 1.0
        texts = listener.texts()
        assert texts[ready] == "READY=1\nSTATUS=running: 1 sources, 1 models"
        before = texts[:ready]
        for step in ("metrics exporter", "models", "inference", "sinks", "sources"):
            assert f"STATUS=starting: {step}" in before, before
        first_ping = listener.wait_for("WATCHDOG=1", 5, after=ready)
        listener.wait_for("WATCHDOG=1", 5, after=first_ping + 1)
    finally:
        stop_agent(app, runner, listener)


def test_watchdog_pings_stop_while_inference_is_stuck(listener: NotifyListener) -> None:
    data = replay_config(["097"], speed=1.0, port=free_port(), loop=True)
    data["metrics"] = {"enabled": False}
    app, runner = start_agent(data, listener)
    release = threading.Event()
    try:
        ready = listener.wait_for("READY=1", 30)
        listener.wait_for("WATCHDOG=1", 5, after=ready)
        loaded = app.models["bearing"]

        def stuck_model(inputs: torch.Tensor) -> torch.Tensor:  # a model call that does not return
            release.wait(30)
            return torch.zeros(inputs.shape[0], len(loaded.labels))

        assert app.worker is not None
        app.worker.models = {
            **app.worker.models,
            "bearing": dataclasses.replace(loaded, module=stuck_model, meta=without_noise_floor(loaded.meta)),
        }
        stuck_at = time.monotonic()
        unhealthy = listener.wait_for("STATUS=unhealthy: the inference worker is stuck", 10)
        assert listener.messages[unhealthy][0] - stuck_at >= WATCHDOG_MIN_STALL_S - 0.5  # no hair trigger
        stopped_at = listener.messages[unhealthy][0]
        time.sleep(1.2)  # four ping intervals
        assert listener.pings_between(stopped_at, time.monotonic()) == 0
        assert not any(t == "WATCHDOG=1" for t in listener.texts()[unhealthy:])
        release.set()  # the worker turns again: pings come back (if systemd has not restarted us yet)
        recovered = listener.wait_for("STATUS=running", 5, after=unhealthy)
        listener.wait_for("WATCHDOG=1", 5, after=recovered)
    finally:
        release.set()
        stop_agent(app, runner, listener)


class DyingSource:
    """A source plugin (start/stop/alive) whose thread ends when told to, as a crashed source thread would."""

    name = "dying"

    def __init__(self) -> None:
        self.die = threading.Event()
        self._thread = threading.Thread(target=self.die.wait, name="source-dying", daemon=True)

    def start(self, emit: object) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.die.set()

    def alive(self) -> bool:
        return self._thread.is_alive()


def test_watchdog_pings_stop_when_a_source_thread_dies(listener: NotifyListener) -> None:
    data = replay_config(["097"], speed=1.0, port=free_port(), loop=True)
    data["metrics"] = {"enabled": False}
    app, runner = start_agent(data, listener)
    try:
        ready = listener.wait_for("READY=1", 30)
        listener.wait_for("WATCHDOG=1", 5, after=ready)
        source = DyingSource()
        source.start(None)
        app.sources.append(source)
        time.sleep(0.5)
        assert app.healthy()
        source.die.set()
        unhealthy = listener.wait_for("STATUS=unhealthy: source dying's thread died", 5)
        stopped_at = listener.messages[unhealthy][0]
        time.sleep(1.0)
        assert listener.pings_between(stopped_at, time.monotonic()) == 0
        assert not app.healthy()
    finally:
        stop_agent(app, runner, listener)


def test_a_taken_metrics_port_is_retried_and_the_reload_gauge_is_good_from_the_first_scrape(
    listener: NotifyListener, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 11: a taken /metrics port kept the whole agent from starting, and the message did not
    # name the address. The agent now runs without its exporter and keeps retrying it.
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    with caplog.at_level(logging.ERROR, logger="edge_agent.service.exporter"):
        app, runner = start_agent(replay_config(["097"], speed=1.0, port=port, loop=True), listener)
    try:
        listener.wait_for("STATUS=cannot serve /metrics", 10)  # bind failed: counted, retried, no crash
        listener.wait_for("READY=1", 30)  # monitoring runs without its exporter
        assert runner.is_alive()
        assert any(f"127.0.0.1:{port} (metrics.listen, metrics.port)" in r.getMessage() for r in caplog.records)
        # no reload ever happened: the configuration in use is the good one (no false alert)
        assert app.metrics.registry.get_sample_value("edge_agent_config_last_reload_successful") == 1.0
        processed = app.metrics.registry.get_sample_value
        wait_until(lambda: (processed("edge_agent_windows_processed_total", {"model": "bearing"}) or 0) > 0, 30)
        blocker.close()
        wait_until(lambda: port_open(port), 40, "the exporter retried once the port was free")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            samples = {
                s.name: s.value for f in text_string_to_metric_families(response.read().decode()) for s in f.samples
            }
        assert samples["edge_agent_exporter_errors_total"] >= 1
    finally:
        blocker.close()
        stop_agent(app, runner, listener)


def test_waiting_for_a_batch_to_fill_is_not_a_stall(listener: NotifyListener) -> None:
    data = replay_config(["097"], speed=1.0, port=free_port(), loop=True)
    data["metrics"] = {"enabled": False}
    data["inference"] = {"max_batch": 64, "max_wait_s": 3.0}  # a slow sensor: batches wait up to 3 s
    app, runner = start_agent(data, listener)
    try:
        ready = listener.wait_for("READY=1", 30)
        time.sleep(WATCHDOG_MIN_STALL_S + 2.5)
        assert not any(t.startswith("STATUS=unhealthy") for t in listener.texts()[ready:]), listener.texts()
        assert app.healthy(max_stall_s=WATCHDOG_MIN_STALL_S)
    finally:
        stop_agent(app, runner, listener)
