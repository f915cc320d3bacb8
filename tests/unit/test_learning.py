"""Learning on the gateway: recorder bounds, the run state machine, failed runs, the control socket."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.metrics.learning import LearningMetrics
from edge_agent.pipeline.recorder import WindowRecorder
from edge_agent.service.control import ControlServer, parse_duration_s, send_command
from edge_agent.service.learn_state import LearningError, LearningRun, LearnRequest, LearnTarget
from edge_agent.service.learning import LearningManager
from edge_agent.types import Prediction, Window

RATE_HZ = 1000.0
WINDOW, HOP = 100, 50
TARGET = LearnTarget("src", "anomaly", RATE_HZ, 1, WINDOW, HOP, install_model="anomaly")


def windows(signal: np.ndarray, sensor: str = "pump", *, first: int = 0) -> list[Window]:
    """The windows the agent cuts from ``signal`` (channels, n), hop HOP."""
    out = []
    for start in range(0, signal.shape[1] - WINDOW + 1, HOP):
        t0 = (first + start) / RATE_HZ
        out.append(Window(sensor, t0, t0 + WINDOW / RATE_HZ, signal[:, start : start + WINDOW].astype(np.float32)))
    return out


def test_recorder_keeps_the_stream_once_and_counts(tmp_path: Path) -> None:
    signal = np.arange(1000, dtype=np.float32)[None, :]
    recorder = WindowRecorder(tmp_path, channels=1, hop_samples=HOP, sample_rate_hz=RATE_HZ, max_bytes=1 << 20)
    for window in windows(signal):
        assert recorder.add(window)
    assert recorder.counts.windows == 19 and recorder.counts.samples == 1000 and recorder.counts.gaps == 0
    assert recorder.seconds == pytest.approx(1.0)
    data = np.load(recorder.finish())
    np.testing.assert_array_equal(data, signal)  # the overlap is written once


def test_recorder_stops_at_its_byte_bound_and_counts_refusals(tmp_path: Path) -> None:
    signal = np.ones((2, 1000), dtype=np.float32)
    max_bytes = 2 * 4 * 300  # 300 samples of 2 channels
    recorder = WindowRecorder(tmp_path, channels=2, hop_samples=HOP, sample_rate_hz=RATE_HZ, max_bytes=max_bytes)
    kept = [recorder.add(w) for w in windows(signal)]
    assert recorder.counts.bytes <= max_bytes and recorder.counts.samples == 300
    assert kept.count(True) == 5 and recorder.counts.refused == len(kept) - 5 and recorder.full
    assert (tmp_path / "recording.f32").stat().st_size == recorder.counts.bytes


def test_recorder_counts_a_gap_and_keeps_the_window_whole(tmp_path: Path) -> None:
    recorder = WindowRecorder(tmp_path, channels=1, hop_samples=HOP, sample_rate_hz=RATE_HZ, max_bytes=1 << 20)
    signal = np.zeros((1, 300), dtype=np.float32)
    for window in windows(signal) + windows(signal, first=10_000):
        recorder.add(window)
    assert recorder.counts.gaps == 1 and recorder.counts.samples == 600


def test_a_run_moves_only_along_its_transitions() -> None:
    run = LearningRun(LearnRequest("pump", 10.0), TARGET, 0.0)
    for state in ("recording", "training", "validating", "idle", "recording", "failed", "recording"):
        run.move(state)
    with pytest.raises(LearningError, match="recording -> idle is not a transition"):
        run.move("idle")
    with pytest.raises(LearningError, match="recording -> validating"):
        run.move("validating")


def manager(tmp_path: Path, trainer: list[str], installed: list[str]) -> LearningManager:
    return LearningManager(
        tmp_path,
        LearningMetrics(CollectorRegistry()),
        targets=lambda sensor: TARGET if sensor == "pump" else None,
        install=lambda name, loaded: installed.append(name),
        trainer=trainer,
    )


def record(learning: LearningManager, seconds: float, now_s: float) -> None:
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    for window in windows(np.sin(2 * np.pi * 50 * t)[None, :]):
        learning.tap("anomaly", window)
    learning.runs["pump"].last_window_s = now_s


def wait_outcome(learning: LearningManager, now_s: float, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while learning.runs["pump"].outcome is None and time.monotonic() < deadline:
        time.sleep(0.05)
    learning.poll(now_s)


def test_refusals_say_why(tmp_path: Path) -> None:
    learning = manager(tmp_path, [sys.executable, "-c", "pass"], [])
    with pytest.raises(LearningError, match="no running source has a sensor 'fan'"):
        learning.start(LearnRequest("fan", 10.0))
    with pytest.raises(LearningError, match="duration"):
        learning.start(LearnRequest("pump", 0.0))
    learning.start(LearnRequest("pump", 10.0), now_s=0.0)
    with pytest.raises(LearningError, match="already learning"):
        learning.start(LearnRequest("pump", 10.0))


def test_a_stream_that_stops_fails_the_run(tmp_path: Path) -> None:
    installed: list[str] = []
    learning = manager(tmp_path, [sys.executable, "-c", "pass"], installed)
    learning.start(LearnRequest("pump", 10.0, stall_s=5.0), now_s=0.0)
    record(learning, 2.0, now_s=1.0)
    learning.poll(now_s=7.0)
    run = learning.runs["pump"]
    assert run.state == "failed" and "the stream stopped" in run.message and not installed
    assert not (tmp_path / "learning" / "pump" / "recording.f32").exists()  # the recording is discarded


def test_too_little_data_fails_the_run(tmp_path: Path) -> None:
    learning = manager(tmp_path, [sys.executable, "-c", "pass"], [])
    learning.start(LearnRequest("pump", 10.0, stall_s=100.0), now_s=0.0)
    record(learning, 3.0, now_s=10.0)
    learning.poll(now_s=10.0)
    assert learning.runs["pump"].state == "failed" and "too little data: 3.0 s" in learning.runs["pump"].message


def test_classifier_faults_during_the_recording_refuse_the_baseline(tmp_path: Path) -> None:
    learning = manager(tmp_path, [sys.executable, "-c", "pass"], [])
    learning.start(LearnRequest("pump", 2.0), now_s=0.0)
    record(learning, 2.0, now_s=2.0)
    window = windows(np.zeros((1, WINDOW)))[0]
    for label in ("IR", "IR", "Normal"):
        learning.observe(Prediction("pump", "cls", window, {label: 0.95}, label, 0.95, 0.0))
    learning.poll(now_s=2.0)
    run = learning.runs["pump"]
    assert run.state == "failed" and "classifier reported a fault in 2 of 3 windows" in run.message


@pytest.mark.parametrize(
    ("code", "why"),
    [("import sys; sys.exit(3)", "exited with code 3"), ("import os; os.kill(os.getpid(), 9)", "killed by signal 9")],
)
def test_a_trainer_that_fails_or_dies_leaves_the_old_model(tmp_path: Path, code: str, why: str) -> None:
    installed: list[str] = []
    learned = tmp_path / "learned" / "pump.pt"
    learned.parent.mkdir()
    learned.write_bytes(b"the old learned model")
    learning = manager(tmp_path, [sys.executable, "-c", code], installed)
    learning.start(LearnRequest("pump", 2.0), now_s=0.0)
    record(learning, 2.0, now_s=2.0)
    learning.poll(now_s=2.0)
    assert learning.runs["pump"].state == "training"
    wait_outcome(learning, 2.0)
    run = learning.runs["pump"]
    assert run.state == "failed" and why in run.message and not installed
    assert learned.read_bytes() == b"the old learned model"
    assert learning.metrics.runs.labels("pump", "failed")._value.get() == 1


def test_a_file_that_is_not_a_model_does_not_validate(tmp_path: Path) -> None:
    code = "import sys; open(sys.argv[2].split('=', 1)[1], 'w').write('x'); print('{}')"
    learning = manager(tmp_path, [sys.executable, "-c", code], [])
    learning.start(LearnRequest("pump", 2.0), now_s=0.0)
    record(learning, 2.0, now_s=2.0)
    learning.poll(now_s=2.0)
    wait_outcome(learning, 2.0)
    assert learning.runs["pump"].state == "failed" and "did not validate" in learning.runs["pump"].message


def test_parse_duration() -> None:
    assert parse_duration_s("10m") == 600 and parse_duration_s("10 s") == 10 and parse_duration_s("1.5h") == 5400
    with pytest.raises(ValueError, match="not a number"):
        parse_duration_s("ten minutes")


def test_control_socket_answers_the_agent_user_and_refuses_others(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    server = ControlServer(tmp_path, lambda request: seen.append(request) or {"ok": True, "message": "started"})
    server.start()
    try:
        assert (server.path.stat().st_mode & 0o777) == 0o600
        reply = send_command(tmp_path, {"command": "learn", "sensor": "pump", "duration_s": 10})
        assert reply == {"ok": True, "message": "started"} and seen[0]["sensor"] == "pump"
        server.allowed_uids = frozenset({12345})  # the caller is no longer the agent's user
        reply = send_command(tmp_path, {"command": "learn", "sensor": "pump", "duration_s": 10})
        assert not reply["ok"] and "permission denied" in str(reply["message"]) and len(seen) == 1
    finally:
        server.stop()
    assert not server.path.exists()


def test_an_anomaly_model_flagging_most_of_the_recording_refuses_the_baseline(tmp_path: Path) -> None:
    learning = manager(tmp_path, [sys.executable, "-c", "pass"], [])
    learning.start(LearnRequest("pump", 2.0), now_s=0.0)
    record(learning, 2.0, now_s=2.0)
    window = windows(np.zeros((1, WINDOW)))[0]
    for score in (3.0, 3.0, 0.5):
        learning.observe(Prediction("pump", "anomaly", window, {}, "anomaly", 1.0, 0.0, score=score, threshold=1.0))
    learning.poll(now_s=2.0)
    run = learning.runs["pump"]
    assert run.state == "failed" and "anomaly model flagged 2 of 3 windows" in run.message
    learning.start(LearnRequest("pump", 2.0, force=True), now_s=10.0)  # the operator says the machine changed
    record(learning, 2.0, now_s=12.0)
    for score in (3.0, 3.0, 0.5):
        learning.observe(Prediction("pump", "anomaly", window, {}, "anomaly", 1.0, 0.0, score=score, threshold=1.0))
    learning.poll(now_s=12.0)
    run = learning.runs["pump"]
    assert run.state == "training" and "2 of 3 were anomalous" in run.warnings[0]
    learning.stop()


def test_the_learn_table_is_read_checked_and_documented(tmp_path: Path) -> None:
    import dataclasses
    import re

    from edge_agent.config.learn import LearnSection
    from edge_agent.configload import ConfigError, parse_config

    base = {
        "models": [{"name": "m", "path": str(tmp_path / "m.pt")}],
        "sources": [
            {"type": "replay", "name": "r", "sensor": "pump", "path": str(tmp_path / "x.wav"), "models": ["m"]}
        ],
    }
    base["sources"][0]["learn"] = {"at_start": True, "duration_s": 30.0, "model": "sparse", "sensors": ["pump"]}
    learn = parse_config(base, base_dir=tmp_path).sources[0].learn
    assert learn == LearnSection(at_start=True, sensors=("pump",), duration_s=30.0, model="sparse")
    base["sources"][0]["learn"] = {"duration_s": 0, "model": "pca", "sensors": ["a/b"], "colour": 1}
    with pytest.raises(ConfigError) as error:
        parse_config(base, base_dir=tmp_path)
    text = "\n".join(error.value.errors)
    for key in ("sources[0].learn.duration_s", "sources[0].learn.model", "sources[0].learn.sensors[0]", "colour"):
        assert key in text
    shipped = (Path(__file__).resolve().parents[2] / "config.toml").read_text()
    for spec in dataclasses.fields(LearnSection):
        assert re.search(rf"^#? ?{spec.name} += ", shipped, re.MULTILINE), spec.name


def test_a_request_means_the_source_that_names_the_sensor_and_takes_its_learn_defaults(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edge_agent.config import AgentConfig, ModelSection
    from edge_agent.config.learn import LearnSection
    from edge_agent.config.sections import AgentSection
    from edge_agent.metrics import AgentMetrics
    from edge_agent.pipeline.router import SensorSeries
    from edge_agent.service.learn_control import GatewayLearning
    from edge_agent.sources.replay import ReplaySection

    def replay(name: str, learn: LearnSection | None = None) -> ReplaySection:
        return ReplaySection(type="replay", name=name, models=("m",), sensor=name, path="x.wav", learn=learn)

    config = AgentConfig(
        agent=AgentSection(state_dir=str(tmp_path)),
        models=(ModelSection("m", "m.pt"),),
        sources=(replay("a"), replay("b", LearnSection(duration_s=42.0, steps=7))),
    )
    registry = CollectorRegistry()
    series = SensorSeries(AgentMetrics(registry))
    series.add("a", ("m",))
    series.add("b", ("m",))
    learning = GatewayLearning(config, registry, series, lambda plan: None)
    meta = SimpleNamespace(
        kind="classifier", sample_rate_hz=12_000.0, channels=1, window_samples=2048, hop_samples=1024
    )
    learning.configure({"m": SimpleNamespace(meta=meta)}, config)  # type: ignore[dict-item]
    assert learning.source_of("b") is config.sources[1]  # not the first source, which shares model m
    reply = learning.handle({"command": "learn", "sensor": "b"})
    assert reply["ok"], reply
    run = learning.manager.runs["b"]
    assert (run.request.duration_s, run.request.steps, run.target.source) == (42.0, 7, "b")
    assert run.target.install_model is None  # no anomaly model on b: the learned file is kept, not loaded
    learning.manager.stop()


def test_a_second_agent_does_not_take_over_a_live_control_socket(tmp_path: Path) -> None:
    first = ControlServer(tmp_path, lambda request: {"ok": True, "message": "first"})
    first.start()
    try:
        with pytest.raises(OSError, match="another agent answers"):
            ControlServer(tmp_path, lambda request: {"ok": True, "message": "second"}).start()
        assert send_command(tmp_path, {"command": "status"})["message"] == "first"
    finally:
        first.stop()
    stale = ControlServer(tmp_path, lambda request: {"ok": True, "message": "after"})
    import socket

    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket file no process listens on
    left.bind(str(tmp_path / "control.sock"))
    left.close()
    stale.start()
    try:
        assert send_command(tmp_path, {"command": "status"})["message"] == "after"
    finally:
        stale.stop()


def test_edge_agent_learn_sensor_asks_the_running_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.cli import main

    assert main(["learn", "--sensor", "pump", "--duration", "2m", "--state-dir", str(tmp_path)]) == 1
    assert "no agent answers" in capsys.readouterr().out
    seen: list[dict[str, object]] = []
    server = ControlServer(tmp_path, lambda request: seen.append(request) or {"ok": True, "message": "recording"})
    server.start()
    try:
        command = ["learn", "--sensor", "pump", "--duration", "2m", "--state-dir", str(tmp_path), "--model", "sparse"]
        assert main(command) == 0
        assert capsys.readouterr().out == "edge-agent learn: recording\n"
        assert seen[0]["duration_s"] == 120.0 and seen[0]["network"] == "sparse" and seen[0]["sensor"] == "pump"
        assert seen[0]["force"] is False
        server.handler = lambda request: {"ok": False, "message": "sensor pump is already learning (training)"}
        assert main(["learn", "--sensor", "pump", "--state-dir", str(tmp_path)]) == 1
    finally:
        server.stop()
    assert main(["learn"]) == 2  # neither files nor a sensor: the error says what is needed
    assert "needs INPUT... and --out (or --sensor NAME" in capsys.readouterr().err
