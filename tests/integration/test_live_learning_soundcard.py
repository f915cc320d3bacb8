"""Learning on the gateway from the real virtual sound card: a tone played into the PulseAudio null sink is
learned live (a short recording, few optimiser steps) and the validated model replaces the running one
without a restart, every window cut being scored (see test_soundcard.py for the card itself)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from test_soundcard import RATE_HZ, play, sound_card, tone_wav  # noqa: F401 (sound_card: the fixture)

from edge_agent.configload import load_config
from edge_agent.service.app import App
from edge_agent.service.control import send_command

pytest.importorskip("sounddevice")
WINDOW, HOP = 512, 256


def first_model(out: Path, tmp_path: Path) -> None:
    """The anomaly model the agent starts with: learned from a file of another tone (the machine's old operating
    point), in full-scale units: it flags the card's 440 Hz tone."""
    import subprocess

    t = np.arange(20 * RATE_HZ) / RATE_HZ
    recording = tmp_path / "tone.npy"
    np.save(recording, (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32) + 1e-3 * np.random.randn(t.size))
    command = [sys.executable, "-m", "edge_agent", "learn", str(recording), f"--out={out}", "--quiet", "--steps=30"]
    command += [f"--sample-rate-hz={RATE_HZ}", f"--window-samples={WINDOW}", f"--hop-samples={HOP}"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def test_a_sound_card_sensor_learns_its_live_tone_and_the_model_swaps_in(
    sound_card: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    model = tmp_path / "state" / "learned" / "mic-1.pt"
    model.parent.mkdir(parents=True)
    first_model(model, tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[agent]
id = "learn-mic"
state_dir = "{tmp_path / "state"}"
[metrics]
enabled = false
[[models]]
name = "mic-anomaly"
path = "{model}"
[[sources]]
type = "soundcard"
name = "mic"
sensor = "mic-1"
device = "pulse"
sample_rate_hz = {RATE_HZ}
dtype = "int16"
chunk_samples = 1024
models = ["mic-anomaly"]
"""
    )
    player = play(tone_wav(tmp_path / "tone.wav", 440.0, 60.0, amplitude=0.3), sound_card)
    app = App(load_config(config))
    runner = threading.Thread(target=app.run, kwargs={"exit_when_finished": False}, name="agent", daemon=True)
    runner.start()
    get = app.metrics.registry.get_sample_value
    try:
        wait_until(lambda: (get("edge_agent_windows_total", {"sensor": "mic-1"}) or 0) > 20, 30.0, "windows")
        old_sha = app.models["mic-anomaly"].sha256
        request = {"command": "learn", "sensor": "mic-1", "duration_s": 6, "steps": 30}
        reply = send_command(tmp_path / "state", request)
        assert reply["ok"], reply
        run = app.learning.manager.runs["mic-1"]
        wait_until(lambda: run.state in ("idle", "failed"), 120.0, "the first learning run to end")
        # the old model flags the new operating point: refused without --force
        assert run.state == "failed" and "anomaly model flagged" in run.message, run.message
        reply = send_command(tmp_path / "state", {**request, "force": True})
        assert reply["ok"], reply
        run = app.learning.manager.runs["mic-1"]
        wait_until(lambda: run.state in ("idle", "failed"), 120.0, "the learning run to end")
        assert run.state == "idle" and run.message.startswith("learned"), run.message
        assert "anomalous during the recording" in run.warnings[0]
        assert app.models["mic-anomaly"].sha256 != old_sha
        cut = get("edge_agent_windows_total", {"sensor": "mic-1"}) or 0
        wait_until(lambda: (get("edge_agent_windows_total", {"sensor": "mic-1"}) or 0) > cut + 10, 20.0, "more windows")
    finally:
        app.stop_requested.set()
        runner.join(timeout=20.0)
        player.kill()
        player.wait()
    cut = get("edge_agent_windows_total", {"sensor": "mic-1"}) or 0
    assert get("edge_agent_windows_processed_total", {"model": "mic-anomaly"}) == cut  # every window scored
    assert (get("edge_agent_windows_dropped_total", {"reason": "queue_full"}) or 0) == 0
