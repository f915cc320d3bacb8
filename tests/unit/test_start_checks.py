"""`check-config` refuses what `run` refuses at start, naming the same key (issue 9, item 3).

Each case is a configuration that `edge-agent run` refuses (or, for a broken model file, retries
forever); `check-config` must refuse it too, and `load_config` where the problem is in the file itself.
On the code before this change, `check-config` printed `config OK` for every case but the NUL topic
(refused by `MqttSource` only, at start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.configload import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"  # 1 channel, 12 kHz, 2048-sample windows

MODELS = '[metrics]\nenabled = false\n\n[[models]]\nname = "bearing"\npath = "model.pt"\n\n'
REPLAY = '[[sources]]\ntype = "replay"\nname = "demo"\nsensor = "motor-1"\nmodels = ["bearing"]\nspeed = 0.0\n'
MQTT_ON = '[mqtt]\nenabled = true\nport = 1\nusername = "agent"\n'
MQTT_SOURCE = '[[sources]]\ntype = "mqtt"\nname = "plant"\nmodels = ["bearing"]\n'


def _recording(folder: Path) -> None:
    np.savez(folder / "data.npz", keys=np.array(["097"]), fs_hz=np.float64(12_000.0), **{"097": np.zeros(8192)})


def _wav(path: Path, rate_hz: int) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate_hz)
        handle.writeframes(np.zeros(3 * rate_hz, dtype="<i2").tobytes())


def _text_model(folder: Path) -> None:
    (folder / "model.pt").write_text("this is not a TorchScript archive\n")


@dataclass(frozen=True)
class Case:
    text: str
    key: str  # the dotted key every refusal names
    in_file: bool = False  # load_config refuses it (the problem is in the file itself)
    setup: Callable[[Path], None] = _recording
    run_refuses: bool = True  # False: `run` waits for the file (retries), check-config refuses it


CASES = {
    "missing replay file": Case(MODELS + REPLAY + 'path = "nowhere.npz"\n', "sources[0].path"),
    "three channels on a one-channel model": Case(
        MQTT_ON + MODELS + MQTT_SOURCE + 'topic = "p/+/v"\nformat = "f32le"\nsample_rate_hz = 12000.0\nchannels = 3\n',
        "sources[0].channels",
    ),
    "password_env not set": Case(
        MQTT_ON + 'password_env = "EDGE_AGENT_TEST_UNSET_PASSWORD"\n' + MODELS + REPLAY + 'path = "data.npz"\n',
        "mqtt.password_env",
    ),
    "password_file unreadable": Case(
        MQTT_ON + 'password_file = "no-such-secret"\n' + MODELS + REPLAY + 'path = "data.npz"\n',
        "mqtt.password_file",
    ),
    "model file not TorchScript": Case(
        MODELS + REPLAY + 'path = "data.npz"\n',
        "models[0].path",
        setup=lambda folder: (_recording(folder), _text_model(folder)),
        run_refuses=False,
    ),
    "recording rate the model cannot take": Case(
        MODELS + REPLAY + 'path = "data.npy"\nsample_rate_hz = 7919.0\n',
        "sources[0].sample_rate_hz",
        setup=lambda folder: np.save(folder / "data.npy", np.zeros(8192, dtype=np.float32)),
    ),
    "record not in the npz": Case(
        MODELS + REPLAY + 'path = "data.npz"\nrecords = ["097", "999"]\n', "sources[0].records"
    ),
    "recording shorter than one model window": Case(
        MODELS + REPLAY + 'path = "short.npz"\nstart_fraction = 0.5\n',
        "sources[0].path",
        setup=lambda folder: np.savez(
            folder / "short.npz", keys=np.array(["097"]), fs_hz=np.float64(12_000.0), **{"097": np.zeros(3000)}
        ),
    ),
    "wav rate the model cannot take": Case(
        MODELS + REPLAY + 'path = "odd.wav"\n', "sources[0].path", setup=lambda folder: _wav(folder / "odd.wav", 7919)
    ),
    "binary mqtt rate the model cannot take": Case(
        MQTT_ON + MODELS + MQTT_SOURCE + 'topic = "p/+/v"\nformat = "i16le"\nsample_rate_hz = 12007.0\n',
        "sources[0].sample_rate_hz",
    ),
    "topic with a NUL byte": Case(
        MQTT_ON + MODELS + MQTT_SOURCE + 'topic = "p/+/v\\u0000"\n', "sources[0].topic", in_file=True
    ),
}


def _folder(tmp_path: Path, case: Case) -> Path:
    shutil.copy(MODEL, tmp_path / "model.pt")
    case.setup(tmp_path)
    (tmp_path / "config.toml").write_text(case.text)
    return tmp_path / "config.toml"


@pytest.fixture(autouse=True)
def _no_password_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_TEST_UNSET_PASSWORD", raising=False)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_check_config_refuses_what_run_refuses_naming_the_key(
    tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _folder(tmp_path, case)
    assert main(["check-config", str(config)]) == 2
    errors = capsys.readouterr().err.splitlines()[1:]
    assert any(line.startswith(f"{case.key}") for line in errors), errors
    if case.in_file:
        with pytest.raises(ConfigError) as info:
            load_config(config)
        assert info.value.errors[0].startswith(f"{case.key}: ")
    else:
        load_config(config)  # a valid file; the problem shows at start


@pytest.mark.parametrize(
    "case", [c for c in CASES.values() if c.run_refuses], ids=[n for n, c in CASES.items() if c.run_refuses]
)
def test_run_refuses_it_at_start_naming_the_same_key(tmp_path: Path, case: Case) -> None:
    config = _folder(tmp_path, case)
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_TEST_UNSET_PASSWORD"}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert case.key in result.stderr


def test_a_model_file_that_is_not_torchscript_is_named_with_what_is_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _folder(tmp_path, CASES["model file not TorchScript"])
    assert main(["check-config", str(config)]) == 2
    (line,) = capsys.readouterr().err.splitlines()[1:]
    assert line == (
        f"models[0].path: {str(tmp_path / 'model.pt')!r} is not a valid model file (is not a TorchScript file "
        "(corrupt or truncated zip: File is not a zip file)); expected a TorchScript model file (edge-agent export)"
    )
    assert main(["check-config", "--skip-model-files", str(config)]) == 0  # the unit's pre-start check


def test_every_error_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = MQTT_ON + 'password_env = "EDGE_AGENT_TEST_UNSET_PASSWORD"\n' + MODELS + REPLAY + 'path = "nowhere.npz"\n'
    config = _folder(tmp_path, Case(text, ""))
    (tmp_path / "model.pt").unlink()
    assert main(["check-config", str(config)]) == 2
    keys = [line.split(":")[0] for line in capsys.readouterr().err.splitlines()[1:]]
    assert keys == ["mqtt.password_env", "models[0].path", "sources[0].path"]
