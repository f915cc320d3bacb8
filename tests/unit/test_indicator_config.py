"""``[sources.indicators]``: errors naming ``sources[i].indicators.<key>``, checks against the model, the stage."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.cli import main
from edge_agent.config.indicators import IndicatorsSection
from edge_agent.configload import ConfigError, load_config, parse_config
from edge_agent.metrics import AgentMetrics
from edge_agent.modelfile import LoadedModel, parse_meta
from edge_agent.pipeline.datapath import DataPath
from edge_agent.pipeline.decision import DecisionEngine
from edge_agent.pipeline.indicator_stage import FLUSH_WINDOWS, ZONE_ALARM_LABEL, IndicatorStage
from edge_agent.sinks import Sinks
from edge_agent.types import Chunk, Window

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "drsn_cw_cwru.pt"  # 1 channel, 12 kHz, 2048-sample windows


def data(indicators: Any, index: int = 1) -> dict[str, Any]:
    source = {"type": "replay", "models": ["m"], "path": "d.npz"}
    sources = [{**source, "name": f"r{i}", "sensor": f"s{i}"} for i in range(index + 1)]
    sources[index]["indicators"] = indicators
    return {"models": [{"name": "m", "path": "m.pt"}], "sources": sources}


def errors(indicators: Any, index: int = 1) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data(indicators, index), base_dir=Path("/tmp"))
    return info.value.errors


def test_absent_table_means_off_and_a_table_means_on_with_defaults() -> None:
    config = parse_config(data({}, 0), base_dir=Path("/tmp"))
    assert config.sources[0].indicators == IndicatorsSection()
    assert config.sources[0].indicators.enabled
    bare = data({}, 0)
    del bare["sources"][0]["indicators"]
    assert parse_config(bare, base_dir=Path("/tmp")).sources[0].indicators is None


def test_lists_become_tuples_and_the_settings_are_the_pipelines() -> None:
    table = {"unit": "m/s2", "bands_hz": [[10, 100], [100, 1000]], "velocity_band_hz": [2, 1000], "machine_group": 1}
    section = parse_config(data(table, 0), base_dir=Path("/tmp")).sources[0].indicators
    assert section is not None and hash(section)
    settings = section.settings()
    assert settings.bands_hz == ((10, 100), (100, 1000)) and settings.velocity_band_hz == (2, 1000)
    assert (settings.unit, settings.machine_group, settings.foundation) == ("m/s2", 1, "rigid")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"unit": "mm/s"}, "sources[1].indicators.unit: 'mm/s' is not allowed; one of g, m/s2"),
        ({"unit": 9.81}, "sources[1].indicators.unit: 9.81 has the wrong type; expected a string"),
        ({"bands_hz": [[100, 10]]}, "sources[1].indicators.bands_hz[0]: [100, 10] is out of range"),
        ({"bands_hz": [[10, "x"]]}, "sources[1].indicators.bands_hz[0]: [10, 'x'] has the wrong type"),
        ({"velocity_band_hz": 1000}, "sources[1].indicators.velocity_band_hz: 1000 is not a band"),
        ({"band_measure": "peak"}, "sources[1].indicators.band_measure: 'peak' is not allowed"),
        ({"spectral_window": "flattop"}, "sources[1].indicators.spectral_window: 'flattop' is not allowed"),
        ({"machine_group": 3}, "sources[1].indicators.machine_group: 3 is not allowed"),
        ({"foundation": "soft"}, "sources[1].indicators.foundation: 'soft' is not allowed"),
        ({"alarm_zone": "B", "machine_group": 2}, "sources[1].indicators.alarm_zone: 'B' is not allowed"),
        ({"alarm_zone": "C"}, "sources[1].indicators.alarm_zone: 'C' is not allowed without a machine class"),
        ({"enabled": 1}, "sources[1].indicators.enabled: 1 has the wrong type"),
        ({"untis": "g"}, "sources[1].indicators.untis: unknown key (did you mean 'unit'?)"),
        ("g", "sources[1].indicators: 'g' has the wrong type; expected a table"),
    ],
)
def test_each_bad_key_is_named(table: Any, expected: str) -> None:
    found = errors(table)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_every_problem_at_once() -> None:
    found = errors({"unit": "x", "foundation": "y", "bands_hz": [[1, 2], [3]]})
    assert [line.split(":")[0] for line in found] == [
        "sources[1].indicators.unit",
        "sources[1].indicators.bands_hz[1]",
        "sources[1].indicators.foundation",
    ]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"bands_hz": [[5000, 7000]]}, "sources[0].indicators.bands_hz[0]: [5000.0, 7000.0] does not fit"),
        ({"velocity_band_hz": [1, 2]}, "sources[0].indicators.velocity_band_hz: (1.0, 2.0) holds no FFT bin"),
    ],
)
def test_check_config_refuses_bands_the_models_windows_cannot_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: dict[str, Any], key: str
) -> None:
    shutil.copy(MODEL, tmp_path / "model.pt")
    np.savez(tmp_path / "d.npz", keys=np.array(["097"]), fs_hz=np.float64(12_000.0), **{"097": np.zeros(8192)})
    inline = ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in table.items())
    (tmp_path / "config.toml").write_text(
        '[metrics]\nenabled = false\n\n[[models]]\nname = "bearing"\npath = "model.pt"\n\n'
        '[[sources]]\ntype = "replay"\nname = "demo"\nsensor = "motor-1"\nmodels = ["bearing"]\npath = "d.npz"\n'
        f"indicators = {{ {inline} }}\n"
    )
    assert main(["check-config", str(tmp_path / "config.toml")]) != 0
    assert key in capsys.readouterr().err


# --- the stage ---------------------------------------------------------------------------------


def windows(amplitude: float, count: int, channels: int = 1, rate_hz: float = 12_000.0) -> list[Window]:
    n = 2048
    t = np.arange(n) / rate_hz
    tone = np.stack([amplitude * (c + 1) * np.sin(2 * np.pi * 160.0 * t) for c in range(channels)])
    step_s = n / rate_hz / 2
    return [Window("s", i * step_s, i * step_s + n / rate_hz, tone.astype(np.float32)) for i in range(count)]


def value(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_series_start_at_nan_and_a_batch_waits_for_enough_windows() -> None:
    metrics = AgentMetrics()
    stage = IndicatorStage(
        IndicatorsSection(machine_group=2, bands_hz=((100, 200),)), 12_000.0, 2048, 1, metrics.vibration
    )
    stage.init_sensor("s")
    assert math.isnan(value(metrics, "edge_agent_vibration_velocity_rms_meters_per_second", sensor="s", channel=""))
    assert math.isnan(
        value(
            metrics,
            "edge_agent_vibration_band_acceleration_rms_meters_per_second_squared",
            sensor="s",
            channel="",
            band="100-200Hz",
        )
    )
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="s") == 0
    stage.push("s", windows(0.5, 3))  # 3 windows, 0.34 s of signal: held
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="s") == 0
    stage.push("s", windows(0.5, FLUSH_WINDOWS))
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="s") == 3 + FLUSH_WINDOWS
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="s") == 2
    assert stage.conditions() == []  # no alarm configured


def test_channels_are_labelled_and_the_zone_is_the_worst_channel() -> None:
    metrics = AgentMetrics()
    section = IndicatorsSection(machine_group=2, band_measure="energy", bands_hz=((100, 200),), alarm_zone="D")
    stage = IndicatorStage(section, 12_000.0, 2048, 2, metrics.vibration)
    stage.init_sensor("s")
    stage.push("s", windows(0.5, FLUSH_WINDOWS, channels=2))  # channel 1 at 1 g: 6.9 mm/s, zone D
    v0 = value(metrics, "edge_agent_vibration_velocity_rms_meters_per_second", sensor="s", channel="0")
    v1 = value(metrics, "edge_agent_vibration_velocity_rms_meters_per_second", sensor="s", channel="1")
    assert v1 == pytest.approx(2 * v0) and v0 == pytest.approx(3.449e-3, rel=0.01)  # m/s
    energy = value(
        metrics, "edge_agent_vibration_band_acceleration_mean_square", sensor="s", channel="0", band="100-200Hz"
    )
    assert energy == pytest.approx((0.5 * 9.80665) ** 2 / 2, rel=0.01)
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="s") == 3
    assert stage.conditions() == [("s", ZONE_ALARM_LABEL, True)]
    assert stage.latest("s")["iso_zone"] == ["C", "D"]
    stage.push("s", windows(0.05, FLUSH_WINDOWS, channels=2))
    assert stage.conditions() == [("s", ZONE_ALARM_LABEL, False)]


def test_disabled_computes_nothing() -> None:
    metrics = AgentMetrics()
    stage = IndicatorStage(IndicatorsSection(enabled=False), 12_000.0, 2048, 1, metrics.vibration)
    stage.push("s", windows(0.5, FLUSH_WINDOWS))
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="s") is None


# --- the router creates the series -----------------------------------------------------------


def _model() -> LoadedModel:
    document = {
        "schema": 1,
        "name": "bearing",
        "kind": "classifier",
        "labels": ["Normal", "IR007"],
        "sample_rate_hz": 12_000,
        "window_samples": 2048,
        "hop_samples": 1024,
        "channels": 1,
        "input_units": "g",
        "normalisation": {"applied": "inside the graph"},
        "precision": "float32",
        "quantized_engine": None,
    }
    return LoadedModel(path=Path("b.pt"), module=None, meta=parse_meta(document, source="b.pt"), sha256="b" * 64)  # type: ignore[arg-type]


VIB = {"type": "mqtt", "models": ["bearing"]}


def test_the_router_creates_configured_and_discovered_sensors_series_and_feeds_the_stage() -> None:
    cfg = parse_config(
        {
            "mqtt": {"enabled": True, "host": "broker"},
            "models": [{"name": "bearing", "path": "/m/b.pt"}],
            "sources": [
                {**VIB, "name": "vib", "topic": "v/+/x", "sensors": ["p1"], "indicators": {"unit": "m/s2"}},
                {"type": "mqtt", "name": "off", "topic": "o/+/x", "sensors": ["o1"], "models": ["bearing"]},
                {
                    "type": "mqtt",
                    "name": "any",
                    "topic": "w/+/x",
                    "models": ["bearing"],
                    "indicators": {"machine_group": 2},
                },
            ],
        },
        base_dir=Path("/"),
    )
    metrics = AgentMetrics()
    path = DataPath(metrics, DecisionEngine(cfg.decision, metrics=metrics))
    path.configure({"bearing": _model()}, cfg)
    path.fanout.open(Sinks([]))
    queued: list[str] = []
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="p1") is None
    configured = path.router(cfg.sources[0], lambda model, window: queued.append(window.sensor))
    plain = path.router(cfg.sources[1], lambda model, window: queued.append(window.sensor))
    route = path.router(cfg.sources[2], lambda model, window: queued.append(window.sensor))
    assert list(path.indicators) == ["vib", "any"]  # the source without the table has no stage
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="p1") == 0  # configured: at start
    assert math.isnan(value(metrics, "edge_agent_vibration_velocity_rms_meters_per_second", sensor="p1", channel=""))
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="p1") is None  # no machine class
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="o1") is None
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="w1") is None
    t = np.arange(12_000 * 2) / 12_000.0
    signal = (0.5 * np.sin(2 * np.pi * 160.0 * t)).astype(np.float32)[None, :]
    now_s = time.time() - 2.0  # signal times near the agent's clock (no clock_offset stream problem)
    for seq, start in enumerate(range(0, signal.shape[1], 1024)):
        route(Chunk("w1", now_s + start / 12_000, 12_000.0, signal[:, start : start + 1024], seq=seq))
        if seq == 0:  # the first chunk of a discovered sensor creates its series
            assert math.isnan(value(metrics, "edge_agent_vibration_iso_zone", sensor="w1"))
    plain(Chunk("o1", now_s, 12_000.0, signal[:, :4096], seq=0))
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="o1") is None
    configured(Chunk("p1", 1000.0, 12_000.0, signal[:, :4096], seq=0))  # 3 windows, 0.34 s: held
    assert value(metrics, "edge_agent_vibration_windows_total", sensor="p1") == 0
    computed = value(metrics, "edge_agent_vibration_windows_total", sensor="w1")
    assert computed is not None and 0 < computed <= queued.count("w1")
    assert value(metrics, "edge_agent_vibration_iso_zone", sensor="w1") == 2
    path.tick([], time.time())  # no alarm_zone: no health condition
    assert value(metrics, "edge_agent_alert_active", sensor="w1", kind="health") == 0


def test_the_zone_alarm_clears_only_ten_percent_below_its_boundary(caplog: pytest.LogCaptureFixture) -> None:
    per_g = 9.80665 / (2 * np.pi * 160.0) / math.sqrt(2) * 1000  # mm/s RMS per g of a 160 Hz sine
    metrics = AgentMetrics()
    stage = IndicatorStage(IndicatorsSection(machine_group=2, alarm_zone="C"), 12_000.0, 2048, 1, metrics.vibration)
    steps = [(2.7, False), (2.9, True), (2.6, True), (2.55, True), (2.45, False), (2.7, False), (2.85, True)]
    with caplog.at_level("INFO", logger="edge_agent.pipeline.indicator_stage"):
        for velocity_mm_s, asserted in steps:  # group 2 rigid: B/C at 2.8 mm/s, cleared below 2.52
            stage.push("s", windows(velocity_mm_s / per_g, FLUSH_WINDOWS))
            assert stage.conditions() == [("s", ZONE_ALARM_LABEL, asserted)], velocity_mm_s
    changes = [record.getMessage() for record in caplog.records]
    assert len(changes) == 3 and "is in zone C" in changes[0] and "is below zone C" in changes[1], changes


def test_the_shipped_config_documents_every_indicators_key_and_turns_them_on_for_the_demo() -> None:

    text = (REPO / "config.toml").read_text()
    for spec in dataclasses.fields(IndicatorsSection):
        assert re.search(rf"^#? ?{spec.name} += ", text, re.MULTILINE), spec.name
    (demo,) = load_config(REPO / "config.toml").sources
    assert demo.indicators == IndicatorsSection(
        unit="g", bands_hz=((10, 1000), (1000, 3000), (3000, 6000)), machine_group=2
    )
