"""The soundcard source on a real capture device: a PulseAudio null sink recorded through ALSA's pulse plugin.

``make test`` starts the virtual sound card (../shared/tools/virtual-soundcard.sh) and exports the
two variables that point PortAudio at it; run alone, the fixture starts it itself. Tones are
played into the sink with ``paplay``. No test asserts on the wall-clock time of a capture
(ENVIRONMENT.md): every wait is a bounded poll.

The audio model does not exist yet, so the end-to-end test builds a stand-in TorchScript model
(a seam we own): it says ``whine`` when a window's energy is mostly above 1.5 kHz, else ``healthy``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import SourceSection
from edge_agent.metrics import AgentMetrics
from edge_agent.sources.soundcard import SoundcardSource

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO.parent / "shared" / "tools" / "virtual-soundcard.sh"
SCHEMA = json.loads((REPO / "docs" / "alert.schema.json").read_text())
RATE_HZ = 16_000
WINDOW, HOP = 2048, 1024
CUTOFF_HZ = 1500.0
AGENT = "sound-e2e"
PREFIX = f"edge-agent/{AGENT}"
SENSOR = "pump-mic"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


# --- the virtual sound card -------------------------------------------------------------------


def _pulse_env(audio_dir: Path) -> dict[str, str]:
    runtime = audio_dir / "runtime"
    return {"XDG_RUNTIME_DIR": str(runtime), "PULSE_SERVER": f"unix:{runtime}/pulse/native"}


def _answers(env: dict[str, str]) -> bool:
    if shutil.which("pactl") is None:
        return False
    probe = subprocess.run(["pactl", "info"], env={**os.environ, **env}, capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _start_card(audio_dir: Path) -> dict[str, str]:
    """Run the shared script (installs what is missing, starts PulseAudio and a keep-alive stream)."""
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "AUDIO_DIR": str(audio_dir)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{SCRIPT} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return _pulse_env(audio_dir)


def _stop_card(audio_dir: Path) -> None:
    """End the PulseAudio server and keep-alive stream that ``_start_card`` started (by their recorded PIDs)."""
    for name in ("keepalive.pid", "pulseaudio.pid"):
        try:
            os.kill(int((audio_dir / name).read_text()), signal.SIGKILL)
        except (OSError, ValueError):  # already gone, or never written
            continue


@pytest.fixture(scope="session")
def sound_card() -> Iterator[dict[str, str]]:
    """The environment (XDG_RUNTIME_DIR, PULSE_SERVER) of a running virtual sound card, set in os.environ."""
    candidates = []
    if os.environ.get("PULSE_SERVER"):
        candidates.append({k: os.environ.get(k, "") for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")})
    audio_dir = Path(os.environ.get("AUDIO_DIR", "/tmp/ci-audio"))
    candidates.append(_pulse_env(audio_dir))
    started = False
    env = next((c for c in candidates if _answers(c)), None)
    if env is None:
        if not SCRIPT.is_file():
            pytest.skip(f"no PulseAudio server answers and {SCRIPT} is missing: run `make test`")
        env, started = _start_card(audio_dir), True
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # PortAudio's ALSA pulse plugin reads them whenever a stream opens
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if started:
            _stop_card(audio_dir)


def tone_wav(path: Path, frequency_hz: float, seconds: float, amplitude: float = 0.5) -> Path:
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    pcm = np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE_HZ)
        handle.writeframes(pcm.tobytes())
    return path


def play(wav: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["paplay", str(wav)], env={**os.environ, **env}, stderr=subprocess.PIPE)


def finish(player: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    _, err = player.communicate(timeout=timeout_s)
    assert player.returncode == 0, err.decode(errors="replace")


# --- the stand-in model -----------------------------------------------------------------------


class HighBandDetector(torch.nn.Module):
    """Logits ``[healthy, whine]`` = ``[-d, d]``, d = log(energy above the cutoff / energy below it)."""

    def __init__(self, cutoff_bin: int) -> None:
        super().__init__()
        self.cutoff_bin = cutoff_bin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, dim=-1).abs() ** 2
        low = spectrum[:, :, : self.cutoff_bin].sum(dim=(1, 2))
        high = spectrum[:, :, self.cutoff_bin :].sum(dim=(1, 2))
        d = torch.log(high + 1e-6) - torch.log(low + 1e-6)
        return torch.stack([-d, d], dim=1)


def write_stand_in_model(path: Path) -> Path:
    meta = {
        "schema": 1,
        "name": "stand-in-high-band",
        "kind": "classifier",
        "labels": ["healthy", "whine"],
        "sample_rate_hz": RATE_HZ,
        "window_samples": WINDOW,
        "hop_samples": HOP,
        "channels": 1,
        "input_units": "full scale",
        "normalisation": {"applied": "none"},
        "precision": "float32",
        "quantized_engine": None,
    }
    module = torch.jit.script(HighBandDetector(round(CUTOFF_HZ * WINDOW / RATE_HZ)))
    torch.jit.save(module, str(path), _extra_files={"meta.json": json.dumps(meta)})
    return path


# --- the agent --------------------------------------------------------------------------------


def agent_config(path: Path, *, broker_port: int, metrics_port: int, model: Path) -> Path:
    path.write_text(
        f"""
[agent]
id = "{AGENT}"
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker_port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[metrics]
listen = "127.0.0.1"
port = {metrics_port}
[decision]
confirm_k = 2
confirm_n = 3
hold_off_s = 1.0
cooldown_s = 0.0
[[models]]
name = "tone"
path = "{model}"
[[sources]]
type = "soundcard"
name = "mic"
sensor = "{SENSOR}"
device = "pulse"
sample_rate_hz = {RATE_HZ}
dtype = "int16"
chunk_samples = 1024
silence_floor_dbfs = -50.0
silence_after_s = 1.5
models = ["tone"]
"""
    )
    return path


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(port: int, name: str, **labels: str) -> float | None:
    try:
        return scrape(port).get((name, tuple(sorted(labels.items()))))
    except OSError:  # the exporter is not up yet
        return None


@pytest.fixture
def agent(tmp_path: Path, broker, sound_card: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    metrics_port = free_port()
    model = write_stand_in_model(tmp_path / "stand-in.pt")
    config = agent_config(tmp_path / "agent.toml", broker_port=broker.port, metrics_port=metrics_port, model=model)
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **sound_card},
        )
    try:
        yield proc, metrics_port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        print(log_path.read_text(errors="replace")[-4000:])  # shown by pytest when the test failed


def alerts(collector, kind: str | None = None) -> list[dict[str, object]]:
    events = [json.loads(p) for p in collector.payloads(f"{PREFIX}/{SENSOR}/alert")]
    return [e for e in events if kind is None or e["kind"] == kind]


def test_tones_and_silence_end_to_end(
    agent: tuple[subprocess.Popen[bytes], int], subscriber, sound_card: dict[str, str], tmp_path: Path
) -> None:
    proc, port = agent
    watch = subscriber(f"{PREFIX}/#")
    watch.wait_for(lambda c: c.last(f"{PREFIX}/status") == b"online", timeout_s=60, what="agent online")
    wait_until(lambda: metric(port, "edge_agent_source_up", source="mic") == 1, 30, "the sound card open")
    low = tone_wav(tmp_path / "low.wav", 300.0, 3.0)
    high = tone_wav(tmp_path / "high.wav", 3000.0, 3.0)

    # nothing plays yet (the keep-alive stream is digital silence): a `silent` health alert starts
    watch.wait_for(lambda c: len(alerts(c, "health")) >= 1, timeout_s=15, what="silent starts")
    # a low tone: the silence ends, the model runs and hears nothing wrong
    player = play(low, sound_card)
    level = ("edge_agent_audio_level_dbfs", {"source": "mic", "sensor": SENSOR})
    wait_until(lambda: (metric(port, level[0], **level[1]) or -999.0) > -20, 10, "the tone's level")
    healthy = ("edge_agent_class_probability", {"sensor": SENSOR, "model": "tone", "label": "healthy"})
    wait_until(lambda: (metric(port, healthy[0], **healthy[1]) or 0.0) > 0.99, 10, "the model hearing the low tone")
    watch.wait_for(lambda c: alerts(c, "health")[-1]["type"] == "end", timeout_s=10, what="silent ends")
    finish(player)
    # silence again: by the time `silent` starts, every window of the low tone has been decided
    watch.wait_for(lambda c: alerts(c, "health")[-1]["type"] == "new", timeout_s=15, what="silent after the low tone")
    assert alerts(watch, "fault") == []
    # a high tone: a fault alert with the model's label
    player = play(high, sound_card)
    watch.wait_for(lambda c: len(alerts(c, "fault")) >= 1, timeout_s=15, what="a fault alert for the high tone")
    finish(player)
    # stop playing: the fault ends and a new `silent` episode starts ...
    watch.wait_for(lambda c: alerts(c, "fault")[-1]["type"] == "end", timeout_s=15, what="the fault ends")
    watch.wait_for(lambda c: alerts(c, "health")[-1]["type"] == "new", timeout_s=15, what="silent again")
    # ... and ends when sound resumes
    finish(play(tone_wav(tmp_path / "resume.wav", 300.0, 2.0), sound_card))
    watch.wait_for(lambda c: alerts(c, "health")[-1]["type"] == "end", timeout_s=10, what="silent ends again")

    faults, health = alerts(watch, "fault"), alerts(watch, "health")
    assert faults[0]["type"] == "new" and {f["label"] for f in faults} == {"whine"}
    assert {f["id"] for f in faults} == {faults[0]["id"]}  # one episode
    assert faults[0]["model"]["name"] == "tone" and faults[0]["confidence"] >= 0.8
    assert [h["type"] for h in health] == ["new", "end"] * (len(health) // 2) and len(health) >= 6
    assert {h["label"] for h in health} == {"silent"} and all(h["model"]["name"] is None for h in health)
    for event in faults + health:
        jsonschema.validate(event, SCHEMA)
    samples = scrape(port)
    assert samples[("edge_agent_audio_input_overflows_total", (("source", "mic"),))] >= 0
    assert (("edge_agent_audio_level_dbfs", (("sensor", SENSOR), ("source", "mic")))) in samples
    assert samples[("edge_agent_source_up", (("source", "mic"),))] == 1
    assert proc.poll() is None


def test_devices_command_lists_the_virtual_card(sound_card: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "devices"],
        cwd=REPO,
        env={**os.environ, **sound_card},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    names = [line.split()[-1] for line in result.stdout.splitlines()[1:] if line.strip() and line.split()[-1]]
    assert "pulse" in names, result.stdout


def _section(device: str) -> SourceSection:
    return SourceSection(
        type="soundcard",
        name="mic",
        models=("m",),
        sensor="s",
        device=device,
        sample_rate_hz=float(RATE_HZ),
        silence_after_s=0.0,
    )


def _value(metrics: AgentMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, {"source": "mic"}) or 0.0


def test_a_device_name_that_matches_nothing_is_a_clear_error_and_retried(
    sound_card: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = AgentMetrics()
    source = SoundcardSource(_section("no-such-card"), metrics=metrics, retry_min_s=0.05, retry_max_s=0.2)
    with caplog.at_level(logging.INFO, logger="edge_agent.sources.soundcard"):
        source.start(lambda chunk: None)
        try:
            wait_until(lambda: _value(metrics, "edge_agent_source_retries_total") >= 3, 20, "3 retries")
            assert _value(metrics, "edge_agent_source_up") == 0 and source.alive()
        finally:
            source.stop()
    (line,) = [r.getMessage() for r in caplog.records]
    assert "source mic: cannot open the sound card: no input device whose name contains 'no-such-card'" in line
    assert "'pulse'" in line and "retrying with backoff" in line


def test_a_lost_server_is_retried_and_capture_resumes(
    sound_card: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A private PulseAudio server dies under the open stream, then comes back: down, retried, up again."""
    audio_dir = Path(tempfile.mkdtemp(prefix="pa-", dir="/tmp"))  # short: a unix socket path has 108 bytes
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} is missing")
    try:
        for key, value in _start_card(audio_dir).items():
            monkeypatch.setenv(key, value)
        metrics, chunks = AgentMetrics(), []
        source = SoundcardSource(_section("pulse"), metrics=metrics, retry_min_s=0.2, retry_max_s=0.5)
        caplog.set_level(logging.INFO, logger="edge_agent.sources.soundcard")
        source.start(chunks.append)
        try:
            wait_until(lambda: len(chunks) >= 5, 20, "audio from the private server")
            _stop_card(audio_dir)
            wait_until(lambda: _value(metrics, "edge_agent_source_up") == 0, 20, "source down")
            retries = _value(metrics, "edge_agent_source_retries_total")
            assert retries >= 1
            _start_card(audio_dir)
            wait_until(lambda: _value(metrics, "edge_agent_source_up") == 1, 30, "source up again")
            before = len(chunks)
            wait_until(lambda: len(chunks) >= before + 5, 20, "audio again")
        finally:
            source.stop()
        seqs = [c.seq for c in chunks]
        assert any(b > a + 1 for a, b in itertools.pairwise(seqs))  # the outage is a gap in seq
        lines = [(r.levelname, r.getMessage()) for r in caplog.records]
        assert [level for level, _ in lines] == ["INFO", "ERROR", "INFO"], lines  # one line per state change
        assert "capturing from input device" in lines[0][1]
        assert "the input stream ended" in lines[1][1] or "the stream stalled" in lines[1][1]
    finally:
        _stop_card(audio_dir)
        shutil.rmtree(audio_dir, ignore_errors=True)


def test_level_metric_reads_a_played_tone(sound_card: dict[str, str], tmp_path: Path) -> None:
    metrics = AgentMetrics()
    source = SoundcardSource(_section("pulse"), metrics=metrics)
    source.start(lambda chunk: None)
    try:
        wait_until(lambda: _value(metrics, "edge_agent_source_up") == 1, 20, "source up")
        player = play(tone_wav(tmp_path / "tone.wav", 440.0, 2.0, amplitude=0.5), sound_card)
        labels = {"source": "mic", "sensor": "s"}

        def level() -> float:
            return metrics.registry.get_sample_value("edge_agent_audio_level_dbfs", labels) or -999.0

        wait_until(lambda: abs(level() - (-9.03)) < 1.0, 10, "about -9 dBFS (a 0.5 sine)")
        finish(player)
    finally:
        source.stop()
