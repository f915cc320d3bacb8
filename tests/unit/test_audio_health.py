"""Audio health (level, silence), device choice, soundcard config rules and the ``devices`` command, without audio."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.configload import ConfigError, parse_config
from edge_agent.sources.audio_health import MIN_DBFS, LevelMeter, SilenceDetector, dbfs, power
from edge_agent.sources.devices import DeviceNotFoundError, InputDevice, format_device_table, resolve_input_device

REPO = Path(__file__).resolve().parents[2]


# --- level ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "expected_dbfs"),
    [
        (np.ones((1, 1000), dtype=np.float32), 0.0),  # full-scale square / DC
        (0.5 * np.sin(2 * np.pi * np.arange(16000) / 160)[None, :].astype(np.float32), -9.03),
        (np.full((2, 100), 0.1, dtype=np.float32), -20.0),
        (np.zeros((1, 512), dtype=np.float32), MIN_DBFS),
        (np.zeros((1, 0), dtype=np.float32), MIN_DBFS),
    ],
)
def test_rms_level_in_dbfs(signal: np.ndarray, expected_dbfs: float) -> None:
    assert dbfs(power(signal)) == pytest.approx(expected_dbfs, abs=0.01)


def test_dbfs_of_nan_is_the_floor() -> None:
    assert dbfs(math.nan) == MIN_DBFS


def test_level_meter_averages_power_over_its_interval() -> None:
    meter = LevelMeter(interval_s=1.0)
    assert meter.add(1.0, 0.5) is None  # 0 dBFS for half a second ...
    level = meter.add(0.0, 0.5)  # ... then silence: half the power
    assert level == pytest.approx(-3.01, abs=0.01)
    assert meter.add(0.01, 0.4) is None  # a new interval starts
    meter.reset()
    assert meter.add(0.01, 1.0) == pytest.approx(-20.0)


# --- silence ----------------------------------------------------------------------------------

SILENCE_CASES = [
    # (blocks as (time, level), query time, silent?)
    ([], 0.9, False),  # not yet after_s since the start
    ([], 1.0, True),  # no samples at all for after_s
    ([(0.5, -90.0), (0.9, -85.0)], 1.2, True),  # samples, but all below the floor
    ([(0.5, -90.0), (0.9, -50.0)], 1.2, False),  # one block at the floor's level resets the clock
    ([(0.5, -40.0)], 1.49, False),
    ([(0.5, -40.0)], 1.5, True),  # sound stopped after_s ago
    ([(0.5, -60.0)], 1.2, False),  # exactly at the floor counts as sound
]


@pytest.mark.parametrize(("blocks", "query_s", "silent"), SILENCE_CASES)
def test_silence_detector(blocks: list[tuple[float, float]], query_s: float, silent: bool) -> None:
    detector = SilenceDetector(floor_dbfs=-60.0, after_s=1.0, now=0.0)
    for time_s, level in blocks:
        detector.block(level, time_s)
    assert detector.silent(query_s) is silent


def test_silence_detector_with_zero_after_s_is_off() -> None:
    detector = SilenceDetector(floor_dbfs=-60.0, after_s=0.0, now=0.0)
    assert not detector.enabled and not detector.silent(1e9)


@pytest.mark.parametrize("after_s", [-1.0, math.inf, math.nan])
def test_silence_detector_rejects_bad_durations(after_s: float) -> None:
    with pytest.raises(ValueError, match="after_s"):
        SilenceDetector(floor_dbfs=-60.0, after_s=after_s, now=0.0)


# --- device choice ----------------------------------------------------------------------------

DEVICES = [
    InputDevice(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 44100.0, "ALSA"),
    InputDevice(3, "Scarlett 2i2 USB: Audio (hw:2,0)", 2, 48000.0, "ALSA"),
    InputDevice(4, "pulse", 32, 44100.0, "ALSA"),
    InputDevice(5, "default", 32, 44100.0, "ALSA", is_default=True),
]


@pytest.mark.parametrize(
    ("spec", "index"),
    [("", 5), ("scarlett", 3), ("Scarlett 2i2", 3), ("  pulse ", 4), ("PULSE", 4), ("3", 3), ("default", 5)],
)
def test_device_by_name_part_index_or_default(spec: str, index: int) -> None:
    assert resolve_input_device(DEVICES, spec, channels=1).index == index


def test_an_exact_name_wins_over_substring_matches() -> None:
    devices = [*DEVICES, InputDevice(6, "pulse monitor", 2, 44100.0, "ALSA")]
    assert resolve_input_device(devices, "pulse", channels=1).index == 4


@pytest.mark.parametrize(
    ("spec", "channels", "message"),
    [
        ("focusrite", 1, r"no input device whose name contains 'focusrite'; input devices: 0 'HDA Intel"),
        ("9", 1, r"no input device with index 9; input devices: "),
        ("hw:", 1, r"2 input devices match 'hw:' \(0 'HDA.*, 3 'Scarlett.*\); use a longer name or the index"),
        ("scarlett", 4, r"input device 3 'Scarlett 2i2 .*' has 2 input channel\(s\), the source needs 4"),
    ],
)
def test_device_errors_name_the_request_and_the_devices(spec: str, channels: int, message: str) -> None:
    with pytest.raises(DeviceNotFoundError, match=message):
        resolve_input_device(DEVICES, spec, channels=channels)


def test_no_devices_at_all_says_so() -> None:
    with pytest.raises(DeviceNotFoundError, match="PortAudio lists no input device"):
        resolve_input_device([], "", channels=1)


def test_device_table_marks_the_default() -> None:
    lines = format_device_table(DEVICES).splitlines()
    assert lines[0].split() == ["index", "channels", "default", "rate", "host", "API", "name"]
    assert lines[2].split()[:4] == ["3", "2", "48000", "Hz"] and lines[2].endswith("Scarlett 2i2 USB: Audio (hw:2,0)")
    assert lines[4].startswith("*") and not lines[1].startswith("*")


# --- config -----------------------------------------------------------------------------------


def _data(**source: Any) -> dict[str, Any]:
    base = {"type": "soundcard", "name": "mic", "sensor": "pump-1", "models": ["m"]}
    return {"models": [{"name": "m", "path": "m.pt"}], "sources": [{**base, **source}]}


def _errors(data: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    return info.value.errors


def test_a_soundcard_source_loads_with_its_defaults(tmp_path: Path) -> None:
    (source,) = parse_config(_data(device="USB Audio", sample_rate_hz=48000), base_dir=tmp_path).sources
    assert (source.type, source.sensor, source.device) == ("soundcard", "pump-1", "USB Audio")
    assert source.sample_rate_hz == 48000.0
    assert (source.dtype, source.chunk_samples, source.latency_s, source.channels) == ("float32", 1024, 0.0, 1)
    assert (source.silence_floor_dbfs, source.silence_after_s) == (-80.0, 10.0)


def test_soundcard_rules_name_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    data = _data(dtype="int24", latency_s=-1, silence_floor_dbfs=3, silence_after_s=-2, device=" usb")
    data["sources"][0].pop("sensor")
    assert _errors(data, tmp_path) == [
        "sources[0].sensor: missing; soundcard sources need the sensor id they capture as",
        "sources[0].dtype: 'int24' is not allowed; choose one of float32, int16, int32",
        "sources[0].latency_s: -1 is out of range; must be >= 0",
        "sources[0].silence_after_s: -2 is out of range; must be >= 0",
        "sources[0].silence_floor_dbfs: 3 is out of range; must be < 0 (dB below full scale, e.g. -80)",
        "sources[0].device: ' usb' is not allowed; a device name (or a unique part of it) or index, "
        "without surrounding spaces",
    ]


def test_keys_of_other_source_types_are_rejected_both_ways(tmp_path: Path) -> None:
    assert _errors(_data(topic="a/+/b", path="x.wav"), tmp_path) == [
        "sources[0].topic: 'a/+/b' is not used by soundcard sources; remove it or set type = 'mqtt'",
        "sources[0].path: 'x.wav' is not used by soundcard sources; remove it or set type = 'replay'",
    ]
    data = _data(path="x.wav", device="pulse", silence_after_s=1)
    data["sources"][0]["type"] = "replay"
    assert _errors(data, tmp_path) == [
        "sources[0].device: 'pulse' is not used by replay sources; remove it or set type = 'soundcard'",
        "sources[0].silence_after_s: 1 is not used by replay sources; remove it or set type = 'soundcard'",
    ]
    data = _data(topic="a/+/b")
    data["sources"][0]["type"] = "mqtt"
    data["mqtt"] = {"enabled": True}
    assert _errors(data, tmp_path) == [
        "sources[0].sensor: 'pump-1' is not used by mqtt sources; remove it or set type = 'replay' or 'soundcard'"
    ]


def test_a_soundcard_sensor_may_not_be_another_sources(tmp_path: Path) -> None:
    data = _data()
    data["sources"].insert(0, {"type": "replay", "name": "r", "sensor": "pump-1", "path": "x.wav", "models": ["m"]})
    assert _errors(data, tmp_path) == [
        "sources[1].sensor: 'pump-1' is a duplicate; the sensors of replay and soundcard sources must be unique "
        "(first used by sources[0])"
    ]


# --- import boundary and the devices command --------------------------------------------------


def test_the_soundcard_source_does_not_import_sounddevice_until_it_starts() -> None:
    code = (
        "import sys, edge_agent.service.app, edge_agent.sources.soundcard, edge_agent.sources.devices, edge_agent.cli; "
        "assert 'sounddevice' not in sys.modules, 'sounddevice was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_devices_without_sounddevice_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # what `import` sees when the package is missing
    assert main(["devices"]) == 1
    err = capsys.readouterr().err
    assert "edge-agent devices: cannot list sound cards: the Python package sounddevice is not installed" in err
    assert "pip install 'edge-agent[audio]'" in err and "apt-get install libportaudio2" in err
