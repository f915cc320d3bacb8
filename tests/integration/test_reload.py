"""Reload (what SIGHUP does), in-process on a replay source with the shipped models: a new model file and
decision settings take effect while windows wait in the queue, none is lost; an invalid file is refused."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_until, without_noise_floor
from test_agent_replay import MODEL, REPO, free_port, replay_config

from edge_agent.configload import load_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App

FLOAT_MODEL = MODEL.with_name("drsn_cw_cwru_float.pt")


def toml(data: dict[str, Any]) -> str:
    """Just enough TOML for these configs (tables, arrays of tables, scalars, lists of strings)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for name, section in data.items():
        for table in section if isinstance(section, list) else [section]:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines += [f"{key} = {value(v)}" for key, v in table.items()]
    text = "\n".join(lines) + "\n"
    assert tomllib.loads(text) == data
    return text


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    """An App on config.toml in tmp_path (replay, 4x real time, no exporter); yields (app, metrics, data, path)."""
    data = replay_config(["097"] * 6, speed=4.0, port=free_port())  # about 48 windows in 1.2 s
    data["metrics"] = {"enabled": False}
    path = tmp_path / "config.toml"
    path.write_text(toml(data))
    metrics = AgentMetrics()
    app = App(load_config(path), metrics=metrics, read_config=lambda: load_config(path))
    yield app, metrics, data, path
    app.stop()


def test_a_new_model_and_decision_settings_apply_without_losing_queued_windows(agent: Any) -> None:
    app, metrics, data, path = agent
    release = threading.Event()
    app.start()
    try:
        loaded = app.models["bearing"]

        def stuck_model(inputs: torch.Tensor) -> torch.Tensor:  # holds the worker so windows pile up
            release.wait(30)
            return torch.zeros(inputs.shape[0], len(loaded.labels))

        app.worker.models = {
            "bearing": dataclasses.replace(loaded, module=stuck_model, meta=without_noise_floor(loaded.meta))
        }
        wait_until(lambda: len(app.worker.queue) >= 8, 20, "8 windows queued behind the stuck model")
        data["models"][0]["path"] = str(FLOAT_MODEL)
        data["decision"]["min_confidence"] = 0.9
        path.write_text(toml(data))
        assert app.reload()
        queued_at_reload = len(app.worker.queue)
        processed_at_reload = sample(metrics, "edge_agent_windows_processed_total", model="bearing")
        float_sha = app.models["bearing"].sha256
        assert float_sha != loaded.sha256
        assert app.worker.models["bearing"].sha256 == float_sha
        assert (
            sample(
                metrics, "edge_agent_model_info", model="bearing", sha256=float_sha, precision="float32", engine="none"
            )
            == 1
        )
        assert (
            sample(
                metrics,
                "edge_agent_model_info",
                model="bearing",
                sha256=loaded.sha256,
                precision="int8",
                engine="onednn",
            )
            == 0
        )
        assert app.decision.config.min_confidence == 0.9
        assert app.config.models[0].path == str(FLOAT_MODEL)
        release.set()
        wait_until(app.sources[0].finished.is_set, 30, "the replay to finish")
        wait_until(lambda: len(app.worker.queue) == 0, 10, "the queue to drain")
        time.sleep(0.2)  # the last batch's bookkeeping
    finally:
        release.set()
    emitted = sample(metrics, "edge_agent_windows_total", sensor="motor-1")
    processed = sample(metrics, "edge_agent_windows_processed_total", model="bearing")
    assert emitted > queued_at_reload >= 8
    assert processed == emitted  # every window cut, queued before or after the reload, went through a model
    assert processed - processed_at_reload >= queued_at_reload
    assert sample(metrics, "edge_agent_windows_dropped_total", reason="queue_full") == 0
    assert sample(metrics, "edge_agent_config_reloads_total") == 1
    assert sample(metrics, "edge_agent_config_reload_failures_total") == 0
    assert sample(metrics, "edge_agent_config_last_reload_successful") == 1


def test_an_invalid_file_keeps_the_running_configuration(agent: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, metrics, data, path = agent
    app.start()
    running, model = app.config, app.models["bearing"]
    data["decision"]["confirm_k"] = 9  # more than confirm_n (5)
    data["decision"]["min_confidence"] = 0.9
    path.write_text(toml(data))
    with caplog.at_level(logging.ERROR, logger="edge_agent.service.reload"):
        assert not app.reload()
    assert "reload refused, the running configuration is kept: decision.confirm_k: 9" in caplog.text
    assert app.config is running and app.models["bearing"] is model
    assert app.decision.config.min_confidence == running.decision.min_confidence
    assert sample(metrics, "edge_agent_config_reload_failures_total") == 1
    assert sample(metrics, "edge_agent_config_last_reload_successful") == 0
    # a model file that cannot be loaded is refused the same way, naming the key
    del data["decision"]["confirm_k"]
    data["models"][0]["path"] = str(REPO / "README.md")
    path.write_text(toml(data))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="edge_agent.service.reload"):
        assert not app.reload()
    assert "models[0].path:" in caplog.text
    assert sample(metrics, "edge_agent_config_reload_failures_total") == 2
    assert app.models["bearing"] is model and app.worker.alive()
    # a valid file again: applied, the gauge back at 1
    data["models"][0]["path"] = str(MODEL)
    path.write_text(toml(data))
    assert app.reload()
    assert app.decision.config.min_confidence == 0.9
    assert sample(metrics, "edge_agent_config_last_reload_successful") == 1
    assert sample(metrics, "edge_agent_config_reloads_total") == 3


def test_changes_that_need_a_restart_are_logged_and_flagged(agent: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, metrics, data, path = agent
    app.start()
    data["sources"][0]["speed"] = 2.0
    data["inference"] = {"queue_windows": 64}
    data["decision"]["cooldown_s"] = 7.0
    path.write_text(toml(data))
    with caplog.at_level(logging.WARNING, logger="edge_agent.service.reload"):
        assert app.reload()
    assert "inference.queue_windows, sources[0].speed changed; these apply only after a restart" in caplog.text
    assert app.config.sources[0].speed == 4.0 and app.config.inference.queue_windows == 512
    assert app.decision.config.cooldown_s == 7.0
    assert sample(metrics, "edge_agent_config_restart_required") == 1


def test_an_unexpected_reload_failure_is_counted_and_still_ends_the_reload_for_systemd(tmp_path: Path) -> None:
    """A bug during a reload must not leave the unit in "reloading": RELOADING=1 is always followed by READY=1."""
    from notify_socket import NotifyListener

    from edge_agent.configload import parse_config
    from edge_agent.service.sdnotify import Notifier

    def broken_read() -> Any:
        raise RuntimeError("a bug while reading")

    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        config = parse_config(replay_config(["097"], speed=1.0, port=free_port()), base_dir=Path("/"))
        metrics = AgentMetrics()
        app = App(config, metrics=metrics, notifier=Notifier({"NOTIFY_SOCKET": listener.path}), read_config=broken_read)
        assert app.reload() is False
        reloading = listener.wait_for("RELOADING=1", 5)
        listener.wait_for("READY=1", 5, after=reloading)
        assert sample(metrics, "edge_agent_config_reload_failures_total") == 1.0
        assert sample(metrics, "edge_agent_config_last_reload_successful") == 0.0
    finally:
        listener.close()
