"""Cut per-sensor sample streams into overlapping windows at the model's rate.

One state per sensor: the samples not yet consumed by a window, the time of a "segment" origin
and the position of the next window. A *segment* is a run of chunks that follow each other; a
gap ends it, drops the buffered samples (and the resampler's history) and starts a new segment
with the chunk that revealed the gap. Unrelated samples are never stitched into one window.

Gaps (each counted once in ``stream_gaps`` and reported to ``on_gap(sensor, cause)``, which the
stream supervision logs):

- ``seq`` is not the previous chunk's ``seq + 1`` (checked only when both chunks carry a seq);
- ``t0`` differs from the expected time of the next sample by more than ``gap_tolerance_s``
  (1 s for a ``t0`` estimated from the arrival time, as for binary frames)
  (default ``max(0.05 s, 2 samples)`` at the chunk's rate: senders' JSON ``ts`` jitter);
- the sample rate changes;
- a chunk with the wrong channel count arrives (it is rejected with ``ValueError``, and the
  samples it carried are missing from the stream).

Time keeping: within a segment, sample ``i`` (at the model rate) has epoch time
``origin + i / sample_rate_hz``; ``origin`` starts at the first chunk's ``t0``. The time check
compares each chunk's ``t0`` with that clock; an accepted chunk moves ``origin`` by
``CLOCK_TRACKING`` (10 %) of its error, so jitter averages out and a sender whose clock drifts
against its nominal rate is followed instead of producing false gaps (a drift of ``d`` seconds
per chunk leaves a lag of about ``10 d``). Resampled streams use the resampler's zero-phase
alignment (output ``m`` is at ``m / sample_rate_hz`` after the segment's first input sample).
Finite values are the source's job; this module does not scan for NaN.

Window samples are read-only views of a buffer that is never written after it is made, so they
cost no copy; copy before modifying one (``np.stack`` for a batch already does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.metrics import AgentMetrics
from edge_agent.pipeline.resample import StreamResampler
from edge_agent.types import Chunk, Window

DEFAULT_GAP_TOLERANCE_S = 0.05
DEFAULT_GAP_TOLERANCE_SAMPLES = 2.0
ESTIMATED_GAP_TOLERANCE_S = 1.0  # for chunks whose t0 comes from the arrival time
CLOCK_TRACKING = 0.1  # fraction of each chunk's timing error the segment clock absorbs


@dataclass
class _SensorMetrics:
    """Metric children of one sensor, looked up once (``labels()`` costs a lock and a dict)."""

    samples: Any
    seconds: Any
    windows: Any
    gaps: Any


@dataclass
class _SensorState:
    """Stream position of one sensor. Indices count model-rate samples since the segment start."""

    rate_hz: float
    buf: np.ndarray  # (channels, k) float32, samples [buf_start, buf_start + k) of the segment
    buf_start: int = 0
    next_start: int = 0  # segment index of the next window's first sample
    origin_s: float = 0.0  # epoch time of segment sample 0 (model rate)
    inputs: int = 0  # input-rate samples accepted in this segment
    last_seq: int | None = None
    tolerance_s: float = 0.0  # largest accepted |t0 - expected t0|
    resampler: StreamResampler | None = None
    metrics: _SensorMetrics | None = field(default=None, repr=False)


class WindowAssembler:
    """Turn :class:`Chunk` s into :class:`Window` s of ``window_samples`` every ``hop_samples``.

    ``sample_rate_hz`` and ``channels`` are the model's; a chunk at another rate is resampled
    (one :class:`StreamResampler` per sensor). ``gap_tolerance_s`` is how far a chunk's ``t0``
    may be from the expected time before it counts as a gap (``None``: ``max(0.05 s, 2 samples)``).
    Memory per sensor: fewer than ``window_samples`` buffered samples plus one chunk during ``push``.
    """

    def __init__(
        self,
        window_samples: int,
        hop_samples: int,
        sample_rate_hz: float,
        channels: int,
        metrics: AgentMetrics | None = None,
        gap_tolerance_s: float | None = None,
        on_gap: Callable[[str, str], None] | None = None,
    ) -> None:
        for name, value in (("window_samples", window_samples), ("hop_samples", hop_samples), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
            raise ValueError(f"sample_rate_hz must be a positive finite number, got {sample_rate_hz!r}")
        if gap_tolerance_s is not None and not (math.isfinite(gap_tolerance_s) and gap_tolerance_s >= 0):
            raise ValueError(f"gap_tolerance_s must be a finite number >= 0 or None, got {gap_tolerance_s!r}")
        self.window_samples = int(window_samples)
        self.hop_samples = int(hop_samples)
        self.sample_rate_hz = float(sample_rate_hz)
        self.channels = int(channels)
        self.gap_tolerance_s = gap_tolerance_s
        self._metrics = metrics
        self._on_gap = on_gap  # (sensor, cause) at each gap (the stream supervision logs them)
        self._sensors: dict[str, _SensorState] = {}
        self.skipped = 0  # windows the last push completed but did not cut (``keep_newest``)

    def push(self, chunk: Chunk, keep_newest: int | None = None) -> list[Window]:
        """Add a chunk; return the windows it completed, oldest first (often none or one).

        ``keep_newest``: cut at most this many, the newest; the older ones it completed are skipped
        (:attr:`skipped`; the stream goes on without a gap): a full inference queue would drop them.

        Raises ValueError (and resets the sensor, counting a gap) for a wrong channel count, and
        ValueError for samples that are not ``(channels, n)`` or a rate that is not positive.
        """
        self.skipped = 0
        x = np.asarray(chunk.samples, dtype=np.float32)
        rate = float(chunk.sample_rate_hz)
        if x.ndim != 2:
            raise ValueError(f"chunk samples of sensor {chunk.sensor!r} must be 2-D (channels, n), got {x.shape}")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"chunk sample_rate_hz of sensor {chunk.sensor!r} must be > 0, got {rate!r}")
        state = self._sensors.get(chunk.sensor)
        if x.shape[0] != self.channels:
            if state is not None:
                self._count_gap(state)
                self._gap(chunk.sensor, f"{x.shape[0]} channels instead of {self.channels}")
                del self._sensors[chunk.sensor]
            raise ValueError(f"chunk of sensor {chunk.sensor!r} has {x.shape[0]} channels, expected {self.channels}")
        if state is None:
            state = self._sensors[chunk.sensor] = self._new_state(chunk.sensor, rate, chunk.t0)
        else:
            error_s = self._time_error(state, chunk, rate)
            if error_s is None:
                self._count_gap(state)
                self._gap(chunk.sensor, self._gap_cause(state, chunk, rate))
                self._restart(state, rate, chunk.t0)
            else:
                state.origin_s += CLOCK_TRACKING * error_s  # follow the sender's clock slowly
        state.inputs += x.shape[1]
        state.last_seq = chunk.seq
        model_x = state.resampler.process(x) if state.resampler is not None else x
        windows = self._append_and_cut(chunk.sensor, state, model_x, chunk.received_at, keep_newest)
        if state.metrics is not None:
            state.metrics.samples.inc(x.shape[1])
            state.metrics.seconds.inc(x.shape[1] / rate)
            if windows or self.skipped:  # the stream's windows, those skipped for a full queue among them
                state.metrics.windows.inc(len(windows) + self.skipped)
        return windows

    def drop_sensor(self, sensor: str) -> None:
        """Forget a sensor's buffer and position (its next chunk starts a new stream, not a gap)."""
        self._sensors.pop(sensor, None)

    def buffered_samples(self, sensor: str) -> int:
        """Model-rate samples held for ``sensor`` (fewer than ``window_samples`` between pushes)."""
        state = self._sensors.get(sensor)
        return 0 if state is None else int(state.buf.shape[1])

    def sensors(self) -> list[str]:
        """Sensors with a buffer, in order of their first chunk."""
        return list(self._sensors)

    def _new_state(self, sensor: str, rate: float, t0: float) -> _SensorState:
        state = _SensorState(rate_hz=rate, buf=np.empty((self.channels, 0), np.float32))
        if self._metrics is not None:
            m = self._metrics
            state.metrics = _SensorMetrics(
                samples=m.samples_received.labels(sensor),
                seconds=m.signal_seconds.labels(sensor),
                windows=m.windows_emitted.labels(sensor),
                gaps=m.stream_gaps.labels(sensor),
            )
        self._restart(state, rate, t0)
        return state

    def _restart(self, state: _SensorState, rate: float, t0: float) -> None:
        """Start a new segment at ``t0``: empty buffer, fresh (or new-rate) resampler."""
        if _same_rate(rate, self.sample_rate_hz):
            state.resampler = None
        elif state.resampler is not None and _same_rate(rate, state.resampler.in_rate_hz):
            state.resampler.reset()
        else:
            state.resampler = StreamResampler(rate, self.sample_rate_hz, self.channels)
        state.rate_hz = rate
        state.tolerance_s = self.gap_tolerance_s
        if state.tolerance_s is None:
            state.tolerance_s = max(DEFAULT_GAP_TOLERANCE_S, DEFAULT_GAP_TOLERANCE_SAMPLES / rate)
        state.buf = np.empty((self.channels, 0), np.float32)
        state.buf_start = state.next_start = state.inputs = 0
        state.origin_s = t0
        state.last_seq = None

    def _time_error(self, state: _SensorState, chunk: Chunk, rate: float) -> float | None:
        """``chunk.t0`` minus its expected time, or None if the chunk does not continue the segment."""
        if rate != state.rate_hz and not _same_rate(rate, state.rate_hz):
            return None
        if chunk.seq is not None and state.last_seq is not None and chunk.seq != state.last_seq + 1:
            return None
        error_s = chunk.t0 - (state.origin_s + state.inputs / rate)
        if chunk.t0_estimated:
            # t0 is the arrival time minus the chunk's duration: queueing jitter under load is not a
            # gap (and must not steer the clock), but a pause longer than this still is
            return 0.0 if abs(error_s) <= max(state.tolerance_s, ESTIMATED_GAP_TOLERANCE_S) else None
        return error_s if abs(error_s) <= state.tolerance_s else None  # a NaN t0 is a gap too

    def _gap_cause(self, state: _SensorState, chunk: Chunk, rate: float) -> str:
        """Why ``chunk`` does not continue the segment (the checks of :meth:`_time_error`, for the log)."""
        if not _same_rate(rate, state.rate_hz):
            return f"sample rate {state.rate_hz:g} -> {rate:g} Hz"
        if chunk.seq is not None and state.last_seq is not None and chunk.seq != state.last_seq + 1:
            return f"seq {state.last_seq} -> {chunk.seq}, expected {state.last_seq + 1}"
        expected_s = state.origin_s + state.inputs / rate
        what = "arrival-time t0" if chunk.t0_estimated else "ts"
        return f"{what} {chunk.t0:.6f} is {chunk.t0 - expected_s:+.3f} s from the expected {expected_s:.6f}"

    def _gap(self, sensor: str, cause: str) -> None:
        if self._on_gap is not None:
            self._on_gap(sensor, cause)

    @staticmethod
    def _count_gap(state: _SensorState) -> None:
        if state.metrics is not None:
            state.metrics.gaps.inc()

    def _append_and_cut(
        self, sensor: str, state: _SensorState, x: np.ndarray, received_at: float, keep: int | None = None
    ) -> list[Window]:
        """Append model-rate samples ``x`` (channels, n) and cut every complete window.

        Between calls the buffer starts at the next window (``buf_start == next_start``), or it is
        empty and ``next_start`` lies ahead (hop > window: the samples up to it are skipped).
        """
        buf_end = state.buf_start + state.buf.shape[1]
        end = buf_end + x.shape[1]  # segment index one past the last sample
        start = state.next_start
        if start <= buf_end:
            buf = np.concatenate((state.buf, x), axis=1)  # a fresh array, never written again
        elif start < end:
            buf = x[:, start - buf_end :].copy()
        else:
            state.buf, state.buf_start = state.buf[:, :0], end
            return []
        buf.flags.writeable = False
        count = (end - start - self.window_samples) // self.hop_samples + 1
        if count <= 0:
            state.buf, state.buf_start = buf, start
            return []
        size, hop, rate, origin = self.window_samples, self.hop_samples, self.sample_rate_hz, state.origin_s
        self.skipped = 0 if keep is None else max(0, count - keep)
        windows = [
            Window(
                sensor,
                origin + (start + k) / rate,
                origin + (start + k + size) / rate,
                buf[:, k : k + size],
                received_at,
            )
            for k in range(self.skipped * hop, count * hop, hop)
        ]
        state.next_start = start + count * hop
        cut = min(count * hop, end - start)  # drop what no later window needs
        # a copy: a view would keep the whole buffer (the windows just cut) alive until the next chunk,
        # 8 kB instead of 4 kB per sensor at window 2048, hop 1024
        state.buf, state.buf_start = buf[:, cut:].copy(), start + cut
        return windows


def _same_rate(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
