"""Start-up: a missing model is retried (never a crash), a model that does not fit the config is named."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent.configload import parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.service.app import App
from edge_agent.sources.replay import ReplaySection, read_recording

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"


def _config(model_path: Path, source: dict[str, object]) -> dict[str, object]:
    return {
        "agent": {"id": "start-test"},
        "metrics": {"enabled": False},
        "models": [{"name": "bearing", "path": str(model_path)}],
        "sources": [source],
    }


REPLAY = {
    "type": "replay",
    "name": "replay",
    "sensor": "m1",
    "path": "${EDGE_AGENT_DATA}/cwru/cwru_12k_de_dev.npz",
    "records": ["097"],
    "start_fraction": 0.9,
    "speed": 0.0,
    "models": ["bearing"],
}


def _sample(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_missing_model_is_retried_and_counted_until_it_appears(tmp_path: Path) -> None:
    late_model = tmp_path / "late.pt"
    metrics = AgentMetrics()
    app = App(parse_config(_config(late_model, REPLAY), base_dir=tmp_path), metrics=metrics)
    runner = threading.Thread(target=app.run, name="agent")
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while _sample(metrics, "edge_agent_model_load_errors_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sample(metrics, "edge_agent_model_load_errors_total") >= 1
        assert runner.is_alive()  # waiting, not crashed
        shutil.copy(MODEL, late_model)
        runner.join(timeout=30)  # loads on the next retry, replays, exits when the replay ends
        assert not runner.is_alive()
        assert _sample(metrics, "edge_agent_windows_processed_total", model="bearing") > 0
    finally:
        app.stop_requested.set()
        runner.join(timeout=10)


def test_stop_while_waiting_for_a_model_exits_cleanly(tmp_path: Path) -> None:
    app = App(parse_config(_config(tmp_path / "never.pt", REPLAY), base_dir=tmp_path), metrics=AgentMetrics())
    threading.Timer(0.3, app.stop_requested.set).start()
    assert app.run() == 0


def test_channel_count_that_does_not_fit_the_model_names_both_values(tmp_path: Path) -> None:
    source = {"type": "mqtt", "name": "plant", "topic": "p/+/v", "format": "f32le", "sample_rate_hz": 12000.0}
    source |= {"channels": 3, "models": ["bearing"]}
    config = _config(MODEL, source) | {"mqtt": {"enabled": True, "port": 1}}
    app = App(parse_config(config, base_dir=tmp_path), metrics=AgentMetrics())
    with pytest.raises(ValueError, match=r"sources\[0\]\.channels = 3, but model 'bearing' .* takes 1 channel"):
        app.start()


def _section(path: Path, **extra: object) -> ReplaySection:
    return ReplaySection(type="replay", name="r", models=("m",), sensor="s", path=str(path), **extra)


def test_replay_reads_wav_npy_and_csv(tmp_path: Path) -> None:
    import wave

    stereo = (np.arange(200, dtype=np.int16).reshape(100, 2) * 10).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(stereo.tobytes())
    (signals,), rate_hz = read_recording(_section(tmp_path / "a.wav"))
    assert rate_hz == 16_000 and signals.shape == (2, 100)
    np.testing.assert_allclose(signals[:, 1], stereo[1] / 32768.0)

    columns = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    np.save(tmp_path / "b.npy", columns)
    (signals,), rate_hz = read_recording(_section(tmp_path / "b.npy", sample_rate_hz=100.0))
    assert rate_hz == 100.0 and signals.shape == (3, 50)
    np.testing.assert_allclose(signals.T, columns)

    np.savetxt(tmp_path / "c.csv", columns, delimiter=",")
    (signals,), _ = read_recording(_section(tmp_path / "c.csv", sample_rate_hz=100.0, start_fraction=0.5))
    np.testing.assert_allclose(signals.T, columns[25:], rtol=1e-6)


def test_replay_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.wav does not exist"):
        read_recording(_section(tmp_path / "nope.wav"))
