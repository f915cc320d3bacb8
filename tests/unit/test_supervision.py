"""Stream supervision (edge_agent.pipeline.supervision) with fake clocks: each problem on, its log line, and off."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.config import StreamsSection
from edge_agent.metrics.streams import STREAM_PROBLEM_REASONS, StreamMetrics
from edge_agent.pipeline.supervision import ALL_REJECTED_MIN, StreamSpec, StreamSupervisor
from edge_agent.types import Chunk

NOW_S = 1_780_000_000.0  # the fake agent clock (epoch seconds)
RATE_HZ = 12_000.0
CHUNK = 1200  # 0.1 s
SENSOR = "pump-1"


class Clocks:
    def __init__(self) -> None:
        self.wall_s, self.mono_s = NOW_S, 100.0

    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_s += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def make(clocks: Clocks, *, real_time: bool = True, **settings: float) -> tuple[StreamSupervisor, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.init_sensor(SENSOR)
    spec = StreamSpec("plant", "json", real_time, window_s=2048 / RATE_HZ, hop_s=1024 / RATE_HZ)
    supervisor = StreamSupervisor(
        spec,
        metrics,
        StreamsSection(**settings),
        wall_clock=lambda: clocks.wall_s,
        clock=lambda: clocks.mono_s,
    )
    return supervisor, registry


def problem(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("edge_agent_stream_problem", {"sensor": SENSOR, "reason": reason})


def onsets(registry: CollectorRegistry, reason: str) -> float | None:
    return registry.get_sample_value("edge_agent_stream_problems_total", {"sensor": SENSOR, "reason": reason})


def chunk(
    clocks: Clocks, *, ts: float | None = None, seq: int | None = None, n: int = CHUNK, rate: float = RATE_HZ
) -> Chunk:
    t0 = clocks.wall_s - n / rate if ts is None else ts
    return Chunk(SENSOR, t0, rate, np.zeros((1, n), np.float32), seq, clocks.mono_s, ts is None)


def feed(supervisor: StreamSupervisor, clocks: Clocks, count: int, *, every: int = 1, **kwargs: object) -> None:
    """``count`` chunks 0.1 s apart in real time, a window every ``every`` chunks (0: never)."""
    for i in range(count):
        clocks.advance(CHUNK / RATE_HZ)
        windows = 1 if every and i % every == every - 1 else 0
        supervisor.observe(chunk(clocks, **kwargs), windows)  # type: ignore[arg-type]


def test_series_start_at_zero_for_every_reason(clocks: Clocks) -> None:
    _, registry = make(clocks)
    assert [problem(registry, r) for r in STREAM_PROBLEM_REASONS] == [0.0] * len(STREAM_PROBLEM_REASONS)


@pytest.mark.parametrize(("scale", "unit"), [(1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds")])
def test_ts_in_a_smaller_unit(clocks: Clocks, caplog: pytest.LogCaptureFixture, scale: float, unit: str) -> None:
    supervisor, registry = make(clocks)
    with caplog.at_level(logging.INFO, "edge_agent.pipeline.supervision"):
        for i in range(3):
            clocks.advance(0.1)
            supervisor.observe(chunk(clocks, ts=(clocks.wall_s - 0.1) * scale, seq=i), 0)
    assert problem(registry, "ts_unit") == 1.0
    assert problem(registry, "clock_offset") == 0.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert SENSOR in warnings[0] and "field ts" in warnings[0] and unit in warnings[0]
    supervisor.observe(chunk(clocks, ts=clocks.wall_s - 0.1, seq=3), 0)  # seconds again
    assert problem(registry, "ts_unit") == 0.0
    assert onsets(registry, "ts_unit") == 1.0


def test_ts_far_from_the_agent_clock(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    supervisor, registry = make(clocks, clock_offset_max_s=60.0)
    supervisor.observe(chunk(clocks, ts=clocks.wall_s - 30.0), 0)
    assert problem(registry, "clock_offset") == 0.0
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        supervisor.observe(chunk(clocks, ts=clocks.wall_s - 3600.0), 0)
    assert problem(registry, "clock_offset") == 1.0
    assert "-3600 s from the agent's clock" in caplog.text and SENSOR in caplog.text


def test_a_long_chunk_is_judged_by_its_last_sample(clocks: Clocks) -> None:
    supervisor, registry = make(clocks, clock_offset_max_s=60.0)
    supervisor.observe(chunk(clocks, ts=clocks.wall_s - 90.0, n=90 * 12_000), 0)  # 90 s of samples, just ended
    assert problem(registry, "clock_offset") == 0.0


def test_estimated_t0_and_replays_skip_the_clock_checks(clocks: Clocks) -> None:
    supervisor, registry = make(clocks, real_time=False)
    supervisor.observe(chunk(clocks, ts=clocks.wall_s * 1000), 0)
    assert problem(registry, "ts_unit") == 0.0


def test_seq_counting_samples(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    supervisor, registry = make(clocks)
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        for i in range(4):
            clocks.advance(0.1)
            supervisor.observe(chunk(clocks, seq=i * CHUNK), 1)
    assert problem(registry, "seq_samples") == 1.0
    assert f"field seq advances by {CHUNK}" in caplog.text and 'seq_counts = "samples"' in caplog.text
    assert len(caplog.records) == 1  # once per onset, not per chunk
    clocks.advance(0.1)
    supervisor.observe(chunk(clocks, seq=3 * CHUNK + 1), 0)
    assert problem(registry, "seq_samples") == 0.0


def test_a_seq_jump_is_a_gap_not_a_seq_unit(clocks: Clocks) -> None:
    supervisor, registry = make(clocks)
    for seq in (0, 1, 2, 7, 8):
        supervisor.observe(chunk(clocks, seq=seq), 0)
    assert problem(registry, "seq_samples") == 0.0


def test_arrival_rate_twice_the_declared_one(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    """A binary stream configured for 12 kHz receiving 25.6 kHz: chunks of 2560 samples every 0.1 s."""
    supervisor, registry = make(clocks, rate_interval_s=10.0)
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        feed(supervisor, clocks, 99, n=2560)  # 9.9 s: not measured yet
        assert problem(registry, "rate_mismatch") == 0.0
        feed(supervisor, clocks, 5, n=2560)
    assert problem(registry, "rate_mismatch") == 1.0
    assert "samples arrive at 25600 Hz" in caplog.text and "sample_rate_hz = 12000" in caplog.text


def test_arrival_rate_within_tolerance(clocks: Clocks) -> None:
    supervisor, registry = make(clocks, rate_tolerance=0.05)
    feed(supervisor, clocks, 300, n=round(CHUNK * 1.04))  # 4 % fast
    assert problem(registry, "rate_mismatch") == 0.0
    feed(supervisor, clocks, 300, n=round(CHUNK * 1.06))  # 6 % fast
    assert problem(registry, "rate_mismatch") == 1.0
    feed(supervisor, clocks, 300)  # the rate is right again
    assert problem(registry, "rate_mismatch") == 0.0


def test_an_outage_restarts_the_rate_measurement(clocks: Clocks) -> None:
    supervisor, registry = make(clocks, rate_interval_s=10.0)
    feed(supervisor, clocks, 50)
    clocks.advance(30.0)  # the sensor was away: no false 'slow' rate
    feed(supervisor, clocks, 150)
    assert problem(registry, "rate_mismatch") == 0.0


@pytest.mark.parametrize("told", [False, True])
def test_a_sensor_shed_under_overload_raises_no_rate_problem_and_logs_no_gap(
    clocks: Clocks, caplog: pytest.LogCaptureFixture, told: bool
) -> None:
    """Under 3x overload the agent sheds two of each three messages of a sensor: what reaches the supervisor
    arrives at a third of the sender's rate, each chunk after a jump. Told (``after_shed``, as the router and
    the receive process now do), that is the agent's doing: no ``rate_mismatch`` with its advice to fix the
    sensor's rate, no gap logged, the gaps still counted. Untold (the code before), every shed sensor got both."""
    supervisor, registry = make(clocks, rate_interval_s=10.0)
    with caplog.at_level(logging.INFO, "edge_agent.pipeline.supervision"):
        for i in range(300):  # 30 s of a 12 kHz sensor in chunks of 0.1 s
            clocks.advance(CHUNK / RATE_HZ)
            if i % 3:
                if told:
                    supervisor.after_shed(SENSOR)
                continue
            if i:
                supervisor.gap(SENSOR, f"seq {i - 3} -> {i}, expected {i - 2}")
            supervisor.observe(chunk(clocks, seq=i), 1)
    assert problem(registry, "rate_mismatch") == (0.0 if told else 1.0)
    assert ("stream gap" in caplog.text) is not told
    assert ("samples arrive at" in caplog.text) is not told
    assert supervisor._state(SENSOR).gaps == 99


def test_a_shed_sensor_that_continues_is_measured_again(clocks: Clocks) -> None:
    """after_shed holds for one chunk: a sensor that then sends at the wrong rate is still told so."""
    supervisor, registry = make(clocks, rate_interval_s=10.0)
    supervisor.after_shed(SENSOR)
    feed(supervisor, clocks, 110, n=2560)
    assert problem(registry, "rate_mismatch") == 1.0


def test_every_payload_rejected(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    supervisor, registry = make(clocks)
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        for _ in range(ALL_REJECTED_MIN - 1):
            supervisor.rejected(SENSOR, "wrong_channels")
        assert problem(registry, "all_rejected") == 0.0
        supervisor.rejected(SENSOR, "wrong_channels")
    assert problem(registry, "all_rejected") == 1.0
    assert "wrong_channels" in caplog.text and SENSOR in caplog.text
    labels = {"sensor": SENSOR, "reason": "wrong_channels"}
    assert registry.get_sample_value("edge_agent_sensor_payload_errors_total", labels) == ALL_REJECTED_MIN
    feed(supervisor, clocks, 1)
    assert problem(registry, "all_rejected") == 0.0


def test_samples_but_no_window(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    """A window is 0.171 s, a hop 0.085 s: more than 0.341 s of signal without a window is a problem."""
    supervisor, registry = make(clocks)
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        supervisor.gap(SENSOR, "seq 1 -> 3, expected 2")
        feed(supervisor, clocks, 3, every=0)
        assert problem(registry, "no_windows") == 0.0
        feed(supervisor, clocks, 1, every=0)
    assert problem(registry, "no_windows") == 1.0
    assert "without a window being cut" in caplog.text and "seq 1 -> 3" in caplog.text
    feed(supervisor, clocks, 1, every=1)
    assert problem(registry, "no_windows") == 0.0


def test_healthy_stream_has_no_problem(clocks: Clocks) -> None:
    supervisor, registry = make(clocks)
    for i in range(200):
        clocks.advance(0.1)
        supervisor.observe(chunk(clocks, ts=clocks.wall_s - 0.1, seq=i), 1)
    assert supervisor.problems(SENSOR) == set()
    assert sum(onsets(registry, r) or 0 for r in STREAM_PROBLEM_REASONS) == 0


def test_logs_are_rate_limited_per_sensor_and_reason_with_the_count(
    clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor, _ = make(clocks)
    with caplog.at_level(logging.WARNING, "edge_agent.pipeline.supervision"):
        for _ in range(3):  # flapping: on, off, on, off ...
            supervisor.observe(chunk(clocks, ts=clocks.wall_s * 1000), 0)
            supervisor.observe(chunk(clocks, ts=clocks.wall_s), 0)
        supervisor.observe(chunk(clocks, seq=0, n=10), 0)
        supervisor.observe(chunk(clocks, seq=10, n=10), 0)  # another reason logs at once
        clocks.advance(61.0)
        supervisor.observe(chunk(clocks, ts=clocks.wall_s * 1000), 0)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("field ts" in m for m in messages) == 2
    assert sum("field seq" in m for m in messages) == 1
    assert "(2 similar suppressed in the last 60 s)" in messages[-1]


def test_first_samples_and_resampling_are_logged(clocks: Clocks, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    spec = StreamSpec("plant", "f32le", True, 0.17, 0.085, {"bearing": 12_000.0})
    supervisor = StreamSupervisor(spec, StreamMetrics(registry), StreamsSection(), wall_clock=lambda: NOW_S)
    with caplog.at_level(logging.INFO, "edge_agent.pipeline.supervision"):
        supervisor.observe(chunk(clocks, rate=25_600.0, n=2560), 0)
        supervisor.observe(chunk(clocks, rate=25_600.0, n=2560), 0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "sensor pump-1 (source plant): first samples: 25600 Hz, 1 channel(s), format f32le",
        "sensor pump-1: resampling 25600 -> 12000 Hz for model bearing",
    ]
