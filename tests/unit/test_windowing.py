"""WindowAssembler: exact window boundaries, gaps, sensors kept apart, channels, resampled input.

Signals are ramps (sample value = its index in the sender's stream), so every window shows
exactly which samples it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.windowing import WindowAssembler
from edge_agent.types import Chunk, Window

RATE = 100.0  # Hz: one sample is 10 ms, the default gap tolerance (50 ms) is 5 samples
T0 = 1_700_000_000.0


def ramp_chunks(
    sizes: list[int], *, sensor: str = "s1", rate: float = RATE, channels: int = 1, first: int = 0
) -> list[Chunk]:
    """Contiguous chunks of a ramp: channel ``c`` sample ``i`` is ``i + 1000 * c``; seq 0, 1, ..."""
    chunks, start = [], first
    for seq, n in enumerate(sizes):
        idx = np.arange(start, start + n, dtype=np.float32)
        samples = np.stack([idx + 1000 * c for c in range(channels)])
        chunks.append(Chunk(sensor, T0 + start / rate, rate, samples, seq=seq, received_at=float(seq)))
        start += n
    return chunks


def fresh_metrics() -> AgentMetrics:
    return AgentMetrics(CollectorRegistry())


def metric(metrics: AgentMetrics, name: str, sensor: str = "s1") -> float:
    value = metrics.registry.get_sample_value(name, {"sensor": sensor})
    return 0.0 if value is None else value


def first_values(windows: list[Window]) -> list[int]:
    return [int(w.samples[0, 0]) for w in windows]


def check_window(w: Window, first: int, size: int, t_first: float = T0, time_abs: float = 1e-6) -> None:
    """Window holds ramp samples ``first .. first + size - 1`` with matching times."""
    np.testing.assert_array_equal(w.samples[0], np.arange(first, first + size, dtype=np.float32))
    assert w.t_start == pytest.approx(t_first + first / RATE, abs=time_abs)
    assert w.t_end - w.t_start == pytest.approx(size / RATE, abs=1e-6)


@pytest.mark.parametrize(
    ("window", "hop", "sizes"),
    [
        (8, 4, [3] * 10),  # chunks smaller than the hop
        (8, 8, [5] * 5),  # hop == window
        (8, 2, [20, 1, 7]),  # a chunk larger than the window
        (8, 3, [1] * 30),  # one sample at a time
        (4, 6, [5, 5, 5, 5]),  # hop > window: samples between windows are skipped
        (16, 16, [100]),  # one huge chunk
        (8, 4, [0, 8, 0, 4]),  # empty chunks
    ],
)
def test_window_boundaries(window: int, hop: int, sizes: list[int]) -> None:
    asm = WindowAssembler(window, hop, RATE, 1)
    seen: list[int] = []
    done = 0
    for chunk in ramp_chunks(sizes):
        windows = asm.push(chunk)
        expected = [s for s in range(0, done + chunk.n_samples, hop) if done < s + window <= done + chunk.n_samples]
        assert first_values(windows) == expected
        for w in windows:
            check_window(w, int(w.samples[0, 0]), window)
            assert w.sensor == "s1"
            assert w.completed_at == chunk.received_at
            assert w.samples.shape == (1, window) and w.samples.dtype == np.float32
            assert not w.samples.flags.writeable
        seen += first_values(windows)
        done += chunk.n_samples
        assert asm.buffered_samples("s1") < window
    assert seen == list(range(0, done - window + 1, hop))


@dataclass(frozen=True)
class GapCase:
    name: str
    seqs: list[int | None]  # per chunk
    t_shift_s: list[float]  # added to each chunk's t0
    gaps: int
    window_firsts: list[int]  # ramp value of each window's first sample
    segment_t0_shift: float = 0.0  # t0 shift of the segment the last windows belong to
    time_abs: float = 1e-6  # how close the last window's t_start must be to it


# 4 chunks of 6 samples, window 8, hop 4. Contiguous: windows at 0, 4, 8, 12, 16.
GAP_CASES = [
    GapCase("contiguous", [0, 1, 2, 3], [0, 0, 0, 0], 0, [0, 4, 8, 12, 16]),
    GapCase("seq None: no seq check", [None, None, None, None], [0, 0, 0, 0], 0, [0, 4, 8, 12, 16]),
    GapCase("seq only on some chunks", [0, None, 5, 6], [0, 0, 0, 0], 0, [0, 4, 8, 12, 16]),
    GapCase("seq jump", [0, 1, 3, 4], [0, 0, 0, 0], 1, [0, 4, 12, 16]),
    GapCase("seq repeated", [0, 1, 1, 2], [0, 0, 0, 0], 1, [0, 4, 12, 16]),
    GapCase("seq restarts", [7, 8, 0, 1], [0, 0, 0, 0], 1, [0, 4, 12, 16]),
    GapCase("time jump forward", [0, 1, 2, 3], [0, 0, 1.0, 1.0], 1, [0, 4, 12, 16], 1.0),
    GapCase("time jump backward", [None] * 4, [0, 0, -0.06, -0.06], 1, [0, 4, 12, 16], -0.06),
    GapCase("jitter inside tolerance", [0, 1, 2, 3], [0, 0.03, -0.02, 0.049], 0, [0, 4, 8, 12, 16], 0.0, 0.01),
    GapCase("jitter past tolerance", [0, 1, 2, 3], [0, 0, 0.051, 0.051], 1, [0, 4, 12, 16], 0.051),
    GapCase("two gaps", [0, 2, 4, 6], [0, 0, 0, 0], 3, []),
]


@pytest.mark.parametrize("case", GAP_CASES, ids=lambda c: c.name)
def test_gaps(case: GapCase) -> None:
    metrics = fresh_metrics()
    asm = WindowAssembler(8, 4, RATE, 1, metrics=metrics)
    windows: list[Window] = []
    for chunk, seq, shift in zip(ramp_chunks([6] * 4), case.seqs, case.t_shift_s, strict=True):
        windows += asm.push(Chunk(chunk.sensor, chunk.t0 + shift, chunk.sample_rate_hz, chunk.samples, seq=seq))
    assert first_values(windows) == case.window_firsts
    for w in windows:  # every window holds consecutive samples of one segment: nothing stitched
        first = int(w.samples[0, 0])
        np.testing.assert_array_equal(w.samples[0], np.arange(first, first + 8, dtype=np.float32))
    if windows:  # the last window's times follow its segment's (re-anchored) clock
        check_window(windows[-1], case.window_firsts[-1], 8, T0 + case.segment_t0_shift, case.time_abs)
    assert metric(metrics, "edge_agent_stream_gaps_total") == case.gaps
    assert metric(metrics, "edge_agent_samples_received_total") == 24
    assert metric(metrics, "edge_agent_windows_total") == len(case.window_firsts)


def test_gap_tolerance_is_configurable() -> None:
    asm = WindowAssembler(8, 4, RATE, 1, gap_tolerance_s=0.0)
    a, b = ramp_chunks([6, 6])
    asm.push(a)
    shifted = Chunk(b.sensor, b.t0 + 0.001, b.sample_rate_hz, b.samples, seq=b.seq)
    assert asm.push(shifted) == []  # 1 ms off is a gap with zero tolerance


def test_slow_clock_drift_is_not_a_gap() -> None:
    """A sender whose ts run 1 % fast drifts by 20 ms per 200 chunks but never jumps."""
    metrics = fresh_metrics()
    asm = WindowAssembler(8, 8, RATE, 1, metrics=metrics)
    for chunk in ramp_chunks([10] * 200):
        asm.push(Chunk(chunk.sensor, T0 + (chunk.t0 - T0) * 1.01, RATE, chunk.samples, seq=chunk.seq))
    assert metric(metrics, "edge_agent_stream_gaps_total") == 0
    assert metric(metrics, "edge_agent_windows_total") == 250


def test_rate_change_resets_and_resamples() -> None:
    metrics = fresh_metrics()
    asm = WindowAssembler(8, 8, RATE, 1, metrics=metrics)
    assert len(asm.push(ramp_chunks([16])[0])) == 2
    fast = Chunk("s1", T0 + 0.16, 2 * RATE, np.ones((1, 400), np.float32), seq=1)
    windows = asm.push(fast)  # 400 samples at 200 Hz: about 200 at the model rate
    assert metric(metrics, "edge_agent_stream_gaps_total") == 1
    assert 20 <= len(windows) <= 25
    assert windows[0].t_start == pytest.approx(T0 + 0.16)
    assert all(w.t_end - w.t_start == pytest.approx(8 / RATE, abs=1e-6) for w in windows)
    np.testing.assert_allclose(windows[-1].samples, 1.0, atol=1e-3)  # no old ramp samples inside
    back = Chunk("s1", windows[-1].t_end + 1, RATE, np.zeros((1, 8), np.float32), seq=2)
    assert len(asm.push(back)) == 1
    assert metric(metrics, "edge_agent_stream_gaps_total") == 2


def test_wrong_channel_count_is_rejected_and_resets() -> None:
    metrics = fresh_metrics()
    asm = WindowAssembler(8, 4, RATE, 2, metrics=metrics)
    good = ramp_chunks([6, 6, 6], channels=2)
    asm.push(good[0])
    with pytest.raises(ValueError, match="3 channels, expected 2"):
        asm.push(Chunk("s1", good[1].t0, RATE, np.zeros((3, 6), np.float32), seq=1))
    assert metric(metrics, "edge_agent_stream_gaps_total") == 1
    assert asm.buffered_samples("s1") == 0
    windows = asm.push(good[2])  # a new stream: nothing of chunk 0 is stitched to it
    assert windows == []
    assert metric(metrics, "edge_agent_stream_gaps_total") == 1
    with pytest.raises(ValueError, match="1 channels, expected 2"):  # first chunk of a sensor: no gap
        asm.push(Chunk("other", T0, RATE, np.zeros((1, 6), np.float32)))
    assert metric(metrics, "edge_agent_stream_gaps_total", "other") == 0


@pytest.mark.parametrize(
    ("samples", "rate", "match"),
    [(np.zeros(6, np.float32), RATE, "2-D"), (np.zeros((1, 6), np.float32), 0.0, "sample_rate_hz")],
)
def test_malformed_chunk_raises(samples: np.ndarray, rate: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WindowAssembler(8, 4, RATE, 1).push(Chunk("s1", T0, rate, samples))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window_samples": 0}, "window_samples"),
        ({"hop_samples": -1}, "hop_samples"),
        ({"channels": 1.5}, "channels"),
        ({"sample_rate_hz": 0.0}, "sample_rate_hz"),
        ({"gap_tolerance_s": -1.0}, "gap_tolerance_s"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"window_samples": 8, "hop_samples": 4, "sample_rate_hz": RATE, "channels": 1}
    with pytest.raises(ValueError, match=match):
        WindowAssembler(**{**args, **kwargs})  # type: ignore[arg-type]


def test_interleaved_sensors_never_mix() -> None:
    asm = WindowAssembler(8, 4, RATE, 1)
    a = ramp_chunks([5] * 8, sensor="a")
    b = ramp_chunks([3] * 13, sensor="b", first=10_000)
    windows: dict[str, list[Window]] = {"a": [], "b": []}
    for i in range(13):
        for chunk in (a[i] if i < len(a) else None, b[i]):
            if chunk is not None:
                windows[chunk.sensor] += asm.push(chunk)
    assert first_values(windows["a"]) == list(range(0, 40 - 8 + 1, 4))
    assert first_values(windows["b"]) == list(range(10_000, 10_039 - 8 + 1, 4))
    for sensor, first in (("a", 0), ("b", 10_000)):
        for w in windows[sensor]:
            assert w.sensor == sensor
            start = int(w.samples[0, 0])
            np.testing.assert_array_equal(w.samples[0], np.arange(start, start + 8, dtype=np.float32))
            assert w.t_start == pytest.approx(T0 + (start - first) / RATE)
    assert asm.sensors() == ["a", "b"]


def test_multi_channel() -> None:
    asm = WindowAssembler(8, 4, RATE, 3)
    windows = [w for chunk in ramp_chunks([5] * 4, channels=3) for w in asm.push(chunk)]
    assert first_values(windows) == [0, 4, 8, 12]
    for w in windows:
        start = int(w.samples[0, 0])
        expected = np.stack([np.arange(start, start + 8) + 1000 * c for c in range(3)]).astype(np.float32)
        np.testing.assert_array_equal(w.samples, expected)


def test_drop_sensor_forgets_without_counting_a_gap() -> None:
    metrics = fresh_metrics()
    asm = WindowAssembler(8, 4, RATE, 1, metrics=metrics)
    first, _, third = ramp_chunks([6, 6, 6])
    asm.push(first)
    asm.drop_sensor("s1")
    asm.drop_sensor("never-seen")
    assert asm.push(third) == []  # 6 new samples: no window, nothing of `first` reused
    assert asm.buffered_samples("s1") == 6
    assert metric(metrics, "edge_agent_stream_gaps_total") == 0


def test_resampled_input_gives_windows_at_the_model_rate() -> None:
    model_hz, in_hz, window, hop = 12_000.0, 16_000.0, 1024, 512
    asm = WindowAssembler(window, hop, model_hz, 1)
    n = int(in_hz)  # one second
    x = np.sin(2 * np.pi * 1000 * np.arange(n) / in_hz).astype(np.float32)[None]
    windows: list[Window] = []
    for i, start in enumerate(range(0, n, 1000)):
        windows += asm.push(Chunk("s1", T0 + start / in_hz, in_hz, x[:, start : start + 1000], seq=i))
    assert len(windows) >= (12_000 - 100 - window) // hop
    for k, w in enumerate(windows):
        assert w.samples.shape == (1, window)
        assert w.t_start == pytest.approx(T0 + k * hop / model_hz, abs=1e-6)
        assert w.t_end == pytest.approx(w.t_start + window / model_hz, abs=1e-6)
        t = w.t_start - T0 + np.arange(window) / model_hz
        ideal = np.sin(2 * np.pi * 1000 * t)
        np.testing.assert_allclose(
            w.samples[0, 50:] if k == 0 else w.samples[0], ideal[50:] if k == 0 else ideal, atol=0.01
        )


def test_arrival_jitter_of_untimed_chunks_is_not_a_gap_but_a_long_pause_is() -> None:
    from edge_agent.metrics import AgentMetrics

    metrics = AgentMetrics()
    assembler = WindowAssembler(256, 128, 1000.0, 1, metrics=metrics)
    block = np.ones((1, 128), np.float32)
    t = 100.0
    emitted = []
    for jitter_s in (0.0, 0.3, -0.2, 0.4, 0.0, 0.25):  # late and early arrivals, as under load
        emitted += assembler.push(Chunk("s", t + jitter_s, 1000.0, block, None, 0.0, t0_estimated=True))
        t += 0.128
    assert metrics.registry.get_sample_value("edge_agent_stream_gaps_total", {"sensor": "s"}) == 0
    assert len(emitted) == 5
    assembler.push(Chunk("s", t + 5.0, 1000.0, block, None, 0.0, t0_estimated=True))  # a 5 s outage
    assert metrics.registry.get_sample_value("edge_agent_stream_gaps_total", {"sensor": "s"}) == 1
