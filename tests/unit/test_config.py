"""config.toml: the shipped file, defaults, paths, secrets, ``check-config`` and a folder of broken configs."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.common.paths import DEFAULT_DATA_ROOT
from edge_agent.config import (
    AgentConfig,
    AgentSection,
    DecisionSection,
    HomeAssistantSection,
    InferenceSection,
    MetricsSection,
    ModelSection,
    MqttSection,
)
from edge_agent.configload import ConfigError, load_config, parse_config, resolve_password
from edge_agent.sources import SOURCES
from edge_agent.sources.replay import ReplaySection

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config.toml"
MODEL = REPO / "models" / "drsn_cw_cwru.pt"
BROKEN = REPO / "tests" / "configs" / "broken"
BROKEN_CASES = sorted(BROKEN.glob("*.toml"))
SECRET = "hunter2-not-for-logs"

MINIMAL = """
[[models]]
name = "bearing"
path = "model.pt"

[[sources]]
type = "replay"
name = "demo"
sensor = "motor-1"
path = "data.npz"
models = ["bearing"]
"""


def _minimal_data() -> dict[str, Any]:
    return {
        "models": [{"name": "bearing", "path": "model.pt"}],
        "sources": [{"type": "replay", "name": "demo", "sensor": "motor-1", "path": "data.npz", "models": ["bearing"]}],
    }


def _write_model_and_data(folder: Path, model: str = "model.pt", data: str = "data.npz", **records: Any) -> None:
    """A real model file and a small CWRU-like npz (what `check-config` opens like `run` does)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL, folder / model)
    records = records or {"097": np.zeros(4096, dtype=np.float32)}
    np.savez(folder / data, keys=np.array(list(records)), fs_hz=np.float64(12_000.0), **records)


def _write(folder: Path, text: str, name: str = "config.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _errors(data: dict[str, Any], base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=base_dir)
    return info.value.errors


# --- the shipped config.toml ------------------------------------------------------------------


def test_shipped_config_loads_as_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_DATA", raising=False)
    config = load_config(SHIPPED)
    assert config.agent.id == "demo-gateway"
    assert config.mqtt == MqttSection(enabled=False)
    assert config.metrics == MetricsSection(enabled=True, listen="127.0.0.1", port=10041)
    assert (config.inference, config.decision) == (InferenceSection(), DecisionSection(hold_off_s=2.0))
    assert config.models == (ModelSection(name="bearing", path=str(REPO / "models" / "drsn_cw_cwru_fused.pt")),)
    (source,) = config.sources
    assert (source.type, source.name, source.sensor, source.models) == (
        "replay",
        "cwru-demo",
        "demo-motor-de",
        ("bearing",),
    )
    assert source.path == str(DEFAULT_DATA_ROOT / "cwru" / "cwru_12k_de_dev.npz")
    assert source.records == ("097", "097", "105", "105", "097", "097", "097", "097")
    assert (source.start_fraction, source.speed, source.loop) == (0.8, 1.0, False)


@pytest.mark.parametrize(
    "section", [AgentSection, MqttSection, MetricsSection, InferenceSection, DecisionSection, HomeAssistantSection]
)
def test_shipped_config_documents_every_section_key(section: type) -> None:
    text = SHIPPED.read_text()
    for spec in dataclasses.fields(section):
        assert re.search(rf"^#? ?{spec.name} = ", text, re.MULTILINE), spec.name


@pytest.mark.parametrize("section", [ModelSection, *(kind.section for kind in SOURCES.values())])
def test_shipped_config_documents_every_table_key(section: type) -> None:
    text = SHIPPED.read_text()
    for spec in dataclasses.fields(section):
        assert re.search(rf"^#? ?{spec.name} += ", text, re.MULTILINE), spec.name


def test_shipped_config_passes_check_config_with_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path, SHIPPED.read_text())
    monkeypatch.setenv("EDGE_AGENT_DATA", str(tmp_path / "data"))
    _write_model_and_data(tmp_path / "models", "drsn_cw_cwru_fused.pt", "unused.npz")
    records = {key: np.zeros(16_384, dtype=np.float32) for key in ("097", "105")}  # start_fraction 0.8
    _write_model_and_data(tmp_path / "data" / "cwru", "unused.pt", "cwru_12k_de_dev.npz", **records)
    assert main(["check-config", str(config)]) == 0
    assert capsys.readouterr().out == "config OK: 1 sources, 1 models\n"


# --- defaults and types -----------------------------------------------------------------------


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    config = parse_config(_minimal_data(), base_dir=tmp_path)
    defaults = AgentConfig()
    assert (config.agent, config.mqtt, config.metrics) == (defaults.agent, defaults.mqtt, defaults.metrics)
    assert (config.inference, config.decision) == (defaults.inference, defaults.decision)
    assert config.homeassistant == HomeAssistantSection(enabled=False)
    assert config.models == (ModelSection(name="bearing", path=str(tmp_path / "model.pt"), hop_samples=None),)
    expected = ReplaySection(
        type="replay", name="demo", models=("bearing",), sensor="motor-1", path=str(tmp_path / "data.npz")
    )
    assert config.sources == (expected,)


def test_ints_are_accepted_for_floats_and_lists_become_tuples(tmp_path: Path) -> None:
    data = _minimal_data()
    data["decision"] = {"hold_off_s": 5, "min_confidence": 1, "normal_labels": ["ok"]}
    data["models"][0]["hop_samples"] = 512
    data["sources"][0].update(speed=2, records=["097"])
    config = parse_config(data, base_dir=tmp_path)
    assert config.decision.hold_off_s == 5.0 and isinstance(config.decision.hold_off_s, float)
    assert config.decision.min_confidence == 1.0 and config.decision.normal_labels == ("ok",)
    assert config.models[0].hop_samples == 512
    assert config.sources[0].speed == 2.0 and isinstance(config.sources[0].speed, float)
    assert config.sources[0].records == ("097",)


def test_an_mqtt_source_with_a_binary_format_loads(tmp_path: Path) -> None:
    data = _minimal_data()
    data["mqtt"] = {"enabled": True, "username": "agent", "password_env": "MQTT_PASSWORD"}
    source = {"type": "mqtt", "name": "plant", "topic": "plant/+/vibration", "models": ["bearing"]}
    data["sources"].append({**source, "format": "i16le", "sample_rate_hz": 12000, "qos": 1, "scale": 0.001})
    mqtt_source = parse_config(data, base_dir=tmp_path).sources[1]
    assert (mqtt_source.format, mqtt_source.sample_rate_hz, mqtt_source.qos) == ("i16le", 12000.0, 1)


DOTTED_KEY = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?){0,2}: ")  # up to sources[0].indicators.bands_hz[1]
BAD_VALUES: list[Any] = ["x", "", 0, -1, 1.5, math.nan, True, [], [1], {}, {"a": 1}]
FIELDS = [
    (name, spec.name)
    for name, cls in [("agent", AgentSection), ("mqtt", MqttSection), ("homeassistant", HomeAssistantSection)]
    for spec in dataclasses.fields(cls)
]
FIELDS += [("decision", spec.name) for spec in dataclasses.fields(DecisionSection)]
FIELDS += [
    ("sources", name)
    for name in dict.fromkeys(spec.name for kind in SOURCES.values() for spec in dataclasses.fields(kind.section))
]
FIELDS += [("models", spec.name) for spec in dataclasses.fields(ModelSection)]


@pytest.mark.parametrize(("section", "key"), FIELDS)
def test_any_value_of_any_key_gives_a_config_or_a_config_error(tmp_path: Path, section: str, key: str) -> None:
    for value in BAD_VALUES:
        data = _minimal_data()
        if section in ("models", "sources"):
            data[section][0][key] = value
        else:
            data[section] = {key: value}
        try:
            parse_config(data, base_dir=tmp_path)
        except ConfigError as error:
            assert error.errors and all(DOTTED_KEY.match(line) for line in error.errors), error.errors


# --- paths ------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "etc", MINIMAL.replace('"data.npz"', '"/srv/data.npz"')))
    assert config.models[0].path == str(tmp_path / "etc" / "model.pt")
    assert config.sources[0].path == "/srv/data.npz"


def test_data_placeholder_expands_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_DATA", str(tmp_path / "data"))
    text = MINIMAL.replace('"data.npz"', '"${EDGE_AGENT_DATA}/cwru/pack.npz"')
    config = load_config(_write(tmp_path / "etc", text))
    assert config.sources[0].path == str(tmp_path / "data" / "cwru" / "pack.npz")


def test_data_placeholder_defaults_to_shared_data_beside_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_AGENT_DATA", raising=False)
    text = MINIMAL.replace('"data.npz"', '"${EDGE_AGENT_DATA}/cwru/pack.npz"')
    config = load_config(_write(tmp_path, text))
    assert REPO.parent / "shared" / "data" == DEFAULT_DATA_ROOT
    assert config.sources[0].path == str(REPO.parent / "shared" / "data" / "cwru" / "pack.npz")


def test_tls_files_must_exist_when_tls_is_on(tmp_path: Path) -> None:
    tls = '[mqtt]\nenabled = true\ntls = true\nca_file = "certs/ca.pem"\ncert_file = "certs/client.pem"\n'
    config_path = _write(tmp_path, tls + MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(config_path)
    assert info.value.errors == [
        f"mqtt.ca_file: 'certs/ca.pem' does not exist; no file at {tmp_path / 'certs' / 'ca.pem'}",
        f"mqtt.cert_file: 'certs/client.pem' does not exist; no file at {tmp_path / 'certs' / 'client.pem'}",
    ]
    _write(tmp_path / "certs", "", "ca.pem")
    _write(tmp_path / "certs", "", "client.pem")
    mqtt = load_config(config_path).mqtt
    assert (mqtt.ca_file, mqtt.cert_file) == (
        str(tmp_path / "certs" / "ca.pem"),
        str(tmp_path / "certs" / "client.pem"),
    )


def test_model_files_are_not_checked_at_load(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert not Path(config.models[0].path).exists()


# --- secrets ----------------------------------------------------------------------------------


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_TEST_PASSWORD", SECRET)
    assert resolve_password(MqttSection(username="agent", password_env="EDGE_AGENT_TEST_PASSWORD")) == SECRET


def test_password_from_a_file_is_stripped(tmp_path: Path) -> None:
    path = _write(tmp_path, f"{SECRET}\n", "password")
    assert resolve_password(MqttSection(username="agent", password_file=str(path))) == SECRET


def test_no_password_configured_gives_none() -> None:
    assert resolve_password(MqttSection()) is None


def test_unset_password_variable_is_an_error_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_AGENT_TEST_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_password(MqttSection(password_env="EDGE_AGENT_TEST_PASSWORD"))
    assert str(info.value) == "mqtt.password_env: 'EDGE_AGENT_TEST_PASSWORD' is not set or empty; export it"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read (No such file or directory); it must be a readable file"),
        (b"  \n", "is empty; it must hold the password"),
        (SECRET.encode() + b"\xff\n", "is not UTF-8 text; it must hold the password as text"),
    ],
)
def test_bad_password_file_is_an_error_naming_the_key_not_the_secret(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "password"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        resolve_password(MqttSection(password_file=str(path)))
    assert str(info.value) == f"mqtt.password_file: {str(path)!r} {message}"
    assert SECRET not in str(info.value) and info.value.__cause__ is None


CREDENTIAL_MQTT = {"enabled": True, "username": "agent", "password_file": "${CREDENTIALS_DIRECTORY}/mqtt-password"}


def test_password_file_from_systemd_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LoadCredential=mqtt-password:...``: systemd sets $CREDENTIALS_DIRECTORY for the unit's processes."""
    credentials = tmp_path / "run" / "credentials" / "edge-agent.service"
    _write(credentials, f"{SECRET}\n", "mqtt-password")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    config = parse_config({**_minimal_data(), "mqtt": CREDENTIAL_MQTT}, base_dir=tmp_path / "etc")
    assert config.mqtt.password_file == str(credentials / "mqtt-password")
    assert resolve_password(config.mqtt) == SECRET


def test_credentials_placeholder_without_systemd_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    errors = _errors({**_minimal_data(), "mqtt": CREDENTIAL_MQTT}, tmp_path)
    assert errors == [
        "mqtt.password_file: '${CREDENTIALS_DIRECTORY}/mqtt-password' uses ${CREDENTIALS_DIRECTORY}; "
        "$CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with LoadCredential=)"
    ]


def test_credentials_placeholder_is_only_for_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    data = _minimal_data()
    data["models"][0]["path"] = "${CREDENTIALS_DIRECTORY}/model.pt"
    assert _errors(data, tmp_path) == [
        "models[0].path: '${CREDENTIALS_DIRECTORY}/model.pt' has an unknown placeholder; "
        "only ${EDGE_AGENT_DATA} is supported"
    ]
    data = {**_minimal_data(), "mqtt": {**CREDENTIAL_MQTT, "password_file": "${SECRETS}/mqtt-password"}}
    assert _errors(data, tmp_path) == [
        "mqtt.password_file: '${SECRETS}/mqtt-password' has an unknown placeholder; "
        "only ${EDGE_AGENT_DATA} and ${CREDENTIALS_DIRECTORY} are supported"
    ]


def test_a_password_written_into_the_config_is_never_echoed(tmp_path: Path) -> None:
    data = {**_minimal_data(), "mqtt": {"password": SECRET, "password_env": SECRET, "password_file": "x"}}
    errors = _errors(data, tmp_path)
    assert errors[0].startswith("mqtt.password: unknown key (the password comes from password_env or password_file")
    assert not any(SECRET in line for line in errors[:1])


# --- check-config -----------------------------------------------------------------------------


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, MINIMAL)
    _write_model_and_data(tmp_path)
    assert main(["check-config", str(config)]) == 0
    assert capsys.readouterr().out == "config OK: 1 sources, 1 models\n"


def test_check_config_lists_every_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, "[metrics]\nport = 0\n\n[inference]\nthreads = 0\n" + MINIMAL)
    assert main(["check-config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"edge-agent check-config: {config}: 2 error(s)",
        "metrics.port: 0 is out of range; allowed 1 to 65535",
        "inference.threads: 0 is out of range; must be > 0",
    ]


def test_check_config_reports_a_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, MINIMAL)
    _write_model_and_data(tmp_path)
    (tmp_path / "model.pt").unlink()
    assert main(["check-config", str(config)]) == 2
    model = tmp_path / "model.pt"
    expected = f"models[0].path: {str(model)!r} does not exist; expected a TorchScript model file (edge-agent export)"
    assert capsys.readouterr().err.splitlines()[1:] == [expected]


def test_check_config_can_leave_model_files_to_the_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The service's pre-start check: a model file that appears later is waited for by `run`, not refused."""
    config = _write(tmp_path, MINIMAL)
    _write_model_and_data(tmp_path)
    (tmp_path / "model.pt").unlink()
    assert main(["check-config", "--skip-model-files", str(config)]) == 0
    assert capsys.readouterr().out.startswith("config OK")
    broken = _write(tmp_path, MINIMAL + "\n[agent]\nbogus = 1\n", "broken.toml")
    assert main(["check-config", "--skip-model-files", str(broken)]) == 2  # the file itself is still checked


def test_check_config_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.toml"
    assert main(["check-config", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err.splitlines()


def test_check_config_reads_config_toml_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check-config"]) == 2
    assert "config.toml: no such file" in capsys.readouterr().err.splitlines()


# --- the folder of broken configs -------------------------------------------------------------


def test_every_broken_config_has_its_expected_error() -> None:
    assert len(BROKEN_CASES) >= 15
    assert sorted(BROKEN.glob("*.expected")) == [case.with_suffix(".expected") for case in BROKEN_CASES]


@pytest.mark.parametrize("case", BROKEN_CASES, ids=[case.stem for case in BROKEN_CASES])
def test_broken_config_gives_its_exact_error(case: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(case)
    assert str(info.value) == case.with_suffix(".expected").read_text().rstrip("\n")
    assert info.value.errors == str(info.value).splitlines()


def test_homeassistant_discovery_is_off_by_default_and_on_by_config(tmp_path: Path) -> None:
    data = _minimal_data()
    assert not parse_config(data, base_dir=tmp_path).homeassistant.enabled
    data["mqtt"] = {"enabled": True}
    data["homeassistant"] = {"enabled": True, "discovery_prefix": "ha/discovery", "birth_topic": "ha/status"}
    assert parse_config(data, base_dir=tmp_path).homeassistant == HomeAssistantSection(
        enabled=True, discovery_prefix="ha/discovery", birth_topic="ha/status"
    )
